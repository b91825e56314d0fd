"""Every file the project writes goes through here: written whole, or not at all.

``atomic_write_text(path, text)`` (and ``_bytes``) write to a temporary file in the same folder,
``fsync`` it, then ``os.replace`` it over the target: a reader sees the old file or the complete
new one, never a part, and a failed write (full disk, a file-size limit, an interrupt) leaves the
previous file as it was and no temporary behind. ``atomic_path(path)`` does the same for writers
that want a path of their own (``np.save``, ``Figure.savefig``, a profiler trace).

``check_writable(path)`` tells, before any work starts, whether a path can be written: a folder
where a file should be, or a parent that is a regular file, are refused with a clear error.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # the writer may have closed it: flush it to disk ourselves
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; results and caches may be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc). Returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see the module doc). Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(path: PathLike, what: str = "--out") -> Path:
    """ValueError naming ``what`` when ``path`` cannot be written as a file: it is a folder, or a
    parent is a regular file, or the nearest existing folder is not writable."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what}={str(path)!r} is a folder; give a file name")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what}={str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what}={str(path)!r}: folder {str(parent)!r} is not writable")
    return p
