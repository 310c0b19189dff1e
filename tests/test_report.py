"""The report's tables, notes and settings, on hand-made experiment directories."""

import csv
import json
import re

import pytest

from sparsetopo.errors import FileFormatError
from sparsetopo.report import MAX_COLUMNS, _cell, _html_table, write_report


def _experiment(root, *, tables, config=None, notes=None, name="evolution"):
    """An experiment directory with CSV ``tables`` ({caption: rows}) and its summary.json."""
    d = root / name
    (d / "tables").mkdir(parents=True)
    paths = {}
    for i, (caption, rows) in enumerate(tables.items()):
        path = d / "tables" / f"t{i}.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        paths[caption] = f"tables/t{i}.csv"
    summary = {"experiment": name, "preset": "smoke", "title": "A study", "findings": ["one"], "tables": paths,
               "figures": {}, "config": config or {}, **({"notes": notes} if notes is not None else {})}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.mark.parametrize("text, column, shown", [
    ("0.006136765930862141", "density", "0.61 %"),
    ("1", "density", "100 %"),
    ("0.3", "final_density", "30 %"),
    ("0.00001234", "density", "0.0012 %"),
    ("0.318893", "ours", "0.3189"),
    ("3772", "connections", "3772"),
    ("set", "density", "set"),
])
def test_cells_are_rounded_for_reading(text, column, shown):
    assert _cell(text, column) == shown


def _wide_rows(n_rows=23, n_values=10):
    return [{"epoch": str(e), "layer": str(k), **{f"value_{j}": f"{0.1 * j + e / 7:.6f}" for j in range(n_values)}}
            for e in range(n_rows // 3 + 1) for k in range(3)][:n_rows]


def test_wide_tables_split_repeating_their_key_columns_and_keep_every_row():
    rows = _wide_rows()
    page = _html_table(rows)
    tables = re.findall(r"<table>.*?</table>", page)
    assert len(tables) == 2
    heads = [re.findall(r"<th(?: [^>]*)?>(.*?)</th>", t) for t in tables]
    heads = [[h.replace("<wbr>", "") for h in hs] for hs in heads]
    assert all(h[:2] == ["epoch", "layer"] and len(h) <= MAX_COLUMNS for h in heads)
    assert sorted(c for h in heads for c in h[2:]) == sorted(c for c in rows[0] if c.startswith("value"))
    assert all(t.count("<tr>") == len(rows) + 1 for t in tables)  # complete: every row in every part


def test_narrow_tables_stay_whole_and_text_is_left_aligned():
    page = _html_table([{"statistic": "mean NNSTD", "layer": "0", "ours": "0.35"}])
    assert page.count("<table>") == 1
    assert '<td class="text">mean NNSTD</td>' in page and "<td>0.35</td>" in page


def test_page_has_no_inner_scrollbars_and_notes_sit_under_their_caption(tmp_path):
    _experiment(tmp_path, tables={"Evolution": _wide_rows()}, notes={"Evolution": "Epoch 1 equals epoch 0."})
    md, page = write_report(tmp_path)
    text = page.read_text()
    assert "max-height" not in text and "overflow-y" not in text and "overflow-x: auto" not in text
    assert re.search(r"<h3>Evolution</h3>\s*<p class=\"note\">Epoch 1 equals epoch 0.</p>\s*<table>", text)
    assert "### Evolution\n\nEpoch 1 equals epoch 0.\n" in md.read_text()


@pytest.mark.parametrize("model, shown", [("mlp", False), ("cnn", True)])
def test_settings_show_only_what_applies_to_the_model(tmp_path, model, shown):
    config = {"model": model, "channels": [16, 16, 32, 32], "hidden": [64], "init": "he", "init_std": 0.1,
              "density": 0.006136765930862141}
    settings = [{"setting": "channels", "this run": "[16, 16, 32, 32]", "paper preset: source": "guess"},
                {"setting": "density", "this run": "0.006136765930862141", "paper preset: source": "published"}]
    _experiment(tmp_path, tables={"Settings": settings}, config=config)
    md, page = write_report(tmp_path)
    text, html = md.read_text(), page.read_text()
    assert ("channels" in text) is shown and ("channels" in html) is shown
    assert "init_std" not in text  # init he: no normal weights for init_std to apply to
    assert "hidden: [64]" in text
    assert re.search(r"<td[^>]*>0.61 %</td>", html) and "| 0.61 % |" in text
    assert "density: 0.61 %" in text  # the configuration too


def test_init_std_shows_with_normal_weights(tmp_path):
    _experiment(tmp_path, tables={"T": [{"a": "1"}]}, config={"init": "he", "regrow_init": "normal",
                                                             "init_std": 0.1})
    md, _ = write_report(tmp_path)
    assert "init_std: 0.1" in md.read_text()


def test_notes_must_be_text(tmp_path):
    d = _experiment(tmp_path, tables={"T": [{"a": "1"}]}, notes={"T": 3})
    with pytest.raises(FileFormatError, match="'notes' must map captions to strings") as exc:
        write_report(tmp_path)
    assert str(d / "summary.json") in str(exc.value)
