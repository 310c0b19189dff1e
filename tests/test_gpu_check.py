"""``make gpu-check`` (benchmarks/gpu_check.py): its skip without CUDA, and its checks as a CPU dry run."""

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_it_skipped_and_succeeds(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _script().main([]) == 0
    assert capsys.readouterr().out == "gpu-check: skipped (no CUDA device: torch.cuda.is_available() is False)\n"


def test_a_cpu_dry_run_passes_every_check_and_prints_the_table(capsys):
    assert _script().main(["--device", "cpu", "--width", "16", "--epochs", "2", "--samples", "300"]) == 0
    out = capsys.readouterr().out
    for method in ("dense", "set", "rigl"):
        line = next(ln for ln in out.splitlines() if ln.startswith(method + " "))
        assert line.endswith("ok") and "0.00e+00" in line  # the same device twice: identical losses
    assert out.rstrip().endswith("gpu-check: passed")


def test_mask_problems_are_found(tmp_path):
    state = {"layers.0.weight": torch.tensor([[1.0, 2.0]]), "layers.0.weight_mask": torch.tensor([[1.0, 0.0]])}
    torch.save(state, tmp_path / "model_final.pt")
    problems = _script()._mask_problems(tmp_path, {"connections_l0": 2})
    assert problems == ["layers.0.weight_mask: nonzero weights outside the mask",
                        "layers.0.weight_mask: 1 connections, metrics.csv 2"]
