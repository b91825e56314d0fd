"""The LM-head lesson (08): its measurements, its claim table, its checker, and the chunked loss as one
more change in the suite, the report, the decision tree and the cost explorer."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib import speedups
from tutorial_lib.guide import suite
from tutorial_lib.guide.report import render_block
from tutorial_lib.lessons import decision
from tutorial_lib.lessons import explorer as explore
from tutorial_lib.lessons import lm_head as L
from tutorial_lib.loss import chunked_linear_cross_entropy
from tutorial_lib.measure.profile import ProfileResult
from tutorial_lib.model import get_config
from tutorial_lib.sizes import PROFILES, get_sizes

pytestmark = pytest.mark.usefixtures("one_thread")
SMOKE = get_sizes("smoke").lm_head


def test_sizes_measure_the_seed_setting_on_cpu_and_gpu():
    for name in ("cpu", "gpu"):
        s = PROFILES[name].lm_head
        assert (s.preset, s.batch, s.seq_len) == ("gpt2_small", 4, 512)
        assert s.tokens <= 4 * 512 and s.vocab == 50257 and 50304 in s.vocabs
        assert s.chunk in s.chunks and s.chunk == get_config("gpt2_small").loss_chunk
    assert SMOKE.preset == "tiny"


def test_head_shares_on_paper_match_hand_formulas():
    """head = 2CV per token; a block = 2(4C^2 + 2*4C^2) + attention's causal pairs (the cost model)."""
    rows = {r["model"]: r for r in L.head_share_rows({"mini": get_config("gpt2_mini")}, 1, 1)}
    C, V, Lyr = 384, 50257, 4
    head, blocks = 2 * C * V, Lyr * 2 * (4 * C * C + 8 * C * C) + Lyr * 2 * 2 * C  # T=1: one visible pair
    assert rows["mini"]["head_fwd_share"] == pytest.approx(head / (head + blocks))
    assert L.logits_bytes(4, 512, 50257) == 411_705_344
    big = {r["model"]: r for r in L.when_it_matters()}
    assert big["gpt2_mini (4 layers, d384)"]["head_fwd_share"] > 0.7  # the "71% of its FLOPs"
    assert big["gpt2_small body, V=262,144"]["head_fwd_share"] > big["gpt2_small (V=50,257)"]["head_fwd_share"]


def test_head_loss_sweep_counts_what_each_path_keeps():
    rows = L.head_loss_sweep(L.chunk_points(SMOKE), rounds=1, min_run_time=0.01, device="cpu")
    N, C, V = SMOKE.tokens, SMOKE.n_embd, SMOKE.vocab
    assert len(rows) == 1 + 2 * len(SMOKE.chunks) and all(r.ok and r.median_ms > 0 for r in rows)
    for r in rows:
        assert r.logits_bytes == N * V * 4
        if r.impl == "chunked":  # the hidden states, one log-sum-exp per token, the target count
            assert r.saved_bytes == N * C * 4 + N * 4 + 8
        elif r.impl == "chunked_liger":  # the two gradients
            assert r.saved_bytes == N * C * 4 + V * C * 4
        else:  # the fp32 log-softmax (N, V) and the hidden states, at least
            assert r.saved_bytes >= N * V * 4 + N * C * 4
    pts = L.scaling_points(SMOKE, "V")
    assert {p["vocab"] for p in pts} == set(SMOKE.vocabs) and {p["impl"] for p in pts} == {"full", "chunked"}
    with pytest.raises(ValueError, match="axis='B'"):
        L.scaling_points(SMOKE, "B")


def test_step_payoff_rows_carry_exact_bytes_and_timing():
    rows = L.step_payoff(SMOKE, device="cpu")
    by = {r["loss_impl"]: r for r in rows}
    assert [r["variant"] for r in rows] == list(L.VARIANTS)
    N, C = SMOKE.batch * SMOKE.seq_len, get_config(SMOKE.preset).n_embd
    # the chunked step keeps its hidden states, log-sum-exps, target count and the int64 targets
    assert by["chunked"]["head_loss_bytes"] == N * C * 4 + N * 4 + 8 + N * 8
    assert by["full"]["saved_vs_full_bytes"] == 0
    assert by["chunked"]["saved_vs_full_bytes"] == by["full"]["activations_bytes"] - by["chunked"]["activations_bytes"]
    assert by["chunked"]["saved_vs_full_bytes"] >= N * 50257 * 4 - N * C * 4
    for r in rows:
        assert r["error"] is None and r["median_ms"] > 0 and r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
    fig = L.payoff_figure(rows)
    assert len(fig.axes) == 2


def _profile(fwd_ms):
    rows = [{"scope": k, "group": k, "phase": "forward", "ms": v, "share": 0.0} for k, v in fwd_ms.items()]
    rows.append({"scope": "mlp.up", "group": "mlp", "phase": "backward", "ms": 100.0, "share": 0.0})
    total = sum(r["ms"] for r in rows)
    return ProfileResult("gpt2_small", "p", "cpu", "cpu", "float32", 4, 512, "train", 1, "cpu time", total, total,
                         rows)


def test_share_rows_put_the_claim_beside_measured_shares():
    prof = _profile({"lm_head": 6.0, "loss": 4.0, "mlp.up": 90.0})
    rows = {r["measured"].split(",")[0] + "," + r["measured"].split(",")[1]: r for r in L.share_rows(prof)}
    head = rows["lm_head, share of the forward pass"]
    assert head["share"] == pytest.approx(0.06) and head["verdict"] == "agrees"
    both = rows["lm_head + loss, share of the forward pass"]
    assert both["share"] == pytest.approx(0.10) and both["verdict"] == "higher"
    assert rows["lm_head + loss, share of the whole step (fwd + bwd + AdamW)"]["share"] == pytest.approx(10 / 200)
    assert head["claimed_low"] == 0.05 and head["claimed_high"] == 0.08
    other = _profile({"lm_head": 6.0, "loss": 4.0, "mlp.up": 90.0})
    other.seq_len = 256  # not the seed's setting: shown, not judged
    assert {r["verdict"] for r in L.share_rows(other)} == {"different setting"}


def test_checker_accepts_a_right_answer_and_explains_wrong_ones():
    assert L.check_chunked_loss(lambda h, w, t, c: chunked_linear_cross_entropy(h, w, t, c)).passed

    def unchunked(h, w, t, c):
        return F.cross_entropy(h @ w.T, t, ignore_index=-1)

    def summed(h, w, t, c):
        return sum(F.cross_entropy(h[s:s + c] @ w.T, t[s:s + c], ignore_index=-1, reduction="sum")
                   for s in range(0, len(t), c))

    def all_tokens(h, w, t, c):
        return summed(h, w, t, c) / len(t)

    def todo(h, w, t, c):
        raise NotImplementedError

    r = L.check_chunked_loss(unchunked)
    assert not r.passed and "one chunk of logits at a time" in r.message
    assert "sum" in L.check_chunked_loss(summed).message
    assert "not -1" in L.check_chunked_loss(all_tokens).message
    assert "not implemented" in L.check_chunked_loss(todo).message


def test_largest_tensor_sees_backward_too():
    x = torch.randn(10, 3, requires_grad=True)
    with L.LargestTensor() as m:
        (x @ x.T).sum().backward()
    assert m.largest == 100


@pytest.mark.slow
def test_suite_section_records_rows_the_report_renders():
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["lm_head"], progress=False)
    assert "error" not in doc["sections"]["lm_head"], doc["sections"]["lm_head"]
    rows = [r for r in doc["rows"] if r["kind"] == "lm_head"]
    assert [r["variant"] for r in rows] == list(L.VARIANTS)
    assert rows[1]["saved_vs_full_MiB"] > 0 and rows[0]["saved_vs_full_MiB"] == 0
    alone = [r for r in doc["rows"] if r["kind"] == "lm_head_alone"]
    assert {r["vocab"] for r in alone} == {50257, 50304} and all(r["ms_fwd_bwd"] > 0 for r in alone)
    claim = [r for r in doc["rows"] if r["kind"] == "lm_head_claim"]
    assert claim and claim[0]["claimed_low"] == 0.05
    doc["_path"] = "x.json"
    for name in ("lm_head", "lm_head_alone", "lm_head_claim"):
        text = render_block(name, [doc])
        assert "Recorded on" in text and "| variant |" in text or "| measured |" in text


def test_report_blocks_say_when_nothing_is_recorded():
    for name in ("lm_head", "lm_head_alone", "lm_head_claim"):
        assert "No recorded result for this table yet" in render_block(name, [])


def test_decision_tree_and_explorer_know_the_chunked_loss():
    cfg = decision.change_config("chunked_loss", 512, "cpu")
    assert cfg.loss_impl == L.DEFAULT_IMPL and cfg.attn_backend == "eager"
    # analytic: more FLOPs (the recompute), less memory (no logits kept), no decoding change
    assert decision.analytic_payoff("chunked_loss", 512, "cpu", "speed") < 1.0
    assert decision.analytic_payoff("chunked_loss", 512, "cpu", "memory") > 1.1
    assert decision.analytic_payoff("chunked_loss", 512, "cpu", "decoding") == pytest.approx(1.0)
    doc = {"meta": {"device": "cpu", "device_name": "x"},
           "sections": {"lm_head": {"sizes": {"T": 512, "timing": "3 interleaved rounds"}}},
           "rows": [{"kind": "lm_head", "variant": L.FULL, "speedup": 1.0},
                    {"kind": "lm_head", "variant": L.CHUNKED, "speedup": 0.97, "speedup_range": "0.95–0.99"}]}
    r = decision.recommend(512, "cpu", "speed", results=[doc])
    got = r.payoff("chunked_loss")
    assert got.measured and got.value == pytest.approx(0.97) and got in r.no_gain  # slower in every round
    assert got.speedup.rounds == 3 and "lm_head" in got.source
    s = explore.ExplorerSettings(preset="gpt2_small", seq_len=512, batch_size=4, dtype="float32",
                                 loss_impl="chunked")
    full = explore.predict_cost(s.replace(loss_impl="full"))
    chunked = explore.predict_cost(s)
    assert chunked.memory["activations_by_group"]["head + loss"] < full.memory["activations_by_group"]["head + loss"]
    assert chunked.flops["lm_head"] == pytest.approx(full.flops["lm_head"] * 4 / 3)
    with pytest.raises(ValueError, match="loss_impl='fused'"):
        explore.ExplorerSettings(loss_impl="fused")


def test_cost_explorer_has_a_loss_control():
    widgets = pytest.importorskip("tutorial_lib.widgets")
    ex = widgets.cost_explorer(results=[], device="cpu")
    before = ex.result.memory["activations_by_group"]["head + loss"]
    ex.controls["loss_impl"].value = "chunked"
    assert ex.result.settings.loss_impl == "chunked" and "chunked loss" in ex.result.config
    assert ex.result.memory["activations_by_group"]["head + loss"] < before


def test_bench_and_profile_commands_take_the_loss(tmp_path, capsys):
    from tutorial_lib.cli import main
    from tutorial_lib.measure import records

    out = tmp_path / "b.json"
    assert main(["bench", "--preset", "tiny", "--batch", "1", "--seq", "16", "--loss", "full", "chunked",
                 "--device", "cpu", "--min-run-time", "0.01", "--no-progress", "--out", str(out)]) == 0
    rows = records.load_results(out)["rows"]
    assert [r["config_fields"]["loss_impl"] for r in rows] == ["full", "chunked"]
    assert all(r["error"] is None and r["median_ms"] > 0 for r in rows)
    assert main(["profile", "--preset", "tiny", "--batch", "1", "--seq", "16", "--loss", "chunked_liger",
                 "--device", "cpu", "--steps", "1", "--no-progress", "--no-timing"]) == 0
    text = capsys.readouterr().out
    assert "chunked_liger loss" in text and "lm_head" in text and "head + loss" in text


def test_the_padded_vocabulary_s_speedup_is_paired_by_round_and_capped_by_its_work():
    def pt(vocab, rounds):
        return L.HeadPoint("full", 64, 8, vocab, None, "cpu", "cpu", "float32", 64 * vocab * 4,
                           median_ms=sorted(rounds)[1], round_ms=list(rounds))
    rows = [pt(50257, [10.0, 30.0, 10.0]), pt(50304, [9.0, 27.0, 9.5])]  # round 2 busy: both slower
    sp = L.padded_speedup(rows, "full")
    assert sp.rounds == 3 and sp.low == pytest.approx(10 / 9.5) and sp.high == pytest.approx(10 / 9)
    # more rows can only cost by FLOPs and bytes: a gain is above the ceiling, a different kernel
    assert sp.ceiling == pytest.approx(50257 / 50304) and sp.verdict == speedups.ABOVE_CEILING
    assert L.padded_speedup(rows[:1], "full") is None


def test_step_payoff_times_at_the_timing_batch_and_carries_the_speedup():
    s = dataclasses.replace(get_sizes("smoke").lm_head, batch=2, timed_batch=1, rounds=1)
    rows = L.step_payoff(s, device="cpu", memory=False)
    assert all(r["batch_size"] == 2 and r["timed_batch_size"] == 1 for r in rows)
    assert "speedup_of" not in rows[0] and rows[1]["speedup_of"].rounds == 1
    assert rows[1]["speedup_of"].ceiling is not None and rows[1]["speedup_of"].verdict == speedups.NO_VERDICT
