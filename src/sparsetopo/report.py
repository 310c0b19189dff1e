"""``sparsetopo report DIR``: a Markdown and a self-contained HTML report of the experiments in DIR.

Every experiment leaves a ``summary.json`` naming its tables, figures and
findings; the report gathers them. The HTML embeds the figures as data URIs
so that it can be mailed or attached as a single file.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import json
import os
import re
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
                 "figures": dict, "config": dict, "files": dict, "notes": dict}


def check_summary(path: Path, summary: Any) -> dict[str, Any]:
    """``summary`` if it is a well-formed experiment summary, else a :class:`FileFormatError` naming ``path``.

    It must be a JSON object with a string ``experiment``; ``findings`` a list of strings;
    ``tables`` and ``figures`` objects mapping captions to paths inside the experiment
    directory; ``config`` an object; ``notes`` an object mapping captions to the text shown under them.
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
    if not all(isinstance(n, str) for n in summary.get("notes", {}).values()):
        raise FileFormatError(path, f"'notes' must map captions to strings; {_RERUN}")
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


def _cell(text: str, column: str = "") -> str:
    """A table cell for readers: a density as a percentage, other non-integer numbers to 4 significant
    digits (the CSV keeps more)."""
    try:
        x = float(text)
    except ValueError:
        return text
    if "density" in column and 0 <= x <= 1:
        return f"{100 * x:.2f}".rstrip("0").rstrip(".") + " %" if x >= 1e-4 else f"{100 * x:.2g} %"
    return text if x.is_integer() and "e" not in text.lower() else f"{x:.4g}"


def _what(row: dict[str, str], column: str) -> str:
    """What a cell holds, for :func:`_cell`: its column, or in a settings table the row's setting."""
    return row["setting"] if "setting" in row and column != "setting" else column


def _readable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{c: _cell(v, _what(r, c)) for c, v in r.items()} for r in rows]


#: Columns a table shows side by side; a wider one is split into parts that repeat its key columns,
#: so that the page never scrolls sideways inside a table.
MAX_COLUMNS = 8


def _key_columns(rows: list[dict[str, str]]) -> list[str]:
    """The leading columns that name a row (text or whole numbers: epoch, layer, method), at most 3."""
    keys = []
    for c in list(rows[0])[:3]:
        if not all(re.fullmatch(r"-?\d+", r[c]) or not _is_number(r[c]) for r in rows):
            break
        keys.append(c)
    return keys


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_groups(rows: list[dict[str, str]]) -> list[list[str]]:
    """The columns of each part of a table: all of them, or the key columns and up to
    ``MAX_COLUMNS`` - len(keys) others per part."""
    cols = list(rows[0])
    if len(cols) <= MAX_COLUMNS:
        return [cols]
    keys = _key_columns(rows)
    rest = [c for c in cols if c not in keys]
    step = MAX_COLUMNS - len(keys)
    return [keys + rest[i:i + step] for i in range(0, len(rest), step)]


def _header(column: str) -> str:
    # a long snake_case name may break after its underscores (a narrow column, not a wide table)
    return "_<wbr>".join(html.escape(part) for part in column.split("_"))


def _html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p><em>(empty)</em></p>"
    parts, shown = [], _readable(rows)
    # text columns read from the left, numbers line up on the right
    align = {c: "" if all(_is_number(r[c]) or not r[c] for r in rows) else ' class="text"' for c in rows[0]}
    for cols in _column_groups(rows):
        head = "".join(f"<th{align[c]}>{_header(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td{align[c]}>{html.escape(r[c])}</td>" for c in cols) + "</tr>"
                       for r in shown)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; overflow-wrap: anywhere; }
th { background: #f3f3f3; }
th.text, td.text { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.85em; }
li { margin: 0.3em 0; }
p.note { color: #444; font-size: 0.95em; }
"""


def _applies(key: str, config: dict[str, Any]) -> bool:
    """Whether a setting applies to the run: ``channels`` only to a CNN (its help says ``--model cnn:``),
    ``init_std`` only with normal initial or regrown weights."""
    from .training import TrainConfig

    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}
    only = re.match(r"--model (\w+):", helps.get(key, ""))
    if only and config.get("model", "mlp") != only.group(1):
        return False
    if key == "init_std":
        return "normal" in (config.get("init"), config.get("regrow_init"))
    return True


def _config(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of the run that apply to its model (see :func:`_applies`), numbers as
    :func:`_cell` shows them (summary.json keeps every digit)."""
    def shown(key, value):
        if isinstance(value, float):
            text = _cell(repr(value), key)
            return text if text.endswith("%") else float(text)
        return value
    return {k: shown(k, v) for k, v in config.items() if _applies(k, config)}


def _note(s: dict[str, Any], caption: str) -> tuple[list[str], list[str]]:
    """The Markdown and HTML of the note the summary has for ``caption`` (none: nothing)."""
    note = s.get("notes", {}).get(caption)
    return ([note, ""], [f'<p class="note">{html.escape(note)}</p>']) if note else ([], [])


def _section(exp_dir: Path, s: dict[str, Any], where: Path) -> tuple[list[str], list[str]]:
    """One experiment's part of the report: its Markdown and HTML lines."""
    title, config = s.get("title", s["experiment"]), s.get("config", {})
    md = [f"## {title}", "", f"Experiment `{s['experiment']}`, preset `{s.get('preset')}`, in `{where}`.", ""]
    body = [f"<h2>{html.escape(title)}</h2>",
            f"<p>Experiment <code>{html.escape(s['experiment'])}</code>, preset "
            f"<code>{html.escape(str(s.get('preset')))}</code>, in <code>{html.escape(str(where))}</code>.</p>"]
    md += ["### Findings", ""] + [f"- {f}" for f in s.get("findings", [])] + [""]
    body += ["<h3>Findings</h3><ul>"] + [f"<li>{html.escape(f)}</li>" for f in s.get("findings", [])] + ["</ul>"]
    for caption, rel_path in s.get("tables", {}).items():
        rows = _read_csv(exp_dir / rel_path, s.get("files", {}).get(rel_path))
        # a settings table lists only the settings that apply to this run's model
        rows = [r for r in rows if "setting" not in r or _applies(r["setting"], config)]
        note_md, note_html = _note(s, caption)
        md += [f"### {caption}", "", *note_md, markdown_table(_readable(rows))]
        body += [f"<h3>{html.escape(caption)}</h3>", *note_html, _html_table(rows)]
    for caption, rel_path in s.get("figures", {}).items():
        note_md, note_html = _note(s, caption)
        md += [f"### {caption}", "", *note_md, f"![{caption}]({(where / rel_path).as_posix()})", ""]
        data = base64.b64encode(_read_figure(exp_dir / rel_path, s.get("files", {}).get(rel_path))).decode()
        body += [f"<h3>{html.escape(caption)}</h3>", *note_html,
                 f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">']
    cfg = yaml.safe_dump(_config(config), sort_keys=False, default_flow_style=None, width=100)
    md += ["### Configuration", "", "```yaml", cfg.rstrip(), "```", ""]
    body += ["<h3>Configuration</h3>", f"<pre>{html.escape(cfg)}</pre>"]
    return md, body


def write_report(root: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``root``; returns their paths.

    Every table is complete (no part of it hidden behind a scrollbar); one wider than
    :data:`MAX_COLUMNS` is shown in parts that repeat its key columns. Numbers are
    rounded for reading (densities as percentages); the CSV files keep every digit.
    """
    root = Path(root)
    experiments = find_experiments(root)
    md = ["# sparsetopo report", "",
          "Experiments from *Topological Insights into Sparse Neural Networks* (Liu et al., ECML PKDD 2020), "
          "as run by sparsetopo. Findings are stated from the numbers of these runs.", ""]
    body = ["<h1>sparsetopo report</h1>",
            "<p>Experiments from <em>Topological Insights into Sparse Neural Networks</em> (Liu et al., "
            "ECML PKDD 2020), as run by sparsetopo. Findings are stated from the numbers of these runs.</p>"]
    for exp_dir, s in experiments:
        # the experiment's own directory when the report sits inside it, not a bare '.'
        where = exp_dir.relative_to(root) if exp_dir != root else Path(root.resolve().name)
        section_md, section_html = _section(exp_dir, s, where)
        md += section_md
        body += section_html
    md_path, html_path = root / "report.md", root / "report.html"
    write_text_atomic(md_path, "\n".join(md) + "\n")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>sparsetopo report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    write_text_atomic(html_path, page)
    return md_path, html_path
