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

from .errors import SparsetopoError
from .fileio import write_text_atomic
from .tables import markdown_table

__all__ = ["find_experiments", "write_report"]


def find_experiments(root: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Experiment directories under ``root`` (itself included), with their summaries, sorted by path."""
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
            raise SparsetopoError(f"{path}: not valid JSON") from None
        if "experiment" in summary:
            found.append((path.parent, summary))
    if not found:
        raise FileNotFoundError(
            f"{root}: no experiment results (summary.json) found; run `sparsetopo experiment NAME --out {root}/NAME`"
        )
    return found


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
            rows = _read_csv(exp_dir / rel_path)
            md += [f"### {caption}", "", markdown_table(rows)]
            body += [f"<h3>{html.escape(caption)}</h3>", _html_table(rows)]
        for caption, rel_path in s.get("figures", {}).items():
            fig = exp_dir / rel_path
            md += [f"### {caption}", "", f"![{caption}]({(where / rel_path).as_posix()})", ""]
            data = base64.b64encode(fig.read_bytes()).decode()
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
