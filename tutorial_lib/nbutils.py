"""Small helpers for the notebooks: show library source, print the environment, format tables.

Importing this module needs neither IPython nor Jupyter (it is imported lazily where needed).
"""
from __future__ import annotations

import inspect
import platform
import textwrap
from typing import Iterable, Mapping, Optional, Sequence


class Source:
    """Source code of a library object; shows highlighted in Jupyter, plain as text."""

    def __init__(self, code: str, name: str, path: str, line: int):
        self.code, self.name, self.path, self.line = code, name, path, line

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"# {self.name}  ({self.path}:{self.line})\n{self.code}"

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer
        except ImportError:  # pragma: no cover - pygments ships with Jupyter
            import html
            return f"<pre>{html.escape(self.code)}</pre>"
        fmt = HtmlFormatter(noclasses=True, style="default")
        return (f"<div style='font-size:85%'><b>{self.name}</b> "
                f"<code>{self.path}:{self.line}</code>{highlight(self.code, PythonLexer(), fmt)}</div>")


def show_source(obj, lines: Optional[slice] = None) -> Source:
    """The source of a function/class/method from the library, highlighted in a notebook.

    ``lines`` selects part of it (e.g. ``slice(0, 30)``). Returns a ``Source`` (display it by
    making it the cell's last expression, or ``print`` it for plain text).
    """
    try:
        code = inspect.getsource(obj)
        file = inspect.getsourcefile(obj) or "?"
        _, line = inspect.getsourcelines(obj)
    except (TypeError, OSError) as e:
        raise ValueError(f"show_source: no source for {obj!r} ({e})") from None
    code = textwrap.dedent(code)
    if lines is not None:
        code = "\n".join(code.splitlines()[lines])
    mod = getattr(obj, "__module__", "") or ""
    rel = mod.replace(".", "/") + ".py" if mod.startswith("tutorial_lib") else file
    name = f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return Source(code.rstrip() + "\n", name, rel, line)


def env_summary(device=None) -> str:
    """Device, its name, torch version, size profile and dtype: a notebook's first printed lines."""
    import torch

    from tutorial_lib import settings

    env = settings.describe_environment(device)
    return "\n".join([
        f"device        : {env['device']} ({env['device_name']})",
        f"torch         : {env['torch']}  (python {platform.python_version()})",
        f"size profile  : {env['profile']}  (set TUTORIAL_PROFILE=smoke|cpu|gpu to change)",
        f"compute dtype : {env['dtype']}{' autocast' if env['dtype'] != 'float32' else ''}",
        f"threads       : {torch.get_num_threads()}",
    ] + load_lines(env["device"], torch.get_num_threads()))


def load_lines(device: str, threads: int, load: Optional[float] = None, cores: Optional[int] = None) -> list:
    """On a CPU: the 1-minute load average, and a warning when other processes already keep the
    cores busy -- then every timing below is noisy, and small multi-threaded (elementwise) ops
    suffer most, because their threads wait for each other on oversubscribed cores."""
    import os

    if not str(device).startswith("cpu"):
        return []
    try:
        load = os.getloadavg()[0] if load is None else load
    except (AttributeError, OSError):
        return []
    cores = cores or os.cpu_count() or 1
    out = [f"load average  : {load:.1f} on {cores} cores (last minute, before this notebook's work)"]
    from tutorial_lib.settings import cpu_oversubscribed

    if cpu_oversubscribed(load, cores):
        out.append(f"WARNING: more work than cores in the last minute; if other processes are still "
                   f"running, CPU timings here will be noisy and elementwise ops with {threads} threads "
                   f"inflated. Stop them, or torch.set_num_threads(1), before trusting a time.")
    return out


def format_rows(rows: Iterable[Mapping], columns: Optional[Sequence[str]] = None,
                formats: Optional[Mapping[str, str]] = None, headers: Optional[Mapping[str, str]] = None
                ) -> str:
    """A plain-text table of dict rows; ``formats`` maps a column to a format spec ("{:,.1f}")."""
    rows = list(rows)
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    formats, headers = formats or {}, headers or {}

    def cell(r, c):
        v = r.get(c)
        if v is None:
            return "—"
        f = formats.get(c)
        if f:
            try:
                return f.format(v)
            except (ValueError, TypeError):
                return str(v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    body = [[cell(r, c) for c in columns] for r in rows]
    head = [headers.get(c, c) for c in columns]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(columns))]

    def line(vals):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body])
