"""Every file the project writes goes through here: written whole, or not at all.

``atomic_write_text(path, text)`` (and ``_bytes``) write to a temporary file in the same folder,
``fsync`` it, then ``os.replace`` it over the target: a reader sees the old file or the complete
new one, never a part, and a failed write (full disk, a file-size limit, an interrupt) leaves the
previous file as it was and no temporary behind. ``atomic_path(path)`` does the same for writers
that want a path of their own (``Figure.savefig``, a profiler trace, a CUDA memory snapshot).

A failed write raises the ``OSError`` with the target's name in it (``[Errno 27] File too large:
'results/x.json'``), so the command line can print one clear line. Only a hard kill (SIGKILL,
power loss) can leave a temporary behind: a hidden ``.NAME.*.tmp`` file beside the target.

``check_writable(path)`` tells, before any work starts, whether a path can be written: a folder
where a file should be, or a parent that is a regular file, are refused with a clear error.

Only regular files are ever replaced. A target that exists as something else -- a device node
such as /dev/null, a FIFO, a socket -- is refused by both (``os.replace`` would turn /dev/null into
a plain file). A symbolic link is written through: the file it points to is replaced atomically
and the link stays a link.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

PathLike = Union[str, os.PathLike]
DEFAULT_MODE = 0o644  # mkstemp makes files private; results and caches may be shared


@contextlib.contextmanager
def atomic_path(path: PathLike, tmp_suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The writer writes the temporary path (and may close it); it is then flushed to disk and
    renamed over ``path``, keeping the permissions of the file it replaces. On any exception the
    temporary file is removed, ``path`` is untouched and the exception propagates (an ``OSError``
    without a file name gets ``path``'s). ``tmp_suffix`` ends the temporary name, for writers that
    choose a format by extension (``".gz"``)."""
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + tmp_suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # the writer may have closed it: flush it to disk ourselves
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_of(path))
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # "[Errno 28] No space left on device: 'results/x.json'"
        raise
    _fsync_dir(path.parent)


NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket"))


def what_is_there(path: PathLike) -> Optional[str]:
    """None when nothing is at ``path`` or it is a regular file (following symbolic links), else
    what it is: "a folder", "a character device", "a FIFO (named pipe)", ..."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (yet)
        return None
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in NOT_REGULAR if test(mode)), "not a regular file")


def write_target(path: PathLike) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or for a symbolic link the file it
    points to (so the link stays a link and its target gets the new content). OSError naming
    ``path`` when that is not a regular file (a device node, a FIFO, a socket, a folder) or the
    link cannot be followed (a loop)."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        what = what_is_there(target)
    except OSError as e:  # ELOOP: a chain of links that never ends; EACCES
        raise OSError(e.errno, f"cannot be followed ({e.strerror})", str(path)) from None
    if what is not None:
        shown = str(path) if target == path else f"{path} -> {target}"
        code = errno.EISDIR if what == "a folder" else errno.EINVAL
        raise OSError(code, f"{what}, not a regular file: refusing to replace it", shown)
    return target


def _mode_of(path: Path) -> int:
    """The permission bits of the file ``path`` replaces, else ``DEFAULT_MODE``."""
    try:
        st = os.stat(path)
    except OSError:
        return DEFAULT_MODE
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else DEFAULT_MODE


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc). Returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see the module doc). Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(path: PathLike, what: Optional[str] = "--out") -> Path:
    """ValueError when ``path`` cannot be written as a file: it is a folder, a device node, a FIFO
    or a socket (``write_target``), a parent is a regular file, or the nearest existing folder is
    not writable. A symbolic link is checked as the file it points to. The message starts with
    ``what=path`` (just the path when ``what`` is None)."""
    p = Path(path)
    name = f"{what}={str(path)!r}" if what else repr(str(path))
    if str(path) == "":
        raise ValueError(f"{name} is empty; give a file name")
    if p.is_dir():
        raise ValueError(f"{name} is a folder; give a file name")
    try:
        target = write_target(p)
    except OSError as e:  # a device node, a FIFO, a socket, a link loop: never replaced
        raise ValueError(f"{name}: {e.strerror}; give the name of a regular file") from None
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: folder {str(parent)!r} is not writable")
    return p
