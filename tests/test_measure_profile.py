"""measure.profile: per-component times from torch.profiler, forward and backward."""
import json

import pytest

from tutorial_lib import scopes
from tutorial_lib.measure import profile as P
from tutorial_lib.model import GPTConfig

CFG = GPTConfig(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, block_size=128, name="t",
                attn_backend="eager")


@pytest.fixture(scope="module")
def prof(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "step.json"
    # 3 profiled steps after 2 warm-ups: one step of a model this small is a few ms, and a single
    # scheduler hiccup in the autograd engine made the attribution assertions below flaky
    return P.profile_step(CFG, 2, 64, device="cpu", steps=3, warmup=2, trace_path=str(path))


def test_shares_add_up_and_cover_every_scope(prof):
    assert sum(prof.shares().values()) == pytest.approx(1.0)
    assert sum(r["ms"] for r in prof.rows) == pytest.approx(prof.step_ms)
    fwd = prof.ms("forward")
    assert set(scopes.SCOPE_NAMES) <= set(fwd) and all(fwd[s] > 0 for s in scopes.SCOPE_NAMES)
    # that the scopes cover most of the forward is counted, not timed: a time share ("outside the
    # scopes < 50%") got 53% on a loaded machine. The forward ops that create autograd nodes are
    # the ones test_most_backward_nodes_map_to_a_model_scope finds inside a scope.
    assert set(prof.phase_ms()) == {"forward", "backward", "optimizer"}


BACKWARD_SCOPES = ("attention.qkv", "attention.core", "attention.out", "mlp.up", "mlp.down", "lm_head",
                   "loss", "norm")


def test_backward_is_attributed_to_the_scopes_that_created_it(prof):
    bwd = prof.ms("backward")
    for s in BACKWARD_SCOPES:
        assert bwd.get(s, 0) > 0, s


def test_most_backward_nodes_map_to_a_model_scope(monkeypatch):
    """Counted, not timed: with every profiler event worth 1, the backward rows count autograd nodes
    by the scope of the forward op that created them -- so this also counts how much of the
    forward's differentiable work runs inside a scope. (Time shares -- "unattributed < 40% of
    backward", "outside the scopes < 50% of forward" -- failed on a loaded machine: the gaps between
    ops grow with the load, the mapping does not.) Nodes outside every scope are the residual adds
    and the glue."""
    monkeypatch.setattr(P, "_time", lambda event, cuda: 1.0)
    r = P.profile_step(CFG, 2, 64, device="cpu", steps=1, warmup=1)
    nodes = {scope: round(ms * 1e3) for scope, ms in r.ms("backward").items()}  # us -> one per node
    for s in BACKWARD_SCOPES:
        assert nodes.get(s, 0) > 0, (s, nodes)
    scoped = sum(n for s, n in nodes.items() if s in scopes.SCOPE_NAMES)
    assert scoped > 0.75 * sum(nodes.values()) and nodes.get(P.OTHER_FWD, 0) < 0.15 * sum(nodes.values()), nodes


def test_table_and_groups(prof):
    t = prof.table()
    assert sum(r["share"] for r in t) == pytest.approx(1.0)
    g = prof.shares(by="group")
    assert {"attention", "mlp", "lm_head", "loss", "norm", "embedding"} <= set(g)


def test_trace_is_chrome_json(prof):
    doc = json.load(open(prof.trace_path))
    names = {e.get("name") for e in doc["traceEvents"]}
    assert "attention.core" in names and "phase.backward" in names


def test_forward_only_mode():
    r = P.profile_step(CFG, 1, 16, mode="fwd", device="cpu", steps=1, warmup=0)
    assert set(r.phase_ms()) == {"forward"}
    with pytest.raises(ValueError, match="mode='bwd'"):
        P.profile_step(CFG, 1, 16, mode="bwd", device="cpu")
