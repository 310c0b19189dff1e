"""The command line's edges (issue 16): one error boundary, outputs that never clobber inputs, checked numbers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sparsetopo.cli import app
from sparsetopo.topology import erdos_renyi, perturb
from test_hardening import one_line_error

runner = CliRunner()


@pytest.fixture
def nets(tmp_path):
    base = erdos_renyi([30, 20, 4], epsilon=2, seed=0)
    return [base.save(tmp_path / "a.npz"), perturb(base, 0.3, seed=1).save(tmp_path / "b.npz")]


def unexpected_line(res, *fragments):
    """An unexpected error: exit 1, one red line naming the command, the exception and the input."""
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: sparsetopo "), res.output
    assert "Traceback" not in res.output and lines[0].endswith("run again with --debug to see the traceback")
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def patch(monkeypatch, target, value):
    """monkeypatch.setattr by dotted name, through the module (sparsetopo.nnstd is also a function's name)."""
    import importlib

    module, attr = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), attr, value)


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


# ------------------------------------------------------------ 3. one error boundary
def test_unexpected_error_while_reading_names_the_file(nets, tmp_path, monkeypatch):
    from sparsetopo.topology import Topology

    real = Topology.read.__func__

    def read(cls, path):
        if str(path).endswith("b.npz"):
            return [][0]  # a bug: IndexError
        return real(cls, path)

    monkeypatch.setattr(Topology, "read", classmethod(read))
    res = runner.invoke(app, ["matrix", *map(str, nets), "--out", str(tmp_path / "D.npz"), "-q"])
    line = unexpected_line(res, "sparsetopo matrix: unexpected IndexError: list index out of range",
                           f"(while processing {nets[1]})")
    assert str(nets[0]) not in line
    assert not (tmp_path / "D.npz").exists()


@pytest.mark.parametrize("command,target,make_args,where", [
    ("distance", "sparsetopo.nnstd.nnstd", lambda n, t: [str(n[0]), str(n[1])], lambda n, t: f"{n[0]}, {n[1]}"),
    ("matrix", "sparsetopo.nnstd.pairwise_nnstd", lambda n, t: [*map(str, n), "--csv", str(t / "D.csv")],
     lambda n, t: f"{n[0]}, {n[1]}"),
    ("chain", "sparsetopo.topology.erdos_renyi", lambda n, t: ["--out", str(t / "demo"), "-q"],
     lambda n, t: str(t / "demo")),
    ("experiment", "sparsetopo.experiments.run_experiment",
     lambda n, t: ["evolution", "--preset", "smoke", "--out", str(t / "exp"), "-q"], lambda n, t: str(t / "exp")),
    ("report", "sparsetopo.report.write_report", lambda n, t: [str(t)], lambda n, t: str(t)),
    ("train", "sparsetopo.training.load_config_file",
     lambda n, t: ["--config", str(t / "run.yaml"), "--out", str(t / "run")], lambda n, t: str(t / "run.yaml")),
])
@pytest.mark.parametrize("exc", [KeyError("layer"), TypeError("unsupported operand"),
                                 RuntimeError("line one\nline two"), AttributeError("no attribute 'x'"),
                                 RecursionError("maximum recursion depth exceeded")])
def test_every_command_ends_an_unexpected_error_in_one_line(nets, tmp_path, monkeypatch, command, target,
                                                            make_args, where, exc):
    (tmp_path / "run.yaml").write_text("epochs: 1\n")
    patch(monkeypatch, target, _raise(exc))
    res = runner.invoke(app, [command, *make_args(nets, tmp_path)])
    text = " ".join(str(exc).split())
    unexpected_line(res, f"sparsetopo {command}: unexpected {type(exc).__name__}: {text}",
                    f"(while processing {where(nets, tmp_path)})")


def test_debug_flag_and_env_var_let_the_exception_through(nets, tmp_path, monkeypatch):
    patch(monkeypatch, "sparsetopo.nnstd.nnstd", _raise(IndexError("boom")))
    args = ["distance", str(nets[0]), str(nets[1])]
    for res in (runner.invoke(app, ["--debug", *args]), runner.invoke(app, args, env={"SPARSETOPO_DEBUG": "1"})):
        assert isinstance(res.exception, IndexError) and str(res.exception) == "boom"
        assert "Error:" not in res.output
    with pytest.raises(IndexError, match="boom"):
        runner.invoke(app, ["--debug", *args], catch_exceptions=False)
    # SPARSETOPO_DEBUG=0 is off
    unexpected_line(runner.invoke(app, args, env={"SPARSETOPO_DEBUG": "0"}), "unexpected IndexError: boom")
    assert "--debug" in runner.invoke(app, ["--help"]).output


def test_debug_shows_a_traceback_in_a_real_process(tmp_path):
    # a missing file: normally one friendly line (status 2); with --debug the exception's traceback (status 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    missing = str(tmp_path / "nope.npz")
    plain = subprocess.run([sys.executable, "-m", "sparsetopo.cli", "distance", missing, missing],
                           capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "nope.npz" in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "sparsetopo.cli", "--debug", "distance", missing, missing],
                           capture_output=True, text=True, env=env)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_keyboard_interrupt_is_one_line(nets, tmp_path, monkeypatch):
    patch(monkeypatch, "sparsetopo.nnstd.pairwise_nnstd", _raise(KeyboardInterrupt()))
    res = runner.invoke(app, ["matrix", *map(str, nets), "--out", str(tmp_path / "D.npz")])
    assert res.exit_code == 130
    assert [ln for ln in res.output.splitlines() if ln.strip()] == ["interrupted"]


def test_specific_errors_keep_their_message_and_status(nets, tmp_path):
    one_line_error(runner.invoke(app, ["distance", str(nets[0]), str(tmp_path / "x.npz")]), "x.npz")


# ------------------------------------------------------------ 2. outputs never clobber inputs
def test_matrix_out_naming_an_input_is_refused_and_the_input_kept(nets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = nets[0].read_bytes()
    for out in (str(nets[0]), "a.npz", "./a.npz", "../" + tmp_path.name + "/a.npz"):
        res = runner.invoke(app, ["matrix", "a.npz", str(nets[1]), "--out", out, "-q"])
        one_line_error(res, f"--out {Path(out)} would overwrite the input PATHS")  # click drops a leading ./
        assert nets[0].read_bytes() == before
    for opt in ("--csv", "--plot"):
        one_line_error(runner.invoke(app, ["matrix", *map(str, nets), opt, "b.npz"]), opt, "input PATHS")
        assert nets[1].exists()
    os.link(nets[0], tmp_path / "hard.npz")  # another name for the same file
    one_line_error(runner.invoke(app, ["matrix", *map(str, nets), "--out", "hard.npz"]), "--out hard.npz")
    assert nets[0].read_bytes() == before


def test_matrix_outputs_naming_each_other_are_refused_before_writing(nets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for a, b, pa, pb in [("--out", "--csv", "D.npz", "./D.npz"), ("--csv", "--plot", "x.csv", "x.csv"),
                         ("--out", "--plot", "y", str(tmp_path / "y"))]:
        res = runner.invoke(app, ["matrix", *map(str, nets), a, pa, b, pb, "-q"])
        one_line_error(res, f"{a} and {b} name the same file")
        assert not (tmp_path / pa).exists()


def test_matrix_out_inside_an_official_directory_is_refused(tmp_path):
    from conftest import official_dir

    t = erdos_renyi([30, 20, 4], epsilon=2, seed=0)
    d0 = official_dir(tmp_path / "r0", t.to_dense())
    d1 = official_dir(tmp_path / "r1", perturb(t, 0.3, seed=1).to_dense())
    before = (d1 / "weight_l1.npz").read_bytes()
    res = runner.invoke(app, ["matrix", str(d0), str(d1), "--out", str(d1 / "weight_l1.npz")])
    one_line_error(res, "--out", "would overwrite the input PATHS", "weight_l1.npz")
    assert (d1 / "weight_l1.npz").read_bytes() == before


def test_experiment_and_train_out_equal_to_config_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\n")
    res = runner.invoke(app, ["experiment", "evolution", "--config", "c.yaml", "--out", "./c.yaml", "-q"])
    one_line_error(res, "--out c.yaml would overwrite the input --config c.yaml")
    res = runner.invoke(app, ["train", "--config", "c.yaml", "--out", "c.yaml"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert cfg.read_text() == "epochs: 1\n"


# ------------------------------------------------------------ 4. numbers and empty paths
@pytest.fixture
def no_work(monkeypatch):
    """Refused options must stop a command before its work starts: the work fails loudly (and fast) if reached."""
    for target in ("sparsetopo.training.train", "sparsetopo.experiments.run_experiment",
                   "sparsetopo.topology.erdos_renyi", "sparsetopo.nnstd.pairwise_nnstd"):
        patch(monkeypatch, target, _raise(AssertionError(f"{target} was reached")))


@pytest.mark.parametrize("threads", ["-1", "0"])
def test_train_threads_must_be_positive(tmp_path, threads, no_work):
    res = runner.invoke(app, ["train", "--threads", threads, "--out", str(tmp_path / "run")])
    one_line_error(res, f"--threads must be a positive integer; got {threads}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_must_be_minus_one_or_positive(nets, tmp_path, jobs, no_work):
    msg = f"--jobs must be -1 (all cores) or a positive integer; got {jobs}"
    for args in (["matrix", *map(str, nets), "--out", str(tmp_path / "D.npz")],
                 ["chain", "--out", str(tmp_path / "demo")],
                 ["experiment", "evolution", "--preset", "smoke", "--out", str(tmp_path / "exp")]):
        one_line_error(runner.invoke(app, [*args, "-j", jobs, "-q"]), msg)
    assert not {"D.npz", "demo", "exp"} & set(os.listdir(tmp_path))


def test_empty_output_paths_are_refused(nets, tmp_path, monkeypatch, no_work):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for args, opt in [(["train", "--epochs", "1"], "--out"),
                      (["experiment", "evolution", "--preset", "smoke", "-q"], "--out"),
                      (["chain", "-q", "--networks", "2"], "--out"),
                      (["matrix", *map(str, nets)], "--out"),
                      (["matrix", *map(str, nets), "--out", "D.npz"], "--csv"),
                      (["matrix", *map(str, nets), "--out", "D.npz"], "--plot")]:
        res = runner.invoke(app, [*args, opt, ""])
        one_line_error(res, f"{opt} must not be empty")
        assert sorted(os.listdir(tmp_path)) == before
