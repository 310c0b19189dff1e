"""Issue 18, item 6: the width study (sparse networks far wider than dense ones can be)."""

import csv
import json

import pytest

from conftest import make_idx_dataset
from sparsetopo.errors import SparsetopoError
from sparsetopo.experiments import Context, make_config, run_experiment
from sparsetopo.experiments import width as W
from sparsetopo.report import write_report


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    pytest.importorskip("torch")
    d = make_idx_dataset(tmp_path_factory.mktemp("data") / "fm", n_train=1000, n_test=300, side=28, n_classes=10)
    cfg = tmp_path_factory.mktemp("cfg") / "width.yaml"
    cfg.write_text(f"data_dir: {d}\nsparse_engine: masked\n")
    out = tmp_path_factory.mktemp("exp") / "width"
    summary = run_experiment("width", "smoke", out, config_file=str(cfg),
                             ctx=Context(n_jobs=2, progress=False, log=lambda m: None))
    return out, summary, cfg


def _rows(out):
    return list(csv.DictReader(open(out / "tables" / "accuracy.csv")))


def test_table_has_every_network_and_its_costs(study):
    out, summary, _ = study
    cfg = summary["config"]
    rows = _rows(out)
    wide = json.loads((out / "dense_width.json").read_text())
    assert wide["width"] == cfg["dense_max_width"] == 256  # a 256-wide MLP fits anywhere: the cap
    expected = {("dense", cfg["dense_width"]), ("dense", 256)} | {(m, w) for m in cfg["methods"] for w in cfg["widths"]}
    assert {(r["method"], int(r["width"])) for r in rows} == expected and len(rows) == len(expected)
    for r in rows:
        assert 0 <= float(r["test_acc_mean"]) <= 1 and float(r["train_flops"]) > 0 and float(r["seconds"]) > 0
        assert (float(r["density"]) == 1.0) == (r["method"] == "dense")
    for method in cfg["methods"]:  # wider sparse networks have more parameters and cost more FLOPs
        sel = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["width"]))
        assert [int(r["parameters"]) for r in sel] == sorted(int(r["parameters"]) for r in sel)
        assert float(sel[0]["train_flops"]) < float(sel[-1]["train_flops"])
    dense64 = next(r for r in rows if r["method"] == "dense" and r["width"] == "64")
    assert int(dense64["parameters"]) == 784 * 64 + 64 * 64 * 2 + 64 * 10 + 64 * 3 + 10


def test_findings_figures_and_report(study):
    out, summary, _ = study
    text = " ".join(summary["findings"])
    for method in summary["config"]["methods"]:
        assert f"Best {method} network: width" in text
        for what in ("parameters", "training FLOPs"):
            assert any(f.startswith(f"At equal {what}: ") and f" {method} " in f for f in summary["findings"])
    assert "Widest dense network: width 256" in text
    assert "trained in the masked engine" in text
    assert set(summary["figures"]) == {"Accuracy vs width", "Accuracy vs parameters, training FLOPs and time"}
    for rel_path in summary["figures"].values():
        assert (out / rel_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "sha256" in summary["files"][rel_path]
    md, _ = write_report(out)
    report = md.read_text()
    assert "## Width: sparse networks where dense ones cannot follow" in report
    assert "accuracy_vs_cost.png" in report and "The widest dense network" in report


def test_rerun_keeps_the_recorded_dense_width(study, monkeypatch):
    out, summary, cfg = study
    monkeypatch.setattr(W, "available_memory", lambda: 1)  # nothing fits now: the recorded choice stands
    again = run_experiment("width", "smoke", out, config_file=str(cfg),
                           ctx=Context(n_jobs=1, progress=False, log=lambda m: None))
    assert again["findings"] == summary["findings"]
    (out / "dense_width.json").write_text("[]")
    with pytest.raises(SparsetopoError, match="dense_width.json: not a width-study record"):
        run_experiment("width", "smoke", out, config_file=str(cfg), ctx=Context(n_jobs=1, progress=False))


def test_widest_dense_is_the_widest_that_fits():
    cfg = make_config("width", "paper")
    gib = 2**30
    w = W.widest_dense(cfg, 784, 10, 2 * gib)
    assert w is not None and w < cfg.dense_max_width
    assert W.dense_memory(cfg, w, 784, 10) <= 0.5 * 2 * gib
    assert W.dense_memory(cfg, int(w * 1.02) + 100, 784, 10) > 0.5 * 2 * gib  # rounded down by at most 2 digits
    assert W.widest_dense(cfg, 784, 10, 10**15) == cfg.dense_max_width  # the cap
    assert W.widest_dense(cfg, 784, 10, None) == cfg.dense_max_width
    assert W.widest_dense(cfg, 784, 10, 1000) is None


def _r(method, width, params, flops, acc):
    return {"method": method, "width": width, "parameters": params, "train_flops": flops, "test_acc_mean": acc}


def test_overtaking_is_computed_from_the_results():
    dense = [_r("dense", 1000, 3e6, 1e12, 0.88), _r("dense", 5000, 5e7, 2e13, 0.89)]
    table = dense + [_r("set", 1000, 1e5, 5e10, 0.85), _r("set", 10000, 6e5, 3e11, 0.895),
                     _r("set", 100000, 9e7, 4e13, 0.90)]
    text = W.overtakes("set", table, "parameters", "parameters")
    assert text.startswith("At equal parameters: set overtakes dense from width 10000 (6e+05 parameters, 0.8950)")
    assert "best of them: width 5000" in text and "1 of 3 set widths do" in text
    assert "(1 of the set networks have more parameters than every dense network" in text
    worse = dense + [_r("set", 1000, 1e5, 5e10, 0.80)]
    assert W.overtakes("set", worse, "train_flops", "training FLOPs") == (
        "At equal training FLOPs: no set network beats a dense network with as many or more training FLOPs.")


def test_config_is_checked():
    with pytest.raises(ValueError, match="sparse_engine must be one of masked, truly-sparse; got 'fast'"):
        make_config("width", "smoke", {"sparse_engine": "fast"})
    with pytest.raises(ValueError, match=r"widths must be a list of integers in \[1, 1000000\]; got \[0\]"):
        make_config("width", "smoke", {"widths": [0]})
    runs, groups = W._plan(make_config("width", "smoke"), W.Path("/x"), {"width": 256})
    assert len(runs) == 2 + 2 * 3 and set(groups) >= {("dense", 64), ("dense", 256), ("set", 128)}
    sparse = [c for c, d in runs if c.method != "dense"]
    assert all(c.hidden == [c.hidden[0]] * 3 and c.epsilon == 20.0 for c in sparse)
