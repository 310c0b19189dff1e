"""Rows of results as tables for people (markdown); :func:`~sparsetopo.fileio.write_csv` writes them as CSV."""

from __future__ import annotations

__all__ = ["markdown_table"]


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
