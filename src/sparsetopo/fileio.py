"""Writing files so that a reader never sees half of one: atomic writes, stale temp files, CSV.

The package writes its files (topologies, checkpoints, metrics, tables, plots)
through :func:`atomic_write`: a temporary file next to the target,
fsync'ed, then renamed over it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "clean_stale_temp_files", "write_csv", "write_text_atomic"]

_HOST = socket.gethostname().replace(".", "_")


def _temp_name(path: Path) -> Path:
    # Host and PID in the name let a later writer tell a temp file left by a
    # killed process (safe to delete) from one another live process is writing.
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def clean_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files that a killed writer of ``path`` left behind (same host, process gone)."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}.{_HOST}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for p in candidates:
        pid = p.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces ``path`` only when the body succeeds.

    Exactly ``path`` is written (no suffix is ever added), readers never see a
    half-written file, a failed write leaves nothing behind, the file gets the
    permissions the umask allows (as ``open`` would), and temporary files of
    killed earlier writers of the same path are removed. A full disk is
    reported as ``OSError(ENOSPC)`` naming the path, whatever library wrote.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    clean_stale_temp_files(path)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except Exception as exc:
                if _disk_full(path, exc):
                    raise OSError(errno.ENOSPC, "no space left on device", str(path)) from None
                raise
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _disk_full(path: Path, exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    try:  # libraries (torch's zip writer) turn ENOSPC into their own errors
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_write(path) as f:
        f.write(text.encode())


def write_csv(path: str | os.PathLike, rows: list[dict], *, float_digits: int | None = None) -> None:
    """Write dict rows as CSV through a temporary file and a rename.

    ``float_digits`` rounds floats to that many significant digits (tables for
    people); ``None`` keeps ``repr`` precision (metrics that resumed runs compare).
    ``None`` values are written as empty cells.
    """
    import csv
    import io

    def cell(v):
        if v is None:
            return ""
        if float_digits is not None and isinstance(v, float):
            return f"{v:.{float_digits}g}"
        return v

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: cell(v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes (recorded beside outputs so that a reader can tell a changed one)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
