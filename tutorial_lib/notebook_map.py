"""The learner's map: what each notebook answers, how long it takes, what it needs, what to skip.

The questions, prerequisites and advice are data (``LESSONS``); the times are read, never typed:

- at the ``cpu`` profile, from the stored outputs' execution timestamps (each code cell's
  ``metadata.execution``: the first cell's start to the last cell's end) -- the committed
  notebooks are stored from a cpu-profile run;
- at the ``smoke`` profile, from ``notebooks/smoke_times.json``, which ``scripts/time_notebooks.py``
  writes by executing every notebook at that profile and reading the same timestamps.

``map_rows`` joins them; ``map_markdown`` is the README's table (``scripts/time_notebooks.py
--readme`` rewrites it; a test fails when it drifts) and 01's first cell prints ``map_lines``.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SMOKE_TIMES = "smoke_times.json"
MAX_MINUTES, TOTAL_MINUTES = 10.0, 60.0  # at the cpu profile, on 2 cores: each notebook, all of them


@dataclass(frozen=True)
class Lesson:
    stem: str  # notebooks/<stem>.ipynb
    question: str  # what it answers, in one line
    needs: str  # the notebooks (or knowledge) it builds on
    on_a_cpu: str  # what to skip, or wait for, on a CPU


LESSONS = (
    Lesson("01_profile", "Where do a training step's time and memory go, component by component?",
           "Python and PyTorch basics", "nothing; the profiles take a couple of minutes"),
    Lesson("02_gqa", "What do fewer K/V heads buy in training, and in decoding with a KV cache?",
           "01", "nothing; the quality runs are read from the record"),
    Lesson("03_flash_attention", "How does flash attention keep memory linear in T, and when is it faster?",
           "01", "flex rows (no CPU backward); the explorer's GPU settings are predictions"),
    Lesson("04_mlp_expansion", "What does a 3x MLP save, and why is it less than 25 %?",
           "01", "nothing"),
    Lesson("05_swiglu", "Does SwiGLU (or Muon) learn faster, per step and per second?",
           "04", "the quality runs are the slowest cells; Muon's CPU runs are read from the record"),
    Lesson("06_sliding_window", "When does a sliding window pay for a whole training step?",
           "03", "flex rows (no CPU backward)"),
    Lesson("07_all_together", "What does each change buy alone and together, and what should I do first?",
           "02-06, 08", "nothing; the quality runs and the decision tree are read from the record"),
    Lesson("08_lm_head", "How much of a step is the LM head and the loss, and what does a chunked loss save?",
           "01", "nothing; the head + loss sweeps over chunk, T and V are the slowest cells"),
    Lesson("09_roofline", "Why is time not FLOPs: which roof does each kernel hit on this machine?",
           "01, 03", "nothing"),
    Lesson("10_triton_flash", "What does a flash-attention kernel look like, written in Triton?",
           "03", "the timings: Triton's interpreter runs the kernels, slowly, for correctness only"),
    Lesson("11_speed_ladder", "Which levers that leave the model alone pay here: precision, compile, fused AdamW?",
           "01, 03, 09", "the compile rungs take minutes to compile; a CPU's bf16 speed depends on its instructions"),
    Lesson("12_memory_budget", "When a step does not fit: what do checkpointing and accumulation cost, and what fits?",
           "01, 08, 09", "nothing; the planner's measured plans are the slowest cells"),
    Lesson("99_explorer", "What if: any model, T, batch and device, predicted and measured on demand?",
           "01, 09 (the cost model)", "'Measure now' at large sizes (it says how long before it starts)"),
)


def _stamp(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def stored_seconds(book: dict) -> Optional[float]:
    """Seconds from the first code cell's start to the last one's end, by the stored outputs'
    execution timestamps; None for a notebook stored without them."""
    starts, ends = [], []
    for cell in book.get("cells", []):
        ex = cell.get("metadata", {}).get("execution") or {}
        start = ex.get("iopub.status.busy") or ex.get("iopub.execute_input")
        if start and ex.get("shell.execute_reply"):
            starts.append(_stamp(start))
            ends.append(_stamp(ex["shell.execute_reply"]))
    return (max(ends) - min(starts)).total_seconds() if starts else None


def stored_profile(book: dict) -> Optional[str]:
    """The size profile the stored outputs were made with (the first cell prints it)."""
    for cell in book.get("cells", []):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", []))
            if "size profile  :" in text:
                return text.split("size profile  :")[1].split()[0]
    return None


def smoke_times(directory: Path = NOTEBOOKS) -> Dict[str, dict]:
    """{stem: {"seconds": ..., ...}} of ``smoke_times.json`` ({} when it is missing)."""
    path = Path(directory) / SMOKE_TIMES
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc.get("notebooks", {})


def map_rows(directory: Path = NOTEBOOKS) -> List[dict]:
    """One row per notebook of ``LESSONS``: its question, its times at the cpu profile (stored
    outputs) and the smoke profile (``smoke_times.json``), prerequisites and what to skip on a CPU.
    A notebook whose stored outputs are not from the cpu profile says so instead of a cpu time."""
    smoke = smoke_times(directory)
    rows = []
    for lesson in LESSONS:
        path = Path(directory) / f"{lesson.stem}.ipynb"
        book = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        seconds, profile = stored_seconds(book), stored_profile(book)
        rows.append({"notebook": lesson.stem, "answers": lesson.question,
                     "cpu_min": seconds / 60 if seconds is not None and profile == "cpu" else None,
                     "stored_profile": profile,
                     "smoke_min": smoke[lesson.stem]["seconds"] / 60 if lesson.stem in smoke else None,
                     "needs": lesson.needs, "on_a_cpu": lesson.on_a_cpu})
    return rows


def totals(rows: List[dict]) -> Tuple[Optional[float], Optional[float]]:
    """(minutes at the cpu profile, at the smoke profile) over every notebook; None if one is missing."""
    def total(key):
        vals = [r[key] for r in rows]
        return None if any(v is None for v in vals) else sum(vals)
    return total("cpu_min"), total("smoke_min")


def map_lines(directory: Path = NOTEBOOKS) -> List[str]:
    """The map as text for a notebook's output: two lines per notebook."""
    out = []
    for r in map_rows(directory):
        cpu = _minutes(r["cpu_min"]) if r["cpu_min"] is not None else f"stored at {r['stored_profile']}"
        out.append(f"{r['notebook']:19} {r['answers']}")
        out.append(f"{'':19} cpu {cpu}, smoke {_minutes(r['smoke_min'])}; needs {r['needs']}; "
                   f"on a CPU: {r['on_a_cpu']}")
    cpu_total, smoke_total = totals(map_rows(directory))
    out.append(f"{'all':19} cpu {_minutes(cpu_total)}, smoke {_minutes(smoke_total)}")
    return out


def _minutes(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:.1f} min"


def map_markdown(directory: Path = NOTEBOOKS) -> str:
    """The README's map: a Markdown table and a sentence on where the times come from."""
    rows = map_rows(directory)
    lines = ["| notebook | answers | cpu | smoke | needs | on a CPU, skip or expect |", "|---|---|---|---|---|---|"]
    for r in rows:
        cpu = _minutes(r["cpu_min"]) if r["cpu_min"] is not None else f"(stored at `{r['stored_profile']}`)"
        lines.append(f"| `{r['notebook']}` | {r['answers']} | {cpu} | {_minutes(r['smoke_min'])} | "
                     f"{r['needs']} | {r['on_a_cpu']} |")
    cpu_total, smoke_total = totals(rows)
    lines.append(f"| **all** | | **{_minutes(cpu_total)}** | **{_minutes(smoke_total)}** | | |")
    return ("\n".join(lines) + "\n\nTimes are read, not typed: *cpu* from the stored outputs' execution "
            "timestamps (the committed notebooks were run at the `cpu` profile on a 2-core CPU), *smoke* from "
            "`notebooks/smoke_times.json` (`scripts/time_notebooks.py` runs every notebook at the `smoke` "
            "profile and records them). Your machine's will differ; the first cell of each notebook prints "
            "the machine it ran on.\n")
