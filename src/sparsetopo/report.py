"""``sparsetopo report DIR``: a Markdown and a self-contained HTML report of the experiments in DIR.

Every experiment leaves a ``summary.json`` naming its tables, figures and
findings; the report gathers them. The HTML embeds the figures as data URIs
so that it can be mailed or attached as a single file.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import FileFormatError
from .fileio import file_sha256, write_text_atomic
from .tables import markdown_table

__all__ = ["find_experiments", "check_summary", "write_report"]


def find_experiments(root: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Experiment directories under ``root`` (itself included), with their validated summaries, sorted by path.

    A ``summary.json`` that is a JSON object without an ``experiment`` key is another
    tool's file and is passed over; anything else that is not a well-formed summary
    (:func:`check_summary`) is an error naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    found = []
    for path in sorted(root.rglob("summary.json")):
        if len(path.relative_to(root).parts) > 3:
            continue
        try:
            summary = json.loads(path.read_text())
        except ValueError:
            raise FileFormatError(path, f"not valid JSON; {_RERUN}") from None
        if isinstance(summary, dict) and "experiment" not in summary:
            continue
        found.append((path.parent, check_summary(path, summary)))
    if not found:
        raise FileNotFoundError(
            f"{root}: no experiment results (summary.json) found; run `sparsetopo experiment NAME --out {root}/NAME`"
        )
    return found


_RERUN = "re-run the `sparsetopo experiment` command of that directory to rewrite it"

#: Keys of a summary.json the report reads, with their types (``experiment`` is required).
_SUMMARY_KEYS = {"experiment": str, "preset": str, "title": str, "findings": list, "tables": dict,
                 "figures": dict, "config": dict, "files": dict}


def check_summary(path: Path, summary: Any) -> dict[str, Any]:
    """``summary`` if it is a well-formed experiment summary, else a :class:`FileFormatError` naming ``path``.

    It must be a JSON object with a string ``experiment``; ``findings`` a list of strings;
    ``tables`` and ``figures`` objects mapping captions to paths inside the experiment
    directory; ``config`` an object.
    """
    if not isinstance(summary, dict):
        raise FileFormatError(path, f"must be a JSON object (an experiment summary), got "
                                    f"{type(summary).__name__}; {_RERUN}")
    for key, kind in _SUMMARY_KEYS.items():
        if (key in summary or key == "experiment") and not isinstance(summary.get(key), kind):
            raise FileFormatError(path, f"'{key}' must be a JSON {_JSON_NAMES[kind]}, got "
                                        f"{type(summary.get(key)).__name__}; {_RERUN}")
    if not all(isinstance(f, str) for f in summary.get("findings", [])):
        raise FileFormatError(path, f"'findings' must be a list of strings; {_RERUN}")
    for key in ("tables", "figures"):
        for caption, rel_path in summary.get(key, {}).items():
            if not isinstance(rel_path, str) or not rel_path or Path(rel_path).is_absolute() \
                    or ".." in Path(rel_path).parts:
                raise FileFormatError(path, f"'{key}': {caption!r} must name a file inside the experiment "
                                            f"directory, got {rel_path!r}; {_RERUN}")
    return summary


_JSON_NAMES = {str: "string", list: "array", dict: "object"}


def _shown(text: str) -> str:
    """File content for a one-line message: control characters escaped, at most 200 characters."""
    return repr(text[:200])[1:-1]


def _check_sha(path: Path, expected: Any) -> None:
    if isinstance(expected, dict) and "sha256" in expected and expected["sha256"] != file_sha256(path):
        raise FileFormatError(path, f"changed since the experiment wrote it (its checksum is not the one "
                                    f"summary.json records); {_RERUN}")


def _read_csv(path: Path, expected: Any = None) -> list[dict[str, str]]:
    """A table the summary names, validated: a header, every row complete, and the columns, row
    count and checksum the summary recorded (``expected``, when it did)."""
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except (ValueError, csv.Error) as exc:  # undecodable bytes, NUL characters
        raise FileFormatError(path, f"not a CSV table ({exc}); {_RERUN}") from None
    if not table or not table[0]:
        raise FileFormatError(path, f"empty table (no header); {_RERUN}")
    header = table[0]
    for line, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise FileFormatError(path, f"line {line} has {len(cells)} cells for {len(header)} columns "
                                        f"(truncated?); {_RERUN}")
    if isinstance(expected, dict):
        if expected.get("columns") != header:
            raise FileFormatError(path, f"columns {_shown(','.join(header))}, the experiment wrote "
                                        f"{','.join(map(str, expected.get('columns') or []))[:200]}; {_RERUN}")
        if expected.get("rows") != len(table) - 1:
            raise FileFormatError(path, f"{len(table) - 1} rows, the experiment wrote {expected.get('rows')} "
                                        f"(truncated?); {_RERUN}")
    _check_sha(path, expected)
    return [dict(zip(header, cells)) for cells in table[1:]]


def _read_figure(path: Path, expected: Any = None) -> bytes:
    data = path.read_bytes()
    if path.suffix.lower() == ".png" and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise FileFormatError(path, f"not a PNG image; {_RERUN}")
    _check_sha(path, expected)
    return data


def _cell(text: str) -> str:
    """A table cell for readers: non-integer numbers to 4 significant digits (the CSV keeps more)."""
    try:
        x = float(text)
    except ValueError:
        return text
    return text if x.is_integer() and "e" not in text.lower() else f"{x:.4g}"


def _html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p><em>(empty)</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; display: block; overflow-x: auto;
        max-height: 36em; overflow-y: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
li { margin: 0.3em 0; }
"""


def write_report(root: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``root``; returns their paths."""
    root = Path(root)
    experiments = find_experiments(root)
    md = ["# sparsetopo report", "",
          "Experiments from *Topological Insights into Sparse Neural Networks* (Liu et al., ECML PKDD 2020), "
          "as run by sparsetopo. Findings are stated from the numbers of these runs.", ""]
    body = ["<h1>sparsetopo report</h1>",
            "<p>Experiments from <em>Topological Insights into Sparse Neural Networks</em> (Liu et al., "
            "ECML PKDD 2020), as run by sparsetopo. Findings are stated from the numbers of these runs.</p>"]
    for exp_dir, s in experiments:
        title = s.get("title", s["experiment"])
        # the experiment's own directory when the report sits inside it, not a bare '.'
        where = exp_dir.relative_to(root) if exp_dir != root else Path(root.resolve().name)
        md += [f"## {title}", "", f"Experiment `{s['experiment']}`, preset `{s.get('preset')}`, in `{where}`.", ""]
        body += [f"<h2>{html.escape(title)}</h2>",
                 f"<p>Experiment <code>{html.escape(s['experiment'])}</code>, preset "
                 f"<code>{html.escape(str(s.get('preset')))}</code>, in <code>{html.escape(str(where))}</code>.</p>"]
        md += ["### Findings", ""] + [f"- {f}" for f in s.get("findings", [])] + [""]
        body += ["<h3>Findings</h3><ul>"] + [f"<li>{html.escape(f)}</li>" for f in s.get("findings", [])] + ["</ul>"]
        for caption, rel_path in s.get("tables", {}).items():
            rows = _read_csv(exp_dir / rel_path, s.get("files", {}).get(rel_path))
            md += [f"### {caption}", "", markdown_table(rows)]
            body += [f"<h3>{html.escape(caption)}</h3>", _html_table(rows)]
        for caption, rel_path in s.get("figures", {}).items():
            fig = exp_dir / rel_path
            md += [f"### {caption}", "", f"![{caption}]({(where / rel_path).as_posix()})", ""]
            data = base64.b64encode(_read_figure(fig, s.get("files", {}).get(rel_path))).decode()
            body += [f"<h3>{html.escape(caption)}</h3>",
                     f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">']
        cfg = yaml.safe_dump(s.get("config", {}), sort_keys=False)
        md += ["### Configuration", "", "```yaml", cfg.rstrip(), "```", ""]
        body += ["<h3>Configuration</h3>", f"<pre>{html.escape(cfg)}</pre>"]
    md_path, html_path = root / "report.md", root / "report.html"
    write_text_atomic(md_path, "\n".join(md) + "\n")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>sparsetopo report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    write_text_atomic(html_path, page)
    return md_path, html_path
