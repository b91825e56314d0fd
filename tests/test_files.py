"""tutorial_lib.files: the one atomic writer -- a failed or interrupted write leaves the old file
whole and no temporary behind -- and the static rule that every file the package writes goes
through it."""
import ast
import errno
import os
import stat
from pathlib import Path

import pytest

from tutorial_lib import files

PKG = Path(__file__).resolve().parents[1] / "tutorial_lib"


def _only(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_whole_file_and_keeps_its_permissions(tmp_path):
    p = tmp_path / "sub" / "a.json"
    files.atomic_write_text(p, "first")
    assert p.read_text() == "first" and stat.S_IMODE(p.stat().st_mode) == files.DEFAULT_MODE
    os.chmod(p, 0o600)
    files.atomic_write_bytes(p, b"second")
    assert p.read_bytes() == b"second" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert _only(p.parent) == ["a.json"]


@pytest.mark.parametrize("fault", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "Ctrl-C"])
def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path, fault):
    p = tmp_path / "guide.md"
    p.write_text("the old guide")
    with pytest.raises(type(fault)) as info:
        with files.atomic_path(p) as tmp:
            tmp.write_text("half of the new gu")  # part of it is on disk, then the fault
            raise fault
    assert p.read_text() == "the old guide" and _only(tmp_path) == ["guide.md"]
    if isinstance(fault, OSError):  # the error names the file the user asked for
        assert str(p) in str(info.value)


def test_a_failed_rename_leaves_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    p.write_text("old")

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError):
        files.atomic_write_text(p, "new")
    assert p.read_text() == "old" and _only(tmp_path) == ["x.json"]


def test_a_folder_in_the_way_fails_and_cleans_up(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError):
        files.atomic_write_text(tmp_path / "out", "x")
    assert _only(tmp_path) == ["out"]


def test_tmp_suffix_ends_the_temporary_name(tmp_path):
    with files.atomic_path(tmp_path / "t.json.gz", tmp_suffix=".gz") as tmp:
        assert tmp.name.startswith(".t.json.gz.") and tmp.name.endswith(".tmp.gz")
        tmp.write_bytes(b"x")
    assert (tmp_path / "t.json.gz").read_bytes() == b"x"


def test_check_writable(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    new = tmp_path / "new" / "deeper" / "r.json"
    assert files.check_writable(new) == new
    assert files.check_writable(tmp_path / "afile")  # an existing file is replaced: fine
    with pytest.raises(ValueError, match="--out=.*adir.* is a folder"):
        files.check_writable(tmp_path / "adir")
    with pytest.raises(ValueError, match="afile.* is a file, not a folder"):
        files.check_writable(tmp_path / "afile" / "r.json")
    with pytest.raises(ValueError, match="--trace=.*is a file, not a folder"):
        files.check_writable(tmp_path / "afile" / "x" / "r.json", what="--trace")
    with pytest.raises(ValueError, match="empty"):
        files.check_writable("")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(ValueError, match="not writable"):
            files.check_writable(ro / "r.json")


# ---- targets that are not regular files, and symbolic links ------------------------------------
def _make(kind: str, path: Path):
    """A FIFO, a bound Unix socket, or a copy of /dev/null (``mknod``: root with CAP_MKNOD)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        return s
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs root (CAP_MKNOD); /dev/null itself is checked below")
    return None


KIND_TEST = {"fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK, "device": stat.S_ISCHR}


@pytest.mark.parametrize("kind", sorted(KIND_TEST))
def test_a_target_that_is_not_a_regular_file_is_never_replaced(tmp_path, kind):
    """``os.replace`` over a device node makes it a plain file (``train --out /dev/null`` as
    root did that to /dev/null): both the early check and the writer refuse, naming what is there."""
    target = tmp_path / "target"
    sock = _make(kind, target)
    try:
        with pytest.raises(ValueError, match="not a regular file: refusing to replace it"):
            files.check_writable(target)
        with pytest.raises(OSError, match="not a regular file") as info:
            files.atomic_write_text(target, "x" * 2000)
        assert str(target) in str(info.value)
        assert KIND_TEST[kind](os.lstat(target).st_mode) and _only(tmp_path) == ["target"]
        link = tmp_path / "link"  # a link to it is refused the same way
        link.symlink_to(target)
        with pytest.raises(OSError, match="not a regular file"):
            files.atomic_write_text(link, "x")
        assert KIND_TEST[kind](os.lstat(target).st_mode)
    finally:
        if sock is not None:
            sock.close()


def test_dev_null_is_refused_before_any_work():
    with pytest.raises(ValueError, match="'/dev/null': a character device, not a regular file"):
        files.check_writable("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symbolic_link_is_written_through_atomically(tmp_path):
    real = tmp_path / "data" / "guide.md"
    real.parent.mkdir()
    real.write_text("old")
    os.chmod(real, 0o600)
    link = tmp_path / "guide.md"
    link.symlink_to(real)
    assert files.check_writable(link) == link
    files.atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and stat.S_IMODE(real.stat().st_mode) == 0o600
    assert _only(real.parent) == ["guide.md"] and _only(tmp_path) == ["data", "guide.md"]
    # a failed write through the link leaves the file it points to whole
    with pytest.raises(OSError):
        with files.atomic_path(link) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert real.read_text() == "new" and _only(real.parent) == ["guide.md"]


def test_a_dangling_link_creates_its_target_and_a_loop_is_refused(tmp_path):
    link = tmp_path / "r.json"
    link.symlink_to(tmp_path / "made.json")
    files.atomic_write_text(link, "x")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "x"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ValueError, match="cannot be followed"):
        files.check_writable(tmp_path / "a")
    with pytest.raises(OSError, match="cannot be followed"):
        files.atomic_write_text(tmp_path / "a", "x")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


# ---- the rule: every file written in tutorial_lib goes through files.py -----------------------
WRITE_CALLS = {"write_text", "write_bytes", "savefig", "export_chrome_trace", "_dump_snapshot", "save",
               "savez", "savez_compressed", "dump", "write"}


def _write_mode(call: ast.Call) -> bool:
    mode = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    return (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
            and any(c in mode.value for c in "wax+"))


def _called(call: ast.Call) -> str:
    """The name a call calls: ``f(...)`` -> "f", ``x.f(...)`` -> "f"."""
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def unsafe_writes(source: str):
    """(line, call) of every write in ``source`` whose target is not a temporary from
    ``files.atomic_path`` (``with atomic_path(...) as tmp``) or an in-memory buffer (io.BytesIO)."""
    tree = ast.parse(source)
    safe = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                c = item.context_expr
                if (isinstance(c, ast.Call) and _called(c) == "atomic_path"
                        and isinstance(item.optional_vars, ast.Name)):
                    safe.add(item.optional_vars.id)
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and _called(node.value) in ("BytesIO", "StringIO")):
            safe.update(t.id for t in node.targets if isinstance(t, ast.Name))

    def target_is_safe(arg) -> bool:
        names = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)}
        return bool(names & safe)

    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node)
        if name == "open" and _write_mode(node):
            if not (node.args and target_is_safe(node.args[0])):
                out.append((node.lineno, ast.unparse(node)))
        elif name in ("write_text", "write_bytes"):
            if not target_is_safe(node.func.value):
                out.append((node.lineno, ast.unparse(node)))
        elif name in WRITE_CALLS - {"write_text", "write_bytes", "write", "dump"}:
            first = node.args[0] if node.args else None
            owner = getattr(node.func.value, "id", "") if isinstance(node.func, ast.Attribute) else ""
            if name == "save" and owner not in ("np", "numpy", "torch"):
                continue  # obj.save(path): a method of ours, checked where it writes
            if first is None or not target_is_safe(first):
                out.append((node.lineno, ast.unparse(node)))
    return out


def test_the_rule_catches_a_direct_write():
    assert unsafe_writes("def f(p):\n    p.write_text('x')\n")
    assert unsafe_writes("def f(p):\n    with open(p, 'w') as f:\n        f.write('x')\n")
    assert unsafe_writes("def f(prof, p):\n    prof.export_chrome_trace(p)\n")
    assert unsafe_writes("import numpy as np\ndef f(p, a):\n    np.save(p, a)\n")
    assert not unsafe_writes("def f(p, fig):\n    with atomic_path(p) as tmp:\n        fig.savefig(tmp)\n")
    assert not unsafe_writes("import io\ndef f(fig):\n    buf = io.BytesIO()\n    fig.savefig(buf)\n")
    assert not unsafe_writes("def f(p):\n    with open(p) as f:\n        return f.read()\n")


def test_every_file_the_package_writes_goes_through_files_py():
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "files.py" and path.parent == PKG:
            continue
        bad = unsafe_writes(path.read_text())
        if bad:
            found[str(path.relative_to(PKG))] = bad
    assert not found, f"write these through tutorial_lib.files (atomic_write_*/atomic_path): {found}"
