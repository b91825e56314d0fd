"""tutorial_lib.train / optim / the `train` command: determinism, Muon grouping, schedule, bad inputs."""
import json
import math
from pathlib import Path

import pytest
import torch

from tutorial_lib import data
from tutorial_lib.cli import main
from tutorial_lib.lessons.swiglu import time_optimizer_step
from tutorial_lib.model import GPT, get_config
from tutorial_lib.optim import OptimizerSpec, build_optimizer, lr_scale, split_parameters
from tutorial_lib.train import TrainConfig, TrainHistory, train

# A run small enough for seconds on 2 cores: the tiny model, 2 x 16 tokens per step.
FAST = TrainConfig(steps=3, batch_size=2, seq_len=16, warmup_steps=1, eval_every=2,
                   eval_batches=1, progress=False, device="cpu")


@pytest.fixture(scope="module")
def tiny_run():
    return train("tiny", FAST)


# ---- determinism and the meaning of "seeded" -----------------------------------------------
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_same_seed_same_losses(optimizer, tiny_run):
    a = tiny_run if optimizer == "adamw" else train("tiny", FAST, optimizer=optimizer)
    b = train("tiny", FAST, optimizer=optimizer)
    assert a.train_loss == b.train_loss  # bit-identical on CPU
    assert a.val_loss == b.val_loss
    assert a.grad_norm == b.grad_norm


def test_different_seed_different_losses(tiny_run):
    other = train("tiny", FAST, seed=1)
    assert other.train_loss[0] != tiny_run.train_loss[0]


def test_first_step_matches_a_hand_built_reference(tiny_run):
    """Step 1's loss and gradient norm equal a model and batch built by hand from the same seed."""
    torch.manual_seed(FAST.seed)
    model = GPT(get_config("tiny"))
    x, y = data.BatchSampler("train", FAST.batch_size, FAST.seq_len, seed=FAST.seed).next_batch()
    _, loss = model(x, y)
    loss.backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    assert tiny_run.train_loss[0] == pytest.approx(loss.item(), abs=1e-6)
    assert tiny_run.grad_norm[0] == pytest.approx(norm.item(), rel=1e-5)
    # the untrained model's validation loss is near ln(vocab) (uniform guessing)
    assert tiny_run.val_steps[0] == 0
    assert tiny_run.val_loss[0] == pytest.approx(math.log(50257), abs=0.2)


def test_training_lowers_validation_loss():
    h = train("tiny", FAST, steps=12, batch_size=4, seq_len=32, warmup_steps=2, eval_every=12)
    assert h.val_steps == [0, 12]
    assert h.val_loss[-1] < h.val_loss[0] - 0.5, h.val_loss


def test_train_does_not_touch_the_callers_rng(tiny_run):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train("tiny", FAST, steps=1)
    assert torch.equal(torch.rand(3), expected)


# ---- the history ---------------------------------------------------------------------------
def test_history_fields_and_round_trip(tiny_run, tmp_path):
    h = tiny_run
    assert h.steps == [1, 2, 3] and len(h.train_loss) == len(h.step_time_s) == 3
    assert h.val_steps == [0, 2, 3]  # init, every 2, and the last step
    assert h.tokens_per_step == FAST.batch_size * FAST.seq_len
    assert h.optimizer == "adamw" and h.device == "cpu" and h.dtype == "float32"
    assert h.world_size == 1 and h.n_params == GPT(get_config("tiny")).num_params()
    assert h.wall_time_s == pytest.approx(sum(h.step_time_s))
    assert all(0 < o <= s for o, s in zip(h.optimizer_time_s, h.step_time_s))
    assert h.val_wall_s[0] == 0.0 and h.val_wall_s[-1] == pytest.approx(h.wall_time_s)
    assert h.val_loss_at_time(0.0) == h.val_loss[0]
    assert h.val_loss_at_time(1e9) == h.final_val_loss
    assert h.tokens_per_s == pytest.approx(h.tokens_per_step / h.median_step_s)
    back = TrainHistory.load(h.save(tmp_path / "h.json"))
    assert back == h
    assert json.loads((tmp_path / "h.json").read_text())["summary"]["steps"] == 3


def test_learning_rate_follows_the_schedule(tiny_run):
    expected = [FAST.lr * lr_scale(s, FAST.steps, FAST.warmup_steps, FAST.decay, FAST.min_lr_ratio)
                for s in range(FAST.steps)]
    assert tiny_run.lr == pytest.approx(expected)


# ---- learning-rate schedule against PyTorch's own schedulers ---------------------------------
def _torch_factors(sched_fn, n):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = sched_fn(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_matches_linear_lr():
    w = 5
    ref = _torch_factors(lambda o: torch.optim.lr_scheduler.LinearLR(
        o, start_factor=1 / w, end_factor=1.0, total_iters=w - 1), w)
    assert [lr_scale(s, 100, w) for s in range(w)] == pytest.approx(ref)


def test_cosine_decay_matches_cosine_annealing():
    total, w, m = 40, 8, 0.1
    ref = _torch_factors(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=total - w - 1, eta_min=m), total - w)
    ours = [lr_scale(s, total, w, "cosine", m) for s in range(w, total)]
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours[0] == 1.0 and ours[-1] == pytest.approx(m)


def test_linear_and_constant_decay():
    assert [lr_scale(s, 5, 0, "linear", 0.0) for s in range(5)] == pytest.approx([1, .75, .5, .25, 0])
    assert {lr_scale(s, 10, 2, "constant") for s in range(2, 10)} == {1.0}


# ---- Muon parameter grouping -----------------------------------------------------------------
def _expected_groups(model):
    """The rule written out module by module: Linear weights inside blocks -> Muon."""
    muon, decay, no_decay = set(), set(), set()
    names = {id(p): n for n, p in model.named_parameters()}
    for block in model.blocks:
        for mod in block.modules():
            if isinstance(mod, torch.nn.Linear):
                muon.add(names[id(mod.weight)])
    for n, p in model.named_parameters():
        if n in muon:
            continue
        (no_decay if p.ndim == 1 else decay).add(n)
    return muon, decay, no_decay


@pytest.mark.parametrize("preset,changes", [
    ("tiny", {}),
    ("tiny", {"mlp": "swiglu", "n_kv_head": 2}),
    ("tiny", {"pos": "learned", "norm": "layernorm", "bias": True, "tie_embeddings": False}),
])
def test_muon_takes_hidden_matrices_only(preset, changes):
    model = GPT(get_config(preset, **changes))
    split = split_parameters(model, "muon")
    muon, decay, no_decay = _expected_groups(model)
    assert set(split.muon) == muon
    assert set(split.adamw_decay) == decay
    assert set(split.adamw_no_decay) == no_decay
    assert "wte.weight" in split.adamw_decay  # embeddings (and a tied head) stay on AdamW
    if not model.config.tie_embeddings:
        assert "lm_head.weight" in split.adamw_decay
    if model.config.bias:
        assert any(n.endswith(".bias") for n in split.adamw_no_decay)
    all_names = [n for n, _ in model.named_parameters()]
    assert sorted(split.muon + split.adamw_decay + split.adamw_no_decay) == sorted(all_names)


def test_build_optimizer_uses_torch_muon_for_exactly_those_tensors():
    model = GPT(get_config("tiny"))
    opt = build_optimizer(model, OptimizerSpec("muon"))
    assert isinstance(opt.optimizers["muon"], torch.optim.Muon)
    assert isinstance(opt.optimizers["adamw"], torch.optim.AdamW)
    params = dict(model.named_parameters())
    muon_ids = {id(p) for g in opt.optimizers["muon"].param_groups for p in g["params"]}
    assert muon_ids == {id(params[n]) for n in split_parameters(model, "muon").muon}
    adamw_ids = {id(p) for g in opt.optimizers["adamw"].param_groups for p in g["params"]}
    assert not muon_ids & adamw_ids
    assert muon_ids | adamw_ids == {id(p) for p in model.parameters()}
    no_decay = [g for g in opt.optimizers["adamw"].param_groups if g["weight_decay"] == 0.0]
    assert all(p.ndim == 1 for g in no_decay for p in g["params"])
    opt.set_lr_scale(0.5)
    assert opt.optimizers["muon"].param_groups[0]["lr"] == pytest.approx(0.01)
    assert opt.optimizers["adamw"].param_groups[0]["lr"] == pytest.approx(1.5e-3)


def test_adamw_run_has_no_muon_group():
    model = GPT(get_config("tiny"))
    opt = build_optimizer(model, OptimizerSpec("adamw"))
    assert list(opt.optimizers) == ["adamw"]
    assert split_parameters(model, "adamw").muon == []


def test_time_optimizer_step_restores_weights():
    model = GPT(get_config("tiny"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = time_optimizer_step(model, OptimizerSpec("muon"), min_run_time=0.01)
    assert r["median_s"] > 0 and r["optimizer"] == "muon" and r["state_bytes"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    ({"steps": 0}, "steps=0"),
    ({"steps": -3}, "steps=-3"),
    ({"optimizer": "sgd"}, "optimizer='sgd'"),
    ({"decay": "step"}, "decay='step'"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"dtype": "int8"}, "dtype='int8'"),
])
def test_bad_train_config(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_batch_larger_than_a_split():
    n_val = len(data.get_split("val"))
    seq = 256
    batch = n_val // seq + 1  # fits the train split, not the validation split
    with pytest.raises(ValueError, match=r"larger than the 'val' split"):
        train("tiny", FAST, batch_size=batch, seq_len=seq)
    n_train = len(data.get_split("train"))
    with pytest.raises(ValueError, match=r"larger than the 'train' split"):
        train("tiny", FAST, batch_size=n_train // seq + 1, seq_len=seq)


def test_validation_batches_are_bounded_by_the_split():
    """More validation tokens per evaluation than EVAL_SPLIT_PASSES x the split only re-read it
    (``train --eval-batches 100000000`` was accepted and built every batch up front)."""
    from tutorial_lib.train import EVAL_SPLIT_PASSES, check_sizes
    cfg, n_val = get_config("tiny"), len(data.get_split("val"))
    most = EVAL_SPLIT_PASSES * n_val // (2 * 16)  # FAST: 2 sequences of 16 tokens per batch
    check_sizes(cfg, FAST.replace(eval_batches=most))
    with pytest.raises(ValueError, match=rf"eval_batches={most + 1} reads .* more than {EVAL_SPLIT_PASSES}x "
                                         rf"the 'val' split .* Use at most {most:,}"):
        check_sizes(cfg, FAST.replace(eval_batches=most + 1))
    with pytest.raises(ValueError, match="eval_batches=100000000"):
        train("tiny", FAST, eval_batches=100_000_000)
    for h in sorted((Path(__file__).resolve().parents[1] / "results").glob("*/*.json")):
        recorded = TrainHistory.load(h)  # the recorded H200 runs stay within the bound
        check_sizes(get_config(recorded.model["name"]), TrainConfig(**{**recorded.config, "progress": False}))


def test_seq_longer_than_block_size():
    with pytest.raises(ValueError, match="seq_len=512 exceeds the model's block_size=256"):
        train("tiny", FAST, seq_len=512)


def test_unknown_optimizer_in_spec():
    with pytest.raises(ValueError, match="optimizer='lion'"):
        OptimizerSpec("lion")


# ---- command line ----------------------------------------------------------------------------
CLI_FAST = ["train", "--preset", "tiny", "--steps", "3", "--batch", "2", "--seq", "16",
            "--warmup", "1", "--eval-every", "2", "--eval-batches", "1", "--device", "cpu",
            "--no-progress"]


def test_cli_writes_the_same_history_as_the_api(tiny_run, tmp_path, capsys):
    out = tmp_path / "history.json"
    assert main(CLI_FAST + ["--out", str(out)]) == 0
    h = TrainHistory.load(out)
    assert h.train_loss == tiny_run.train_loss and h.val_loss == tiny_run.val_loss
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["steps"] == 3 and summary["optimizer"] == "adamw"


def test_cli_model_overrides(tmp_path):
    out = tmp_path / "h.json"
    assert main(CLI_FAST + ["--steps", "1", "--set", "mlp=swiglu", "--set", "mlp_ratio=3",
                            "--out", str(out)]) == 0
    h = TrainHistory.load(out)
    assert h.model["mlp"] == "swiglu" and h.model["mlp_ratio"] == 3


@pytest.mark.parametrize("args,match", [
    (["--steps", "0"], "steps=0"),
    (["--set", "mlp=relu"], "mlp='relu'"),
    (["--set", "mlp_ratio"], "FIELD=VALUE"),
    (["--seq", "100000"], "seq_len=100000"),
])
def test_cli_bad_input_is_a_clear_error(args, match, capsys):
    assert main(CLI_FAST + args) == 2
    assert match in capsys.readouterr().err


def test_cli_rejects_unknown_optimizer(capsys):
    with pytest.raises(SystemExit) as e:
        main(CLI_FAST + ["--optimizer", "sgd"])
    assert e.value.code == 2
    assert "sgd" in capsys.readouterr().err


# ---- Muon's cost, against PyTorch's FLOP counter -----------------------------------------------
@pytest.mark.parametrize("changes", [{}, {"mlp": "swiglu", "n_kv_head": 2}, {"mlp_ratio": 3.0}])
def test_muon_step_flops_match_flop_counter(changes):
    from torch.utils.flop_counter import FlopCounterMode

    from tutorial_lib.optim import muon_step_flops

    model = GPT(get_config("tiny", **changes))
    opt = build_optimizer(model, OptimizerSpec("muon"))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    with FlopCounterMode(display=False) as fc:
        opt.optimizers["muon"].step()
    assert fc.get_total_flops() == muon_step_flops(model)


# ---- divergence and the saved history ------------------------------------------------------
def _diverged_history():
    """What a run that blew up at step 3 records: a finite step 1, a huge step 2, then NaN/inf."""
    return TrainHistory(model={"name": "tiny"}, config={"batch_size": 2, "seq_len": 16, "steps": 10},
                        optimizer="adamw", device="cpu", dtype="float32", world_size=1, n_params=1,
                        tokens_per_step=32, steps=[1, 2, 3], train_loss=[10.8, 3.3e6, math.nan],
                        lr=[1.0] * 3, grad_norm=[6.5, 3.9e8, math.inf], step_time_s=[0.1] * 3,
                        optimizer_time_s=[0.05] * 3, val_steps=[0, 2], val_loss=[10.8, 3.8e6],
                        val_wall_s=[0.0, 0.2], diverged=True, diverged_at_step=3)


def test_a_diverged_history_says_so_and_saves_strict_json(tmp_path):
    h = _diverged_history()
    assert math.isnan(h.final_val_loss)  # before: 3.8e6, the last validation before the blow-up
    assert h.divergence() == "diverged at step 3 (training loss, gradient norm not finite)"
    s = h.summary()
    assert s["final_val_loss"] is None and s["status"] == h.divergence() and s["steps_planned"] == 10
    assert (s["last_finite_train_loss"], s["last_finite_train_step"]) == (3.3e6, 2)
    assert (s["last_finite_val_loss"], s["last_finite_val_step"]) == (3.8e6, 2)

    def no_constants(token):
        raise AssertionError(f"{token} is not JSON")

    doc = json.loads(h.save(tmp_path / "h.json").read_text(), parse_constant=no_constants)
    assert doc["train_loss"][2] is None and doc["grad_norm"][2] is None  # NaN and inf as null ...
    assert doc["diverged"] is True and doc["diverged_at_step"] == 3  # ... flagged by the run
    assert doc["kind"] == "train_history"
    back = TrainHistory.load(tmp_path / "h.json")
    assert math.isnan(back.train_loss[2]) and math.isnan(back.grad_norm[2])
    assert back.summary() == s


def test_a_finished_history_has_no_divergence(tiny_run):
    assert tiny_run.divergence() == "" and not tiny_run.diverged and tiny_run.diverged_at_step is None
    assert "status" not in tiny_run.summary() and tiny_run.summary()["final_val_loss"] is not None


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(schema_version=99), "schema_version=99"),
    (lambda d: d.update(schema_version="one"), "schema_version='one'"),
    (lambda d: d.pop("optimizer"), "missing .*optimizer"),
    (lambda d: d.update(surprise=1), "unknown .*surprise"),
    (lambda d: d.update(val_loss=[]), "at least one validation loss"),
])
def test_loading_a_bad_history_names_the_file(tmp_path, change, match):
    d = _diverged_history().to_dict()
    change(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=match) as info:
        TrainHistory.load(p)
    assert str(p) in str(info.value)
    p.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        TrainHistory.load(p)
