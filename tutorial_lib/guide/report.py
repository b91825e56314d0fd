"""Generate OPTIMIZATION_GUIDE.md's tables from recorded results (results/*.json).

The guide's prose never carries a measured number: every number sits inside a block

    <!-- report:SECTION -->
    ...generated...
    <!-- /report:SECTION -->

which ``python -m tutorial_lib report`` rewrites from the results files (``measure.records`` format;
rows whose ``kind`` is SECTION, plus optional ``sections[SECTION]`` columns/sizes/note), one table per recorded
device, each captioned with device, dtype, torch version, date and sizes. A test fails when the
committed guide differs from what ``render_guide`` would write.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

from tutorial_lib import claims
from tutorial_lib.guide.sources import duplicates, is_guide_record
from tutorial_lib.guide.suite import OWN_PATHS_KINDS, SECTIONS
from tutorial_lib.lessons import decision, speed_ladder
from tutorial_lib.lessons import roofline as roofline_lesson
from tutorial_lib.measure import ceilings, cost, flops, records
from tutorial_lib.measure.timing import NOISY
from tutorial_lib.model import GPTConfig, get_config
from tutorial_lib.settings import cpu_oversubscribed
from tutorial_lib.speedups import Speedup
from tutorial_lib.train import TrainHistory

BLOCK = re.compile(r"(<!-- report:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)",
                   re.DOTALL)
DEVICE_ORDER = {"cuda": 0, "mps": 1, "cpu": 2}
# anything on a line of its own that looks like a marker, well-formed or not
MARKER_LINE = re.compile(r"^[ \t]*(<!--\s*(/?)\s*report:\s*([^\s>]*)\s*-->)[ \t]*$", re.MULTILINE)
# what a block reads when nothing on record fills it (see render_block)
PLACEHOLDERS = ("_No recorded result for this table yet", "_No recorded training runs yet",
                "_No step time on record yet", "_No device run recorded yet")
FAILED = "failed"  # a cell of a row whose measurement failed: its error says why


def check_markers(text: str, source: str = "the guide") -> None:
    """ValueError unless ``text`` holds at least one report block and every marker line is part
    of one: a start marker without its end marker, an end marker without its start, or a block
    inside another would otherwise silently stop being managed."""
    blocks = list(BLOCK.finditer(text))
    paired = {m.start(1) for m in blocks} | {m.start(4) for m in blocks}
    for m in MARKER_LINE.finditer(text):
        if m.start(1) in paired:
            continue
        line = text.count("\n", 0, m.start(1)) + 1
        name = m.group(3)
        why = (f"an end marker without its start marker `<!-- report:{name} -->` before it" if m.group(2)
               else f"a start marker without its end marker `<!-- /report:{name} -->` after it")
        if not re.fullmatch(r"<!-- /?report:[\w.-]+ -->", m.group(1)):
            why = "not in the form `<!-- report:NAME -->` / `<!-- /report:NAME -->`"
        raise ValueError(f"{source}, line {line}: {m.group(1)} is {why}; the guide was left as it is")
    if not blocks:
        raise ValueError(f"{source} has no report blocks (a line `<!-- report:NAME -->`, the table, a line "
                         "`<!-- /report:NAME -->`): there is nothing to rewrite")


def load_results(paths: Iterable[Path]) -> list[dict]:
    """Results files (``measure.records.load_results``: validated, errors name the file), GPU first."""
    return guide_order([{**records.load_results(p), "_path": str(p)} for p in paths])


def guide_order(docs: list[dict]) -> list[dict]:
    """Results documents in the guide's order: GPU first, then by file name."""
    return sorted(docs, key=lambda d: (DEVICE_ORDER.get(records.device_kind(d["meta"].get("device", "")), 9),
                                       d.get("_path", "")))


def fmt(v) -> str:
    """A cell: ints with separators, floats to 3-4 significant digits, None/NaN as an em dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1e3:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:,.1f}"
        if a >= 1:
            return f"{v:.3g}" if a < 10 else f"{v:.1f}"
        return f"{v:.3g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    if any(r.get("error") for r in rows) and "error" not in cols:
        cols = [*cols, "error"]  # a failed row shows why

    def cell(r, c):  # a value a failed measurement left empty reads "failed", not "—" (not measured)
        return FAILED if r.get("error") and c != "error" and r.get(c) is None else fmt(r.get(c))

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def caption(meta: dict, section: dict) -> str:
    sizes = section.get("sizes")
    size_txt = ", ".join(f"{k}={v}" for k, v in sizes.items()) if sizes else ""
    parts = [f"**{meta.get('device_name') or meta.get('device', '?')}**", meta.get("dtype", "?"),
             f"torch {meta.get('torch', '?')}", f"profile `{meta.get('profile', '?')}`",
             str(meta.get("date", "?"))[:10]]
    txt = "Recorded on " + ", ".join(parts)
    if size_txt:
        txt += f"; {size_txt}"
    return txt + "."


def noisy_note(rows: list[dict]) -> str:
    """A warning naming the rows whose interleaved rounds still spread beyond ``timing.NOISY`` after
    re-measuring (``noisy``): their times and speedups are not to be trusted."""
    names = [str(r.get("variant") or "/".join(str(r[k]) for k in ("backend", "seq_len") if r.get(k) is not None))
             + (f" ({r['spread']:.0%})" if isinstance(r.get("spread"), (int, float)) else "")
             for r in rows if r.get("noisy")]
    if not names:
        return ""
    return (f"_Noisy: the rounds of {', '.join(names)} spread more than {NOISY:.0%} even after re-measuring, so "
            "their times are uncertain by that much. Their speedups are per-round ratios (load that comes and "
            "goes slows both sides of a round): trust one only as far as its range. Re-run on a quieter machine "
            "to narrow them._")


def load_note(meta: dict, section: dict) -> str:
    """On a CPU, the machine's load average while the section ran (``Suite.run`` records it) and,
    when other work was competing for the cores, a warning that its times are noisy."""
    load = section.get("load")
    if not load or not str(meta.get("device", "")).startswith("cpu"):
        return ""
    vals = [v for v in (load.get("start"), load.get("end")) if v is not None]
    if not vals:
        return ""
    cores, threads = load.get("cores") or 0, load.get("threads") or 0
    rng = f"{min(vals):.1f}" if len(set(vals)) == 1 else f"{min(vals):.1f}–{max(vals):.1f}"
    txt = f"_Load average {rng} on {cores} cores while this ran (the suite itself uses {threads} threads)"

    if cores and cpu_oversubscribed(max(vals), cores):
        txt += ("; more threads were runnable than there are cores (other jobs, or helper threads of the "
                "run itself), so its times are noisy and rows measured minutes apart are not comparable — "
                "byte counts, FLOPs, parameters and losses are not affected")
    return txt + "._"


# ---- analytic blocks: computed from the library at report time, the same on every device ----
def _analytic_flop_shares() -> str:
    """The seed's time-share claims beside GPT-2 small's analytic matmul-FLOP shares."""

    cfg, B, T = get_config("gpt2_small"), 4, 512
    counted = cost.flops_by_scope(cfg, B, T, "forward", "counted")
    visible = cost.flops_by_scope(cfg, B, T, "forward", "visible")
    full = claims.flop_shares_in_seed_terms(counted)
    causal = claims.flop_shares_in_seed_terms(visible)
    out = []
    for key, share in full.items():
        c = claims.get(key)
        claim = c.text.split("  ")[0].strip()
        out.append({"seed's claim": claim, "share of": c.of, "claimed": c.value,
                    "FLOP share (full T×T)": share, "FLOP share (causal)": causal[key]})
    note = (f"GPT-2 small ({cfg.describe()}), B={B}, T={T}, forward pass: "
            f"{sum(counted.values()) / 1e9:,.0f} GFLOPs counting the full T×T attention "
            f"(FlopCounterMode's convention), {sum(visible.values()) / 1e9:,.0f} GFLOPs counting only "
            "the causal half. Elementwise work (softmax, GELU, norms, RoPE) has no matmul FLOPs, so its "
            "share here is 0: its cost is memory traffic, which only a measurement shows. Computed by "
            "`tutorial_lib.measure.cost.flops_by_scope`; the tests check it against FlopCounterMode.")
    return markdown_table(out) + "\n" + note + "\n"


def _analytic_gpu_specs() -> str:
    """The datasheet ceilings of the GPUs the library knows (``measure.flops.GPU_SPECS``)."""
    rows = ceilings.spec_rows("bfloat16")
    for r in rows:
        if r["peak_TFLOPs"] is None:  # no bf16 on the datasheet (V100, T4): fp16's tensor cores
            fp16 = next(x for x in ceilings.spec_rows("float16") if x["gpu"] == r["gpu"])
            r.update(fp16, dtype="float16")
    return (markdown_table(rows, ["gpu", "dtype", "peak_TFLOPs", "bandwidth_GBs", "ridge", "source"])
            + "\nLabelled *spec*: dense tensor-core peak and memory bandwidth as the vendors state them, "
              "what a kernel may approach, not what it reaches (the `ceilings` table is measured). "
              "Ridge = peak / bandwidth, in FLOP per byte: a kernel of lower arithmetic intensity is "
              "memory-bound on that GPU. From `tutorial_lib.measure.flops.GPU_SPECS`, one table for the "
              "library (MFU uses the same peaks).\n")


def _analytic_published_ladder() -> str:
    """Karpathy's published A100 ladder (``lessons.speed_ladder.PUBLISHED_A100``): an anchor, no verdict."""
    return (markdown_table(speed_ladder.published_rows(), ["rung", "ms_per_step", "claimed_speedup", "vs_fp32"])
            + f"\nPublished figures, not measured here: {speed_ladder.PUBLISHED_SOURCE}, at his batch and in his "
              "order (torch.compile before flash attention). Other hardware, other sizes: an anchor for the shape "
              "of a ladder, compared with nothing.\n")


ANALYTIC = {"analytic.flop_shares": _analytic_flop_shares, "analytic.gpu_specs": _analytic_gpu_specs,
            "analytic.published_ladder": _analytic_published_ladder}


def _pct(x) -> str:
    return "—" if x is None else f"{x:+.0%}"


def render_roofline_errors(results: list[dict], histories: list[dict] | None) -> str:
    """The roofline model's and the FLOP-only prediction beside every step time on record
    (``lessons.roofline.prediction_errors``): a summary per device, then every row."""
    docs = [d for d in results if d.get("kind") != "cuda_tests"]
    rows = roofline_lesson.prediction_errors(docs, histories or [])
    if not rows:
        return "_No step time on record yet._\n"
    summary = roofline_lesson.error_summary(rows)
    out = ""
    if summary:
        for r in summary:
            r["roofline |error| (median)"] = f"{r.pop('roofline_median_abs_error'):.0%}"
            r["FLOP-only |error| (median)"] = f"{r.pop('flop_only_median_abs_error'):.0%}"
            r[f"roofline within ±{roofline_lesson.GOAL:.0%}"] = f"{r.pop('roofline_within_25pct')} of {r['steps']}"
        out += markdown_table(summary) + "\n"
    table = []
    for r in rows:
        if r.get("roofline_ms") is None:
            continue
        table.append({"source": r["source"], "variant": r["variant"], "B": r["B"], "T": r["T"],
                      "dtype": r["dtype"], "device": r["device_name"], "ceilings": r["ceilings"],
                      "measured_ms": r["measured_ms"], "roofline_ms": r["roofline_ms"],
                      "roofline error": _pct(r["roofline_error"]), "FLOP-only ms": r["flop_only_ms"],
                      "FLOP-only error": _pct(r["flop_only_error"]),
                      "overhead that would close the gap (µs/op)": r.get("inferred_overhead_us")})
    if table:
        out += markdown_table(table) + "\n"
    missing = [r for r in rows if r.get("roofline_ms") is None]
    if missing:
        where = ", ".join(sorted({f"{r['source'].split(':')[0]} ({r['device_name']})" for r in missing}))
        out += (f"{len(missing)} more step time(s) on record come from devices with no recorded ceilings "
                f"({where}): they are predicted once the suite's `roofline` section has run there.\n\n")
    return out + ("Error = predicted / measured − 1 (−50% = predicted twice as fast as measured). *Roofline*: "
                  "every kernel of the eager step at max(FLOPs / peak, bytes / bandwidth) plus the per-operator "
                  "overhead (`tutorial_lib.measure.roofline.predict_step`); *FLOP-only*: every matmul FLOP at the "
                  "peak. Ceilings *measured* come from the same device's results file; *spec* from the datasheet "
                  "above, which states no per-operator overhead, so a spec prediction is a lower bound and the "
                  "last column is the overhead per kernel launch that would explain the rest (an inference, not a "
                  "measurement). Training histories are compared without their optimizer step, which they record "
                  "separately (its own row, for AdamW). Computed at report time by "
                  "`tutorial_lib.lessons.roofline.prediction_errors`.\n")

DECISION_GRID = (("cuda", (256, 1024, 4096)), ("cpu", (256, 1024, 4096)))


def render_decision(results: list[dict]) -> str:
    """The decision tree as a table: for each device kind, T and goal, the changes worth making,
    best first, with their payoffs (``decision.recommend`` over these results files: *measured*
    where a file for that device kind holds the change near that T, else *analytic*, labelled)."""

    rows = []
    for device, seqs in DECISION_GRID:
        on_record = any(records.device_kind(d["meta"].get("device", "")) == device and d.get("kind") != "cuda_tests"
                        for d in results)

        def item(p):  # no step measured on this kind of device: the cost model's numbers are predictions
            if p.speedup is not None:  # one measurement, judged by the speedup rules, named
                return f"{p.title} {p.speedup.text()} ({p.source.replace('measured on ', 'measured: ')})"
            how = "measured" if p.measured else ("analytic" if on_record else "prediction")
            ceiling = f", ceiling {p.ceiling:.2f}×" if p.ceiling is not None else ""
            return f"{p.title} {p.value:.2f}× ({how}{ceiling})"

        for T in seqs:
            for goal in decision.GOALS:
                r = decision.recommend(T, device, goal, results=results)
                rows.append({"device": device, "T": T, "goal": goal,
                             "do first (payoff = baseline / variant)": "; ".join(
                                 f"{i}. {item(p)}" for i, p in enumerate(r.steps, 1)) or "—",
                             "measured, the rounds cannot tell": "; ".join(item(p) for p in r.undecided) or "—",
                             "little or no gain": "; ".join(
                                 p.title if p.value is None else item(p) for p in r.no_gain) or "—",
                             "the seed says": r.seed[0]})
    files = ", ".join(f"`{Path(d['_path']).name}` ({d['meta'].get('device_name', '?')})"
                      for d in results if "_path" in d) or "none"
    return (markdown_table(rows) + "\nComputed by `tutorial_lib.lessons.decision.recommend` from the results "
            f"files ({files}): a *measured* payoff is one row of a file recorded on that kind of device within a "
            "factor of 2 of T -- the nearest setting, then the most rounds, named -- printed with its per-round "
            "range, its rounds and its analytic ceiling (the largest of the change's FLOP, byte, launch and "
            "roofline ratios) and judged by `tutorial_lib.speedups`: a range over 1.0 is *within noise* and never "
            "ranks above a change whose whole range is above 1.0, fewer than 3 rounds give *no verdict*, a median "
            "above the ceiling is noise or a different kernel; every other payoff is the cost model's "
            "(speed: the roofline model's step-time ratio on ceilings recorded for that kind of device, "
            "else on the reference GPU's datasheet, else the FLOP ratio, as each row says; memory: predicted "
            "bytes; decoding: bytes read per new token, memory-bound), labelled *prediction* on a kind of "
            "device with no step measurement on record at all. The H200 training runs on record reach a "
            "small fraction of the GPU's bf16 peak (the MFU column of the training table): a GPU step is "
            "not math-bound, so a FLOP ranking there is not evidence. The seed's tree is quoted in its own words.\n")


# ---- recorded training runs: results/<folder>/*.json written by `python -m tutorial_lib train` ----
def _variant(model: dict, optimizer: str) -> str:
    mlp = model.get("mlp", "gelu")
    ratio = model.get("mlp_ratio") or (4.0 if mlp == "gelu" else 8 / 3)
    r = "8/3" if abs(ratio - 8 / 3) < 1e-6 else f"{ratio:g}"
    kv = model.get("n_kv_head")
    attn = "" if kv in (None, model.get("n_head")) else (", MQA" if kv == 1 else f", GQA-{kv}")
    return f"{'SwiGLU' if mlp == 'swiglu' else 'GELU'} {r}x{attn}, {optimizer}"


def training_runs(results_dir: Path, notes: list[str] | None = None) -> list[dict]:
    """One table per folder of train histories (``results/<folder>/*.json``), each row one run's
    summary, recomputed from its history. A history that does not load raises ValueError naming
    the file; other files in the folder are skipped with a line in ``notes``. A run that
    diverged says so in its val_loss cell."""
    out = []
    for folder in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        found = records.scan(folder, strict=True)
        if notes is not None and found.histories:  # folders without histories are not the table's
            notes += found.notes + [f"{d['_path']}: skipped, a results file inside a folder of training "
                                    "histories" for d in found.results]
        rows, meta, diverged = [], None, 0
        for path, doc in found.histories:
            h = TrainHistory.from_dict(doc, source=str(path))
            diverged += h.diverged
            sm = h.summary()
            meta = meta or {"device_name": sm.get("device_name") or sm.get("device"), "dtype": sm["dtype"],
                            "torch": h.torch_version or "?", "folder": folder.name,
                            "sizes": f"{sm['model']}, B={sm['batch_size']}, T={sm['seq_len']}, "
                                     f"{h.config.get('steps', sm['steps'])} steps"}
            finite = [v for v in h.val_loss if math.isfinite(v)]
            rows.append({"variant": _variant(h.model, h.optimizer), "params_M": sm["params"] / 1e6,
                         "MFU": training_mfu(h),
                         # losses to 3 decimals: 3 significant digits round 4.6249996 and 4.625004 apart
                         "val_loss": (f"diverged at step {h.diverged_at_step}" if h.diverged
                                      else f"{sm['final_val_loss']:.3f}"),
                         "best_val_loss": f"{min(finite):.3f}" if finite else None,
                         "ms_per_step": sm["median_step_ms"], "optimizer_ms": sm["median_optimizer_ms"],
                         "tokens_per_s": sm["tokens_per_s"], "wall_s": sm["wall_time_s"]})
        if rows:
            out.append({"meta": meta, "rows": rows, "diverged": diverged})
    return out


def training_mfu(h: TrainHistory) -> float | None:
    """Model FLOPs utilisation of a recorded run: the cost model's forward+backward FLOPs of one step
    over its median step time (optimizer included), against the GPU's spec peak in the run's dtype
    (``measure.flops.peak_flops``); None where the peak is unknown (a CPU, an unlisted GPU)."""
    try:
        cfg = GPTConfig(**h.model)
    except (TypeError, ValueError):
        return None
    B, T = h.config["batch_size"], h.config["seq_len"]
    step_s = h.median_step_s
    if not step_s or not math.isfinite(step_s):
        return None
    return flops.mfu(cost.step_flops(cfg, B, T, "fwdbwd", "visible") / step_s, h.device_name or "", h.dtype)


def render_training(runs: list[dict]) -> str:
    if not runs:
        return "_No recorded training runs yet (`python -m tutorial_lib train --out results/<name>/...`)._\n"
    chunks = []
    for run in runs:
        m = run["meta"]
        text = (f"Recorded on **{m['device_name']}**, {m['dtype']}, torch {m['torch']} "
                f"(`results/{m['folder']}/`); {m['sizes']}, same seed and data for every row. MFU: the "
                f"cost model's step FLOPs over the median step time, against the GPU's spec peak.\n\n"
                + markdown_table(run["rows"]))
        if run.get("diverged"):
            text += ("\n_A run marked \"diverged\" stopped at that step on a non-finite loss or gradient "
                     "norm: it has no final loss, and its best_val_loss is the best before it diverged._\n")
        chunks.append(text)
    return "\n".join(chunks)


def render_cuda_tests(results: list[dict]) -> str:
    """What the device run's stage 1 (``pytest -m cuda``, scripts/gpu_run.sh) found on each GPU:
    one row per test, its outcome and what it recorded (kernels that ran, errors, TFLOP/s)."""
    chunks = []
    for doc in results:
        if doc.get("kind") != "cuda_tests":
            continue
        rows = []
        for r in doc["rows"]:
            found = {k: v for k, v in r.items() if k not in ("kind", "test", "outcome", "seconds", "error")}
            rows.append({"test": r.get("test"), "outcome": r.get("outcome"), "seconds": r.get("seconds"),
                         "found": "; ".join(f"{k}: {v}" for k, v in found.items()) or None,
                         "error": r.get("error")})
        counts = {o: sum(r["outcome"] == o for r in rows) for o in ("passed", "failed", "skipped")}
        chunks.append(caption(doc["meta"], {}) + f" `pytest -m cuda`: {counts['passed']} passed, "
                      f"{counts['failed']} failed, {counts['skipped']} skipped.\n\n"
                      + markdown_table(rows, ["test", "outcome", "seconds", "found", "error"]))
    if not chunks:
        return ("_No device run recorded yet: a session that is lent a GPU runs `scripts/gpu_run.sh` "
                "(README: \"The device run\") and commits its `cuda_tests` file here._\n")
    return "\n".join(chunks)


def with_verdicts(doc: dict, name: str, rows: list[dict], columns: list[str] | None):
    """``rows`` and ``columns`` with every measured speedup in ``tutorial_lib.speedups``' printed form
    (median, per-round range, rounds, ceiling and verdict: ``decision.recorded_speedups``) in place
    of its median and range columns; a baseline row reads "baseline"."""
    found = decision.recorded_speedups(doc, name)
    if not any(found):
        return rows, columns
    section = doc.get("sections", {}).get(name, {})
    out = []
    for r, sp in zip(rows, found):
        key = next((k for k in decision.SPEEDUP_KEYS if r.get(k) is not None), None)
        r = {**r, key: sp.text() if sp is not None else "baseline"} if key else dict(r)
        if r.get("speedup_vs_baseline") is not None:  # a ladder's rung over its first rung, in the same form
            r["speedup_vs_baseline"] = Speedup(r["speedup_vs_baseline"], r.get("vs_baseline_min"),
                                               r.get("vs_baseline_max"), decision.section_rounds(r, section)).text()
        out.append(r)
    drop = {"speedup_range", "speedup_min", "speedup_max", "vs_baseline_range", "vs_baseline_min", "vs_baseline_max"}
    if name == "speed_ladder":
        drop.add("verdict")  # the printed form carries the verdict by the rules; the stored words may predate them
    return out, [c for c in columns if c not in drop] if columns else None


def render_block(name: str, results: list[dict], runs: list[dict] | None = None,
                 histories: list[dict] | None = None) -> str:
    if name == "cuda_tests":
        return render_cuda_tests(results)
    if name == "roofline.errors":
        return render_roofline_errors(results, histories)
    if name in ANALYTIC:
        return ANALYTIC[name]()
    if name == "training_runs":
        return render_training(runs or [])
    if name == "decision":
        return render_decision(results)
    chunks = []
    for res in results:
        # a table comes from a suite's section of that name (``bench --suite``), never from rows
        # that happen to share the kind (``profile --out-json`` also writes "memory" rows)
        section = res.get("sections", {}).get(name)
        if section is None:
            continue
        rows = [r for r in res["rows"] if r.get("kind") == name]
        body = caption(res["meta"], section) + "\n\n"
        if section.get("not_run"):
            body += f"_Not run on this device: {fmt(section.get('error', 'not reached'))}_\n"
        elif section.get("error"):
            body += f"_This section failed on this device: {fmt(section['error'])}_\n"
        else:
            body += markdown_table(*with_verdicts(res, name, rows, section.get("columns")))
            noisy = noisy_note(rows)
            if noisy:
                body += "\n" + noisy + "\n"
        if section.get("note"):
            body += "\n" + section["note"].strip() + "\n"
        load = load_note(res["meta"], section)
        if load:
            body += "\n" + load + "\n"
        chunks.append(body)
    if not chunks:
        return ("_No recorded result for this table yet: run "
                "`python -m tutorial_lib bench --suite guide --out results/<device>.json`._\n")
    return "\n".join(chunks)


def render_guide(text: str, results: list[dict], runs: list[dict] | None = None,
                 histories: list[dict] | None = None) -> str:
    """The guide with every report block regenerated from ``results`` (and training ``runs``, and
    their raw ``histories`` for the roofline's errors)."""
    def repl(m):
        return m.group(1) + render_block(m.group("name"), results, runs, histories) + m.group(4)
    return BLOCK.sub(repl, text)


def block_names(text: str) -> list[str]:
    return [m.group("name") for m in BLOCK.finditer(text)]


class Recorded:
    """Recorded tables for a notebook: Markdown in Jupyter (``_repr_markdown_``), the same text
    elsewhere."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def recorded(*sections: str, results_dir: Path | None = None) -> Recorded:
    """The guide's tables for ``sections``, from every results file in ``results_dir`` (default:
    the repository's results/), each captioned with the device, dtype, torch, profile, date and
    sizes it was recorded with -- so a notebook can show them beside its live measurement."""

    known = set(SECTIONS) | {"attention_vs_T", "expected_results", "ceilings", "roofline_points",
                             "roofline.errors", "lm_head_alone", "lm_head_claim", "speed_ladder.peaks",
                             "analytic.published_ladder", "memory_budget_policies",
                             "memory_budget_micro"} | set(OWN_PATHS_KINDS)
    for name in sections:
        if name not in known:
            raise ValueError(f"section={name!r} is not one of {sorted(known)}")
    d = Path(results_dir) if results_dir is not None else records.results_dir()
    # a broken file is left out with a warning naming it; results of other commands feed no table
    docs = guide_order([doc for doc in records.load_all(d) if is_guide_record(doc)])
    parts = []
    for name in sections:
        hist = roofline_lesson.training_histories(d) if name == "roofline.errors" else None
        parts.append(f"#### Recorded: `{name}` (from `results/*.json`, not measured now)\n\n"
                     + render_block(name, docs, histories=hist))
    devices = ", ".join(dict.fromkeys(str(doc["meta"].get("device_name", "?")) for doc in docs)) or "none yet"
    head = (f"_Recorded results files: {len(docs)} ({devices}). Add one with "
            "`python -m tutorial_lib bench --suite guide --out results/<device>.json`._\n\n")
    head += "".join(f"_Note: {line}; both are shown below._\n\n" for line in duplicates(docs))
    return Recorded(head + "\n".join(parts))


def regenerate(guide: Path, results_dir: Path, notes: list[str] | None = None,
               allow_placeholders: bool = False) -> tuple[str, str]:
    """(old text, new text) of the guide, from every results_dir/*.json and the training histories
    in its subfolders (``measure.records.scan``: a broken file raises ValueError naming it; other
    files are skipped with a line in ``notes``).

    ValueError (and the caller writes nothing) for: a missing folder, or one without a single
    results file of the guide's suite (rendering from nothing would replace every measured table
    with a placeholder); two files that record the same sections on the same device (every table
    would show it twice); a guide whose markers do not pair up (``check_markers``); and, unless
    ``allow_placeholders``, a block that holds recorded tables now and would become a placeholder
    (a results folder without the training runs would drop the guide's training table).
    Results files of other commands (``profile --out-json``, a ``bench`` grid) feed no table:
    they are skipped with a note."""
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise ValueError(f"results folder {str(results_dir)!r} does not exist (misspelled?)")
    if not results_dir.is_dir():
        raise ValueError(f"results folder {str(results_dir)!r} is not a folder")
    found = records.scan(results_dir, strict=True)
    docs = guide_order([d for d in found.results if is_guide_record(d)])
    if notes is not None:
        notes += found.notes + [f"{p}: skipped, a training history; the guide's training table reads "
                                f"{results_dir}/<folder>/*.json" for p, _ in found.histories]
        notes += [f"{d['_path']}: skipped, not a run of the guide's suite (`bench --suite guide`)"
                  + (f" but of `{d['meta']['command']}`" if d["meta"].get("command") else "")
                  + ": its rows feed no table" for d in found.results if not is_guide_record(d)]
    if not docs:
        raise ValueError(f"results folder {str(results_dir)!r} holds no results file of the guide's suite "
                         "(*.json from `python -m tutorial_lib bench --suite guide --out ...`); the guide was "
                         "left as it is")
    twice = duplicates(docs)
    if twice:
        raise ValueError("; ".join(twice) + ": every table they share would show that device twice. Keep one "
                         f"of them in {results_dir} (move the other away); the guide was left as it is")
    old = guide.read_text()
    check_markers(old, str(guide))
    runs = training_runs(results_dir, notes)
    histories = roofline_lesson.training_histories(results_dir)
    new = render_guide(old, docs, runs, histories)
    emptied = [] if allow_placeholders else emptied_blocks(old, new)
    if emptied:
        raise ValueError(f"{results_dir} holds nothing for {', '.join(emptied)}, which the guide shows recorded "
                         "tables for: rewriting would replace them with a placeholder (training runs are "
                         f"read from {results_dir}/<folder>/*.json). Add their results, or pass "
                         "--allow-placeholders to drop them on purpose; the guide was left as it is")
    return old, new


def emptied_blocks(old: str, new: str) -> list[str]:
    """The blocks that hold recorded tables in ``old`` and only a placeholder in ``new``."""
    before = {m.group("name"): m.group("body").strip() for m in BLOCK.finditer(old)}
    out = []
    for m in BLOCK.finditer(new):
        was = before.get(m.group("name"), "")
        if m.group("body").strip().startswith(PLACEHOLDERS) and was and not was.startswith(PLACEHOLDERS):
            out.append(m.group("name"))
    return out
