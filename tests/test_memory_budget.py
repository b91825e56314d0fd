"""The memory-budget lesson (12): activation checkpointing and gradient accumulation against plain
references in float64, the cost model's saved bytes, kernels, FLOPs and peak against PyTorch's own
counts (saved-tensor hooks, the dispatcher, FlopCounterMode, the allocator), the planner's
behaviour and its bad input, the training loop's and the CLI's new settings, and the suite's
section."""
import argparse
import contextlib

import pytest
import torch

from tutorial_lib import accumulate
from tutorial_lib.commands import train as train_cmd
from tutorial_lib.guide import suite
from tutorial_lib.guide.report import render_block
from tutorial_lib.lessons import memory_budget as M
from tutorial_lib.measure import ceilings, cost, flops, roofline
from tutorial_lib.measure import traffic as TR
from tutorial_lib.measure.memory import memory_breakdown
from tutorial_lib.measure.peak import measured_step_peak, step_peak
from tutorial_lib.model import GPT, GPTConfig, get_config
from tutorial_lib.sizes import ALL_POLICIES, PROFILES
from tutorial_lib.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = GPTConfig(n_layer=3, n_head=4, n_embd=32, vocab_size=97, block_size=64, name="small")
MiB = 2**20


def _loss_and_grads(cfg: GPTConfig, x, y):
    torch.manual_seed(0)
    model = GPT(cfg).double().train()
    torch.manual_seed(1)  # the dropout masks' stream
    loss = model(x, y)[1]
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


# ---- activation checkpointing: the same numbers, less kept ------------------------------------------
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("policy", [p for p in M.POLICIES if p != "none"])
def test_a_checkpointed_model_has_the_plain_models_loss_and_gradients_in_float64(policy, dropout):
    """The recompute runs the same operations on the same inputs (dropout's random state restored),
    so the loss and every gradient equal the plain model's, to float64 rounding."""
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 97, (2, 12), generator=g) for _ in range(2))
    base = SMALL.replace(dropout=dropout, mlp="swiglu", bias=True)
    ref_loss, ref_grads = _loss_and_grads(base, x, y)
    loss, grads = _loss_and_grads(M.policy_config(base, policy), x, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-13, atol=0)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-15)


def test_checkpointing_applies_to_the_chosen_blocks_and_only_while_training():
    cfg = get_config("tiny", n_layer=5, checkpoint="mlp", checkpoint_every=2)
    assert [cfg.checkpointed(i) for i in range(5)] == ["mlp", "none", "mlp", "none", "mlp"]
    assert [b.recomputes for b in GPT(cfg).blocks] == ["mlp", "none", "mlp", "none", "mlp"]
    with pytest.raises(ValueError, match="checkpoint='layer'"):
        get_config("tiny", checkpoint="layer")
    with pytest.raises(ValueError, match="checkpoint_every=0"):
        get_config("tiny", checkpoint_every=0)
    # generation (no grad) runs the plain blocks: the same tokens as a model without checkpointing
    torch.manual_seed(0)
    a = GPT(get_config("tiny", checkpoint="block")).eval()
    torch.manual_seed(0)
    b = GPT(get_config("tiny")).eval()
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(a.generate(idx, 4), b.generate(idx, 4))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("changes", [{}, {"attn_backend": "eager", "n_kv_head": 2},
                                     {"mlp": "swiglu", "norm": "layernorm", "bias": True, "pos": "learned"},
                                     {"loss_impl": "chunked", "loss_chunk": 7, "window": 4}], ids=str)
@pytest.mark.parametrize("policy", list(M.POLICIES))
def test_predicted_saved_bytes_equal_the_saved_tensor_hooks_for_each_policy(policy, changes, dtype):
    cfg = M.policy_config(get_config("tiny", n_layer=3, **changes), policy)
    mb = memory_breakdown(cfg, 3, 10, device="cpu", dtype=dtype)
    assert cost.activation_bytes(cfg, 3, 10, dtype) == mb.activations_by_component


def test_checkpointing_keeps_less_and_a_whole_block_keeps_only_its_input():
    cfg, B, T = get_config("gpt2_small"), 4, 512
    kept = {p: sum(cost.activation_bytes(M.policy_config(cfg, p), B, T).values()) for p in M.POLICIES}
    assert kept["block"] < kept["block every 2"] < kept["none"]
    assert kept["attention"] < kept["none"] and kept["mlp"] < kept["none"]
    blocks = {k: v for k, v in cost.activation_bytes(M.policy_config(cfg, "block"), B, T).items()
              if k.startswith(("attention", "mlp"))}
    assert blocks == {}  # every block's own tensors are recomputed; its input is the residual stream
    assert cost.activation_bytes(M.policy_config(cfg, "block"), B, T)["residual"] == (12 + 1) * 4 * B * T * 768


@pytest.mark.parametrize("changes,dtype,k", [
    ({"checkpoint": "block"}, "float32", 2),
    ({"checkpoint": "attention", "attn_backend": "eager", "tie_embeddings": False}, "bfloat16", 4),
    ({"checkpoint": "mlp", "checkpoint_every": 2, "n_layer": 3, "loss_impl": "chunked", "loss_chunk": 7},
     "float32", 2),
    ({"loss_impl": "chunked_liger", "loss_chunk": 7, "tie_embeddings": False}, "bfloat16", 2),
], ids=str)
def test_kernels_of_recompute_and_accumulation_equal_every_dispatched_operator(changes, dtype, k):
    """The forward run again in backward (up to checkpoint's early stop) and the micro-batches'
    extra work, per (component, phase), against what PyTorch dispatches."""
    cfg = get_config("tiny", **changes)
    counted = TR.count_step_traffic(cfg, 4, 10, dtype=dtype, grad_accum=k).traffic
    model = {(r.scope, r.phase): r for r in cost.step_kernels(cfg, 4, 10, dtype, grad_accum=k)}
    assert set(model) == set(counted)
    for key, t in counted.items():
        assert (model[key].read, model[key].write, model[key].n_kernels) == (t.read, t.written, t.kernels), key


def test_flop_counter_sees_the_recompute_and_mfu_does_not():
    cfg = SMALL.replace(checkpoint="block")
    got = flops.count_flops(cfg, 2, 20)
    assert got["bwd"] == cost.step_flops(cfg, 2, 20, "bwd", "counted")
    plain = SMALL
    again = cost.step_flops(cfg, 2, 20, "bwd", "counted") - cost.step_flops(plain, 2, 20, "bwd", "counted")
    # the blocks' forward matmuls once more, but the last Linear of each block (its input is saved first)
    fwd = cost.flops_by_scope(plain, 2, 20, "forward", "counted")
    assert again == sum(v for s, v in fwd.items() if s.startswith(("attention", "mlp"))) - fwd["mlp.down"]
    assert cost.step_flops(cfg, 2, 20, "fwdbwd", "visible") == cost.step_flops(plain, 2, 20, "fwdbwd", "visible")


# ---- gradient accumulation ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("policy", ["none", "block"])
def test_accumulated_gradients_equal_the_whole_batchs_in_float64(k, policy):
    assert M.gradient_difference(M.policy_config(SMALL, policy), 4, 12, k) < 1e-13


def test_unscaled_micro_batches_do_not_pass():
    """The control: summing k micro-batch gradients without the 1/k gives k times the gradient."""
    def unscaled(model, x, y, k):
        for xs, ys in zip(x.chunk(k), y.chunk(k)):
            model(xs, ys)[1].backward()
    assert M.gradient_difference(SMALL, 4, 12, 2, unscaled) > 1e-3
    assert not M.check_accumulation(unscaled)
    assert M.check_accumulation(accumulate.accumulate_gradients)

    def broken(model, x, y, k):
        raise NotImplementedError
    assert "not implemented" in M.check_accumulation(broken).message


def test_ddp_syncs_only_the_last_micro_batch():
    entered = []

    @contextlib.contextmanager
    def no_sync():
        entered.append(1)
        yield
    model = GPT(get_config("tiny"))
    x = torch.randint(0, 100, (4, 8))
    accumulate.accumulate_gradients(model, x, x, 4, no_sync=no_sync)
    assert len(entered) == 3  # micro-batches 1..3 skip the all-reduce; the 4th runs it
    with pytest.raises(ValueError, match="grad_accum=3 does not divide the batch of 4"):
        accumulate.accumulate_gradients(model, x, x, 3)


@pytest.mark.slow
def test_training_with_accumulation_and_checkpointing_follows_the_plain_run():
    """Same batches, same seed: 2 micro-batches with recomputed blocks give the losses of one pass
    (float32: the sums are only reordered)."""
    tc = TrainConfig(steps=3, batch_size=4, seq_len=16, eval_every=3, eval_batches=1, device="cpu", progress=False)
    plain = train("tiny", tc)
    both = train(get_config("tiny", checkpoint="block"), tc.replace(grad_accum=2))
    assert both.train_loss == pytest.approx(plain.train_loss, abs=2e-5)
    assert both.val_loss == pytest.approx(plain.val_loss, abs=2e-5)
    assert both.config["grad_accum"] == 2 and both.model["checkpoint"] == "block"


def test_an_accumulation_that_does_not_divide_the_batch_is_refused_before_any_work(capsys):
    with pytest.raises(ValueError, match=r"TrainConfig.grad_accum=3 does not divide batch_size=8"):
        TrainConfig(batch_size=8, grad_accum=3)
    with pytest.raises(ValueError, match="grad_accum=0"):
        TrainConfig(grad_accum=0)
    code = train_cmd.run(_args(["--grad-accum", "3", "--batch", "4"]))
    assert code == 2 and "grad_accum=3 does not divide batch_size=4" in capsys.readouterr().err
    code = train_cmd.run(_args(["--checkpoint", "block", "--checkpoint-every", "0"]))
    assert code == 2 and "checkpoint_every=0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="grad_accum=3 does not divide batch_size=4"):
        cost.step_kernels(get_config("tiny"), 4, 8, grad_accum=3)


def _args(argv):
    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    return p.parse_args(["--steps", "1", "--seq", "8", "--no-progress", *argv])


# ---- the peak ---------------------------------------------------------------------------------------
PEAK_CASES = [  # (changes, B, T, grad_accum, dtype): each moment of the model's table is the peak once
    ({}, 2, 128, 1, "float32"),  # the loss's backward (full logits)
    ({"loss_impl": "chunked", "loss_chunk": 64}, 4, 128, 2, "float32"),  # the forward, accumulating
    ({"attn_backend": "eager", "checkpoint": "attention"}, 2, 256, 1, "float32"),  # a block's backward
    ({"loss_impl": "chunked_liger", "loss_chunk": 64, "checkpoint": "mlp"}, 4, 128, 2, "bfloat16"),
    ({"tie_embeddings": False, "loss_impl": "chunked", "loss_chunk": 64, "checkpoint": "block"}, 2, 64, 1,
     "float32"),
]


@pytest.mark.parametrize("changes,B,T,k,dtype", PEAK_CASES, ids=str)
def test_the_predicted_peak_is_the_allocators(changes, B, T, k, dtype):
    """Predicted from the cost model and the transients of ``measure.peak``; measured from
    torch.profiler's memory events: within 5 % (the lesson's goal is 10 % at its own sizes)."""
    cfg = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=3000, block_size=256, name="p", **changes)
    p = step_peak(cfg, B, T, dtype, k)
    m = measured_step_peak(cfg, B, T, dtype, k, device="cpu")
    assert p.peak_bytes == pytest.approx(m["peak_bytes"], rel=0.05), (p.at, p.moments)
    assert p.resident_bytes == m["resident_bytes"]  # parameters, AdamW state, buffers, the batch: exact


def test_the_floor_and_the_moments():
    cfg = get_config("gpt2_small")
    p = step_peak(cfg, 4, 512, "float32")
    n = cost.num_params(cfg)
    assert p.floor_bytes == 16 * n + 4 * len(cost.param_sizes(cfg))  # params + grads + AdamW's two moments
    assert set(p.moments) == {"forward", "loss backward", "blocks backward", "embedding", "optimizer"}
    assert p.at == "loss backward"  # the full logits' two (B, T, V) gradients on top of every activation
    assert p.moments["loss backward"] == p.activations + 8 * 4 * 512 * 50257
    # accumulating, every micro-batch after the first starts with all the gradients
    q = step_peak(cfg, 8, 512, "float32", grad_accum=2)
    assert q.moments["loss backward"] == p.moments["loss backward"] + q.gradients
    with pytest.raises(ValueError, match="grad_accum=3 does not divide batch_size=4"):
        step_peak(cfg, 4, 512, grad_accum=3)


# ---- the planner ------------------------------------------------------------------------------------
CPU = ceilings.Ceilings(device="cpu", device_name="test cpu", dtype="float32", peak_flops=1.4e11, bandwidth=2e10,
                        overhead_s=5e-6)


@pytest.fixture(scope="module")
def planner():
    return M.Planner(get_config("gpt2_mini"), 256, 2048, {"float32": CPU})


def test_a_budget_below_the_floor_says_so_and_gives_the_floor(planner):
    floor = planner.floor_bytes
    assert floor == cost.training_memory(get_config("gpt2_mini"), 1, 256)["total"] - sum(
        cost.activation_bytes(get_config("gpt2_mini"), 1, 256).values())
    with pytest.raises(ValueError, match=rf"budget_bytes=300,000,000 .* below the floor of {floor:,} bytes"):
        planner.choose(300_000_000)
    with pytest.raises(ValueError, match="budget_bytes=0"):
        planner.choose(0)
    assert planner.choose(floor).best is None  # above nothing: says what the smallest plan needs
    assert "no plan fits" in planner.choose(floor).message()


def test_bad_planner_input_names_the_field():
    with pytest.raises(ValueError, match="tokens_per_step=1000 is not a multiple of seq_len=256"):
        M.Planner(get_config("tiny"), 256, 1000, {"float32": CPU})
    with pytest.raises(ValueError, match="ceilings"):
        M.Planner(get_config("tiny"), 32, 64, {})
    with pytest.raises(ValueError, match="policies"):
        M.Planner(get_config("tiny"), 32, 64, {"float32": CPU}, policies=("sometimes",))


def test_the_choice_is_the_fastest_plan_that_fits(planner):
    peaks = sorted(p.peak_bytes for p in planner.plans)
    last = 0.0
    for budget in (peaks[0], peaks[len(peaks) // 3], peaks[2 * len(peaks) // 3], peaks[-1]):
        c = planner.choose(budget)
        assert all(p.peak_bytes <= budget for p in c.ranked)
        assert c.best.tokens_per_s == max(p.tokens_per_s for p in planner.plans if p.peak_bytes <= budget)
        assert c.best.tokens_per_s >= last  # more memory never makes the choice slower
        last = c.best.tokens_per_s
    assert planner.choose(peaks[-1]).best.tokens_per_s == max(p.tokens_per_s for p in planner.plans)


def test_a_tight_budget_trades_time_for_memory(planner):
    """What a learner sees: the tight budget's plan recomputes or accumulates, the loose one neither."""
    tight, loose = planner.choose(700 * MiB).best, planner.choose(2048 * MiB).best
    assert tight.grad_accum > 1 or tight.policy != "none"
    assert (loose.grad_accum, loose.policy) == (1, "none")
    assert tight.tokens_per_s < loose.tokens_per_s and tight.peak_bytes < loose.peak_bytes


def test_plans_carry_the_cost_models_predictions(planner):
    p = planner.choose(900 * MiB).best
    again = roofline.predict_step(p.config, p.batch_size, p.seq_len, CPU, "float32", device_type="cpu",
                                  grad_accum=p.grad_accum)
    assert p.step_ms == again.total_ms
    assert p.peak_bytes == step_peak(p.config, p.batch_size, p.seq_len, "float32", p.grad_accum).peak_bytes
    assert {q.config.attn_backend for q in planner.plans} == {"eager", "sdpa"}  # exact costs, trainable on CPU
    assert {q.config.loss_impl for q in planner.plans} == {"full", "chunked", "chunked_liger"}


def test_the_figures_show_every_plan_and_moment(planner):
    choice = planner.choose(900 * MiB)
    fig = M.plan_figure(planner, choice)
    scatter, bars = fig.axes
    assert sum(len(c.get_offsets()) for c in scatter.collections) == len(planner.plans) + 1  # + the ringed choice
    assert abs(sum(p.get_width() for p in bars.patches) * MiB - choice.best.peak_bytes) < 1e-3 * MiB
    peaks = {"plain": step_peak(get_config("tiny"), 2, 32), "checkpointed": step_peak(
        get_config("tiny", checkpoint="block"), 2, 32)}
    rows = M.moments_rows(peaks)
    assert [r["peak"] for r in rows] == [p.peak_bytes for p in peaks.values()]
    assert len(M.moments_figure(peaks).axes[0].patches) == 2 * 2 * len(M.MOMENTS)  # resident + moment, per step


def test_sizes_plan_whole_sequences_above_the_floor():
    assert ALL_POLICIES == tuple(M.POLICIES)
    for prof in PROFILES.values():
        s = prof.memory_budget
        assert s.tokens_per_step % s.seq_len == 0 and set(s.policies) <= set(M.POLICIES)
        assert all(s.micro_step_batch % m == 0 for m in s.micro_batches)
        floor = step_peak(get_config(s.preset), 1, s.seq_len).floor_bytes
        assert all(b * MiB > floor for b in s.budgets_mib)


# ---- the guide's section ------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_suite_section_records_budgets_policies_and_micro_batches():
    doc = suite.run_suite("guide", profile="smoke", device="cpu", only=["memory_budget"], progress=False)
    kinds = {r["kind"] for r in doc["rows"]}
    assert {"memory_budget", "memory_budget_policies", "memory_budget_micro"} <= kinds
    sec = doc["sections"]["memory_budget"]
    assert "error" not in sec, sec
    budgets = [r for r in doc["rows"] if r["kind"] == "memory_budget"]
    assert [r["budget_MiB"] for r in budgets] == list(PROFILES["smoke"].memory_budget.budgets_mib)
    assert all(abs(r["peak_error"]) < 0.05 for r in budgets)  # memory does not depend on the machine's load
    policies = [r for r in doc["rows"] if r["kind"] == "memory_budget_policies"]
    assert all(r["saved_exact"] for r in policies)
    text = render_block("memory_budget", [doc])
    assert "| budget_MiB |" in text and "Recorded on" in text
