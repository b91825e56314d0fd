"""The time-boxed guide suite's plan: which sections first, and what each is predicted to cost.

A lent GPU gives minutes, not hours (``scripts/gpu_run.sh``: stages 1 and 2 share one deadline).
``guide.suite.run_suite`` runs the sections in ``priority_order`` and, given a budget, skips a
section in advance when ``predict_seconds`` says it would not finish in the time left (it is then
recorded as skipped, with the prediction and where it came from), so the time goes to the
sections that fit.

``PRIORITY``: the seed's breakdown and memory, the before/after table, the LM head, the speed
ladder, then every other section in ``suite.SECTIONS`` order. A name not (yet) in ``SECTIONS`` is
passed over, so a section can be placed here before it exists: add a name to reorder. A new
section also wants its seconds in ``ESTIMATES_S`` (per profile), so that it can be skipped in
advance before any run has recorded it.

Predicted seconds, best first:
1. recorded: the ``seconds`` a finished section took in an earlier run of the same profile
   (``results/*.json``; the same device name preferred, else another device of that profile);
2. ``ESTIMATES_S``: a table per profile. ``cpu`` and ``smoke`` were measured on this project's
   2-core CPUs (a busy one for smoke: on a quiet one they over-predict, so fewer sections fit);
   ``gpu`` is an estimate (no GPU run has been recorded yet) from the work each section does at
   the seed's setting -- tens of seconds per torch.compile warm-up, about 15 ms per GPT-2 small
   step at B=4, T=512 in bf16 -- and is replaced by the first real run's file;
3. nothing: a section with no prediction is never skipped in advance (the deadline still stops it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from tutorial_lib.measure.records import load_results

PRIORITY: Tuple[str, ...] = ("breakdown", "memory", "before_after", "lm_head", "speed_ladder")

ESTIMATES_S: Dict[str, Dict[str, float]] = {
    # estimates for one H100/H200 at the seed's setting (see the module doc), not measurements
    "gpu": {"breakdown": 15, "memory": 10, "before_after": 90, "lm_head": 40, "roofline": 40,
            "gqa_train": 25, "flash_model": 30, "mlp": 12, "swiglu": 15, "triton_flash": 120,
            "flash_vs_T": 90, "gqa_decode": 30, "window_curve": 60, "optimizer": 10, "own_paths": 60,
            "quality": 200},
    # results/cpu.json (a 2-core Xeon, 2026-12), rounded up
    "cpu": {"before_after": 220, "breakdown": 32, "memory": 23, "roofline": 78, "gqa_train": 251,
            "flash_model": 73, "mlp": 143, "swiglu": 190, "lm_head": 590, "triton_flash": 1,
            "flash_vs_T": 150, "gqa_decode": 46, "window_curve": 67, "optimizer": 5, "own_paths": 225,
            "quality": 1037},
    # the smoke profile measured on a busy 2-core CPU (load 4-6; 718 s in all), 2026-12-05, rounded
    # up: the tiny model keeps GPT-2's 50,257-way head, so a step-comparison section takes minutes
    "smoke": {"before_after": 184, "breakdown": 2, "memory": 3, "roofline": 7, "gqa_train": 80,
              "flash_model": 48, "mlp": 49, "swiglu": 168, "lm_head": 39, "triton_flash": 1, "flash_vs_T": 6,
              "gqa_decode": 17, "window_curve": 6, "optimizer": 7, "own_paths": 62, "quality": 46},
}

Prediction = Tuple[float, str]  # (seconds, where the number comes from)


def priority_order(names: Iterable[str], priority: Sequence[str] = PRIORITY) -> List[str]:
    """``names`` with those in ``priority`` first (in that order), the rest after in their own order."""
    names = list(names)
    first = [n for n in priority if n in names]
    return first + [n for n in names if n not in first]


def recorded_seconds(results_dir: Union[str, Path, None], profile: str,
                     device_name: Optional[str] = None) -> Dict[str, Prediction]:
    """{section: (seconds, source)} from the suite files in ``results_dir`` measured at ``profile``:
    each section's time in the newest file that finished it, a file from ``device_name`` winning
    over one from another device. Unreadable files, and sections that were not run, skipped or
    stopped, are passed over."""
    if results_dir is None or not Path(results_dir).is_dir():
        return {}
    found: Dict[str, Tuple[tuple, Prediction]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            doc = load_results(path)
        except ValueError:
            continue
        meta, sections = doc.get("meta", {}), doc.get("sections") or {}
        if meta.get("suite") is None or meta.get("profile") != profile:
            continue
        same = device_name is not None and meta.get("device_name") == device_name
        rank = (same, str(meta.get("date", "")))
        for name, sec in sections.items():
            s = sec.get("seconds")
            if (not isinstance(s, (int, float)) or isinstance(s, bool) or s < 0 or sec.get("not_run")
                    or sec.get("interrupted")):
                continue
            if name not in found or rank > found[name][0]:
                where = meta.get("device_name") or meta.get("device") or "?"
                found[name] = (rank, (float(s), f"recorded in {path.name} on {where}"))
    return {n: p for n, (_, p) in found.items()}


def predict_seconds(names: Iterable[str], profile: str, device_name: Optional[str] = None,
                    results_dir: Union[str, Path, None] = None) -> Dict[str, Prediction]:
    """{section: (seconds, source)} for each of ``names`` that has a prediction (module doc)."""
    if profile not in ESTIMATES_S:
        raise ValueError(f"profile={profile!r} is not one of {list(ESTIMATES_S)}")
    recorded = recorded_seconds(results_dir, profile, device_name)
    out: Dict[str, Prediction] = {}
    for n in names:
        if n in recorded:
            out[n] = recorded[n]
        elif n in ESTIMATES_S[profile]:
            out[n] = (float(ESTIMATES_S[profile][n]), f"the {profile} profile's estimate (guide/plan.py)")
    return out
