"""No number in prose that code did not produce: every number written in OPTIMIZATION_GUIDE.md outside
its generated blocks, and in the notebooks' markdown cells, must come from a source the test can
compute -- the seed's claims (quoted), GPT-2's configuration and the sizes the lessons use, or an
arithmetic derivation written out below. Measured numbers belong in generated tables and printed
outputs, never in prose; a new number in prose fails here until its source is named."""
import dataclasses
import inspect
import json
import math
import re
from pathlib import Path

import pytest

from tutorial_lib import claims
from tutorial_lib.lessons.sliding_window import window_work_figure
from tutorial_lib.measure import cost
from tutorial_lib.model import PRESETS, get_config
from tutorial_lib.optim import OptimizerSpec
from tutorial_lib.sizes import PROFILES

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.\-/])\d[\d,]*(?:\.\d+)?(?![\w])")


def _numbers_in(text):
    out = set()
    for m in NUMBER.finditer(text):
        raw = m.group(0).rstrip(",")
        try:
            out.add(float(raw.replace(",", "")))
        except ValueError:
            pass
    return out


def _sources():
    """Every number prose may state, with where it comes from."""
    src = {}

    def add(values, why):
        for v in values:
            if v is not None and math.isfinite(v):
                src.setdefault(round(float(v), 6), why)

    for c in claims.CLAIMS.values():  # the seed's own numbers, quoted
        add(_numbers_in(c.text), f"claim {c.key}")
        add([c.value, c.low, c.high], f"claim {c.key}")
        add([100 * x for x in (c.value, c.low, c.high) if x is not None and x <= 1], f"claim {c.key} (%)")
        add([x / d for x in (c.value, c.low, c.high) if x for d in (1e6, 1e9) if x >= d], f"claim {c.key} (M, G)")
    for name, cfg in PRESETS.items():  # configuration
        add([v for v in dataclasses.asdict(cfg).values() if isinstance(v, (int, float)) and not isinstance(v, bool)],
            f"preset {name}")
        add([cfg.head_dim, cfg.mlp_hidden, cfg.padded_vocab_size], f"preset {name}")
    small = get_config("gpt2_small")
    for ratio in (2.0, 3.0, 8 / 3, 4.0, 6.0):
        add([small.replace(mlp_ratio=ratio).mlp_hidden], "GPT-2 small's MLP width at a ratio")
    add([50304], "the vocabulary padded to a multiple of 64 (nanoGPT)")
    add([dataclasses.asdict(OptimizerSpec())[k] for k in ("lr", "muon_lr", "weight_decay")], "OptimizerSpec")
    for prof in PROFILES.values():  # the sizes the lessons measure at
        def walk(x):
            if isinstance(x, dict):
                for v in x.values():
                    yield from walk(v)
            elif isinstance(x, (list, tuple)):
                for v in x:
                    yield from walk(v)
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                yield x
        add(list(walk(prof.to_dict())), f"sizes.{prof.name}")
    add(range(0, 17), "a small count (steps, sections, cores, layers)")
    add([2 ** i for i in range(5, 16)], "a power-of-two length")
    add(range(1990, 2031), "a year (a citation)")
    # derivations, written out
    per_token = 2 * small.n_layer * small.n_embd  # K and V values cached per token, MHA
    add([per_token], "K/V values per cached token: 2 x n_layer x n_embd")
    n = cost.num_params(small)
    add([round(n / 1e6)], "GPT-2 small's parameters, in millions")
    add([round(n / per_token, -2)], "tokens at which the KV cache matches the weights: params / per-token values")
    add([100 * (1 - 2304 / 3072), 100 * 2304 / 3072, 4 / 3], "3x vs 4x MLP: 25 % fewer, 75 %, 4/3")
    add([2.5, 1.5, 1.2, 99.5, 98, 99], "the seed's GQA table and totals, as printed in its own text")
    add([5000, 7700, 8.5, 6.0, 51, 33], "the seed's Expected Results, quoted")
    add([2048 / 0.051], "the seed's 2,048 tokens in 51 ms")
    add([0.01, 0.04], "Muon learning rates an exercise tries (half and twice the default)")
    for fn in (window_work_figure,):  # the sizes a figure is drawn at, from its defaults
        add([p.default for p in inspect.signature(fn).parameters.values()
             if isinstance(p.default, int) and not isinstance(p.default, bool)], f"{fn.__name__}'s defaults")
    add([100, 150, 400, 1000, 1024], "step counts and lengths the text proposes")
    return src


SOURCES = _sources()


def unsourced(text):
    return sorted(v for v in _numbers_in(text) if round(v, 6) not in SOURCES)


def guide_prose():
    text = (ROOT / "OPTIMIZATION_GUIDE.md").read_text()
    text = re.sub(r"<!-- report:([\w.-]+) -->.*?<!-- /report:\1 -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # commands, not claims
    return re.sub(r"`[^`]*`", "", text)  # code spans: names and expressions


def test_the_guide_prose_states_no_number_without_a_source():
    assert unsourced(guide_prose()) == []


@pytest.mark.parametrize("nb", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebook_markdown_states_no_number_without_a_source(nb):
    cells = json.loads((ROOT / "notebooks" / nb).read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    text = re.sub(r"`[^`]*`", "", text)
    assert unsourced(text) == []


def test_the_check_catches_a_typed_measurement():
    assert unsourced("On this CPU the step took 507.7 ms.") == [507.7]
    assert unsourced("GQA-4 is 1.25× faster, says the seed.") == []  # quoted from the seed
