"""Small helpers shared by the package: random generators and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(seed: SeedLike) -> np.random.Generator:
    """Return a NumPy ``Generator`` for ``seed`` (an int, a SeedSequence or a Generator).

    A Generator passed in is returned as is, so callers can thread one stream
    through several calls; nothing here touches NumPy's global state.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Readers never see a half-written file and a failed write leaves nothing
    behind: the temporary file is removed when the body raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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


def markdown_table(rows: list[dict]) -> str:
    """Rows as a GitHub-flavoured markdown table (floats to 4 significant digits)."""
    if not rows:
        return "_(empty)_\n"

    def fmt(v):
        return "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
