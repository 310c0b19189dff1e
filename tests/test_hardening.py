"""Hostile input, family by family (issue 8): each gets a clean one-line error, nothing is lost or wrong."""

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as ss
from click.testing import CliRunner

from conftest import make_idx_dataset, official_dir, write_idx
from sparsetopo.cli import app
from sparsetopo.errors import FileFormatError
from sparsetopo.fileio import atomic_write, clean_stale_temp_files
from sparsetopo.nnstd import load_matrix, pairwise_nnstd
from sparsetopo.topology import Topology, erdos_renyi, perturb

runner = CliRunner()
HERE = Path(__file__).resolve().parent


def one_line_error(res, *fragments):
    """A CLI failure: exit 2, one red 'Error:' line naming what it should, no traceback."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ------------------------------------------------------------ 1. untrusted files
def _save_raw(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _topology_arrays(t: Topology) -> dict:
    header = {"format": "sparsetopo.topology", "version": 1, "n_layers": len(t), "name": "x", "metadata": {}}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for k, m in enumerate(t.layers):
        arrays.update({f"l{k}_indptr": m.indptr.astype(np.int64), f"l{k}_indices": m.indices.astype(np.int64),
                       f"l{k}_shape": np.array(m.shape, dtype=np.int64)})
    return arrays


def _header(**fields):
    h = {"format": "sparsetopo.topology", "version": 1, "n_layers": 1, "name": "x", "metadata": {}}
    h.update(fields)
    return np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)


@pytest.mark.parametrize("mutate,message", [
    (lambda a: a.__setitem__("l0_indices", a["l0_indices"] + 1000), "column indices must be in [0, 12)"),
    (lambda a: a.__setitem__("l0_indices", -a["l0_indices"] - 1), "column indices must be in [0, 12)"),
    (lambda a: a.__setitem__("l0_indices", a["l0_indices"][::-1].copy()), "sorted and unique"),
    (lambda a: a.__setitem__("l0_indptr", a["l0_indptr"][::-1].copy()), "indptr must rise from 0"),
    (lambda a: a.__setitem__("l0_indptr", a["l0_indptr"][:-1].copy()), "indptr has 10 entries for 10 rows"),
    (lambda a: a.__setitem__("l0_shape", np.array([10**12, 12])), "shape must be two integers"),
    (lambda a: a.__setitem__("l0_indices", a["l0_indices"].astype(np.float32)), "must be a 1-D integer array"),
    (lambda a: a.__setitem__("header", np.frombuffer(b"[1, 2]", dtype=np.uint8)), "must be a JSON object, got list"),
    (lambda a: a.__setitem__("header", np.frombuffer(b"\xff\xfe", dtype=np.uint8)), "corrupt topology header"),
    (lambda a: a.__setitem__("header", _header(n_layers="3")), "n_layers must be an integer"),
    (lambda a: a.__setitem__("header", _header(name=["x"])), "name must be a string"),
    (lambda a: a.__setitem__("header", _header(metadata=[1])), "metadata must be a JSON object"),
    (lambda a: a.__setitem__("header", _header(version=99)), "unsupported format"),
    (lambda a: a.__setitem__("header", _header(n_layers=2)), "missing array 'l1_indptr'"),
    (lambda a: a.__setitem__("l0_shape", np.array([10, 12, 3])), "shape must be two integers"),
])
def test_topology_files_with_bad_content_are_named(tmp_path, mutate, message):
    arrays = _topology_arrays(erdos_renyi([12, 10], epsilon=2, seed=0, dense_output=False))
    mutate(arrays)
    path = _save_raw(tmp_path / "t.npz", **arrays)
    with pytest.raises(FileFormatError) as err:
        Topology.load(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    one_line_error(runner.invoke(app, ["distance", str(path), str(path)]), str(path), message)


def test_forged_array_header_never_allocates_what_it_declares(tmp_path):
    path = tmp_path / "big.npz"
    arrays = _topology_arrays(erdos_renyi([12, 10], epsilon=2, seed=0, dense_output=False))
    _save_raw(path, **arrays)
    # Rewrite one member's .npy header to declare a ~10^12-element array.
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    raw = members["l0_indices.npy"]
    members["l0_indices.npy"] = raw.replace(b"(%d,)" % len(arrays["l0_indices"]), b"(999999999999,)")
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(FileFormatError, match=r"declares shape \(999999999999,\).*truncated or corrupt"):
        Topology.load(path)


def test_text_pickle_and_foreign_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello, I am a text file\n")
    with pytest.raises(FileFormatError, match="notes.npz: a text file; a sparsetopo topology"):
        Topology.load(text)
    pickled = tmp_path / "obj.npz"
    with open(pickled, "wb") as f:
        np.savez(f, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileFormatError, match="holds Python objects"):
        Topology.load(pickled)
    with pytest.raises(FileFormatError, match="not an NNSTD matrix file"):
        load_matrix(str(_save_raw(tmp_path / "m.npz", a=np.ones(3))))


def test_official_layout_with_bad_indices(tmp_path):
    d = official_dir(tmp_path / "e", [np.ones((3, 4))])
    m = ss.load_npz(d / "weight_l0.npz").tocsr()
    np.savez(d / "weight_l0.npz", format=np.array(b"csr"), shape=np.array(m.shape), data=m.data,
             indices=m.indices + 50, indptr=m.indptr)
    with pytest.raises(FileFormatError, match=r"weight_l0.npz: matrix: column indices must be in \[0, 3\)"):
        Topology.from_official_npz(d)


FUZZ = r"""
import io, json, random, sys, zlib, gzip
import numpy as np, scipy.sparse as ss
sys.path.insert(0, sys.argv[1])
from conftest import official_dir, write_idx
from pathlib import Path
from sparsetopo.errors import SparsetopoError
from sparsetopo.topology import Topology, erdos_renyi
from sparsetopo.nnstd import load_matrix, save_matrix
from sparsetopo.data import read_idx
from sparsetopo.training import load_weights

tmp = Path(sys.argv[2])
rng = random.Random(0)
t = erdos_renyi([20, 16, 12, 4], epsilon=2, seed=0)
targets = {"topology": (t.save(tmp / "t.npz"), Topology.load)}
od = official_dir(tmp / "official", t.to_dense())
targets["official"] = (od / "weight_l1.npz", lambda p: Topology.from_official_npz(p.parent))
save_matrix(np.random.default_rng(0).random((3, 3, 2)) * 0.5, ["a", "b", "c"], npz=str(tmp / "m.npz"))
targets["matrix"] = (tmp / "m.npz", lambda p: load_matrix(str(p)))
targets["idx"] = (write_idx(tmp / "lab-idx1-ubyte", np.arange(300) % 10), read_idx)
outcomes = {}
for name, (path, load) in targets.items():
    good = path.read_bytes()
    for trial in range(120):
        raw = bytearray(good)
        if trial % 4 == 3:
            raw = raw[: rng.randrange(len(raw))]  # truncation
        else:
            for _ in range(rng.choice((1, 1, 3))):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
        try:
            load(path)
            outcomes[(name, "loaded")] = outcomes.get((name, "loaded"), 0) + 1
        except (SparsetopoError, FileNotFoundError) as exc:
            assert str(path) in str(exc) or str(path.parent) in str(exc), (name, exc)
            outcomes[(name, "clean error")] = outcomes.get((name, "clean error"), 0) + 1
    path.write_bytes(good)
print(json.dumps({f"{a}: {b}": n for (a, b), n in sorted(outcomes.items())}))
"""


def test_fuzzed_files_give_clean_errors_never_a_crash(tmp_path):
    """Flip bytes of and truncate saved topologies, official-layout files, matrices and IDX files: every
    load either succeeds or raises our error naming the file; no traceback, no interpreter crash."""
    res = subprocess.run([sys.executable, "-c", FUZZ, str(HERE), str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])  # a segfault or abort is a negative code
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert sum(counts.values()) == 4 * 120
    assert all(counts.get(f"{n}: clean error", 0) > 0 for n in ("topology", "official", "matrix", "idx"))


# ----------------------------------------------------------------- 2. writes
def test_matrix_out_writes_exactly_the_path_given(tmp_path):
    a = erdos_renyi([20, 10, 3], epsilon=2, seed=0)
    paths = [a.save(tmp_path / "a.npz"), perturb(a, 0.3, seed=1).save(tmp_path / "b.npz")]
    out = tmp_path / "NAME"
    out.write_text("precious")
    res = runner.invoke(app, ["matrix", *map(str, paths), "--out", str(out), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    d, names = load_matrix(str(out))  # the data is in NAME itself, not in a hidden temp file
    assert d.shape == (2, 2, 2) and names == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NAME", "a.npz", "b.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"x")
        plain = tmp_path / "plain"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_temp_files_of_killed_writers_are_cleaned(tmp_path):
    target = tmp_path / "checkpoint.pt"
    # A temp file left by a process that no longer exists (PID 999999999 cannot be live), and one of a live one.
    import socket

    host = socket.gethostname().replace(".", "_")
    dead = tmp_path / f".checkpoint.pt.{host}.999999999-abcd.tmp"
    live = tmp_path / f".checkpoint.pt.{host}.{os.getppid()}-abcd.tmp"
    dead.write_bytes(b"x" * 1000)
    live.write_bytes(b"x")
    with atomic_write(target) as f:
        f.write(b"new")
    assert not dead.exists() and live.exists() and target.read_bytes() == b"new"
    assert clean_stale_temp_files(target) == []


def test_a_failed_write_leaves_nothing_and_a_full_disk_is_named(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []

    class _Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda p: _Full())
    with pytest.raises(OSError) as err:  # e.g. torch's "unexpected pos" when the disk fills
        with atomic_write(target) as f:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert err.value.errno == 28 and err.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- 3. OS errors
def test_os_errors_are_one_line_naming_the_path(tmp_path, tiny_data):
    a = erdos_renyi([20, 10, 3], epsilon=2, seed=0).save(tmp_path / "a.npz")
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--out", str(afile), "-q"])
    assert res.exit_code == 2 and "Traceback" not in res.output  # click's usage error names the option
    assert f"Invalid value for '--out': Directory '{afile}' is a file" in res.output
    from sparsetopo.training import TrainConfig, train

    with pytest.raises(NotADirectoryError, match="not a directory"):  # the API says the same
        train(TrainConfig(data_dir=str(tiny_data), hidden=[8], epochs=1), afile, progress=False)
    one_line_error(runner.invoke(app, ["matrix", str(a), str(a), "--out", str(tmp_path), "-q"]),
                   str(tmp_path), "is a directory")
    one_line_error(runner.invoke(app, ["matrix", str(a), str(a), "--out", str(afile / "x.npz"), "-q"]),
                   str(afile))


def test_unreachable_cluster_is_one_line(tmp_path, monkeypatch):
    import sparsetopo.parallel as par

    monkeypatch.setattr(par, "CONNECT_TIMEOUT_S", 2)
    t = erdos_renyi([20, 10, 3], epsilon=2, seed=0)
    paths = [t.save(tmp_path / "a.npz"), perturb(t, 0.3, seed=1).save(tmp_path / "b.npz")]
    from sparsetopo.errors import SparsetopoError

    with pytest.raises(SparsetopoError, match=r"--cluster tcp://127.0.0.1:9: cannot reach the Dask scheduler"):
        pairwise_nnstd([Topology.load(p) for p in paths], cluster="tcp://127.0.0.1:9")


# --------------------------------------------------------- 4. run directories
def _train(out, tiny_data, *extra):
    return runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--hidden", "16", "16", "--epsilon", "2",
                               "--epochs", "2", "--batch-size", "100", "--out", str(out), "-q", *extra])


def _train_with_config(out, tiny_data, cfg):
    return runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--config", str(cfg), "--out", str(out), "-q"])


def test_a_run_directory_in_use_is_refused_naming_the_holder(tmp_path, tiny_data):
    from sparsetopo.training import run_lock

    out = tmp_path / "run"
    with run_lock(out, "sparsetopo train --the-first-one"):
        line = one_line_error(_train(out, tiny_data), str(out), "in use by another training run",
                              "sparsetopo train --the-first-one")
        assert f"PID {os.getpid()}" in line
    assert _train(out, tiny_data).exit_code == 0  # the lock is released with its holder


def test_damaged_checkpoint_is_named_with_the_way_out(tmp_path, tiny_data):
    out = tmp_path / "run"
    assert _train(out, tiny_data).exit_code == 0
    (out / "result.json").unlink()  # as if killed before finishing
    for damage in (b"", b"PK\x03\x04 truncated"):
        (out / "checkpoint.pt").write_bytes(damage)
        one_line_error(_train(out, tiny_data), str(out / "checkpoint.pt"), "unreadable checkpoint",
                       "delete it to restart this run from epoch 0")
    (out / "checkpoint.pt").unlink()
    res = _train(out, tiny_data)
    assert res.exit_code == 0 and (out / "result.json").exists()


def test_bad_start_writes_nothing_so_the_corrected_command_runs(tmp_path, tiny_data):
    out = tmp_path / "run"
    one_line_error(_train(out, tiny_data, "--momentum", "-1"), "--momentum must be a number in [0, 1); got -1.0")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1.7\n")
    one_line_error(_train_with_config(out, tiny_data, bad), "bad.yaml: --epochs must be an integer >= 1; got 1.7")
    assert not out.exists()
    assert _train(out, tiny_data).exit_code == 0


# ----------------------------------------------------------------- 5. caches
def test_nnstd_cache_entries_heal(tmp_path):
    base = erdos_renyi([30, 20, 20, 4], epsilon=2, seed=0)
    tops = [base, perturb(base, 0.3, seed=1), perturb(base, 0.6, seed=2)]
    cache = tmp_path / "cache"
    expected = pairwise_nnstd(tops, cache_dir=cache)
    entries = sorted(cache.iterdir())
    assert len(entries) == 3
    entries[0].write_bytes(b"garbage")                       # unreadable
    z = dict(np.load(entries[1]))
    z["per_layer"] = z["per_layer"] * 0.5                     # readable but wrong: fails its checksum
    with open(entries[1], "wb") as f:
        np.savez(f, **z)
    z = dict(np.load(entries[2]))
    z["per_layer"] = z["per_layer"][:1]                      # wrong shape
    with open(entries[2], "wb") as f:
        np.savez(f, **z)
    again = pairwise_nnstd(tops, cache_dir=cache)
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(pairwise_nnstd(tops, cache_dir=cache), expected)  # rewritten, valid again
    assert sorted(cache.iterdir()) == entries


# ------------------------------------------------------- 6. silent acceptance
def test_diverging_run_stops_with_advice_and_is_not_complete(tmp_path, tiny_data):
    out = tmp_path / "run"
    line = one_line_error(_train(out, tiny_data, "--lr", "1e6", "--method", "dense"), "training diverged at epoch",
                          "Lower --lr (now 1e+06)")
    assert "loss " in line
    assert not (out / "result.json").exists()


def test_labels_out_of_range_and_mismatched_images_are_named(tmp_path):
    from sparsetopo.data import load_dataset

    d = make_idx_dataset(tmp_path / "d", gz=False)
    write_idx(d / "t10k-labels-idx1-ubyte", np.full(200, 12), gz=False)
    with pytest.raises(FileFormatError, match=r"t10k-labels-idx1-ubyte: labels must be in 0..9, found 12..12"):
        load_dataset("fashion-mnist", d)
    d = make_idx_dataset(tmp_path / "e", gz=False)
    write_idx(d / "t10k-images-idx3-ubyte", np.zeros((200, 9, 9)), gz=False)
    with pytest.raises(FileFormatError, match=r"t10k-images-idx3-ubyte: test images are 9x9 but the training "
                                              r"images in train-images-idx3-ubyte are 8x8"):
        load_dataset("fashion-mnist", d)


def test_byte_flipped_gzip_data_is_a_named_error(tmp_path):
    from sparsetopo.data import read_idx

    p = write_idx(tmp_path / "x-idx1-ubyte", np.arange(5000) % 10)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="x-idx1-ubyte.gz: cannot read IDX file"):
        read_idx(p)


@pytest.mark.parametrize("yaml_text,message", [
    ("epochs: 1.7\n", "--epochs must be an integer >= 1; got 1.7"),
    ('dense_output: "no"\n', "--dense-output must be true or false; got 'no'"),
    ("hidden: 100\n", "--hidden must be a list of integers"),
    ("epochs: 2\nlr: 0.1\nepochs: 3\n", "duplicate key 'epochs' (lines 1 and 3)"),
    ("- a\n- b\n", "a config file must be a mapping of keys to values, got a list"),
    ("lr: [unclosed\n", "invalid YAML"),
])
def test_yaml_types_are_checked_not_coerced(tmp_path, tiny_data, yaml_text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    one_line_error(_train_with_config(tmp_path / "run", tiny_data, cfg), "c.yaml", message)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------ 7. small things at once
def test_list_flags_stop_at_the_next_option_and_help_reads_well(tmp_path, tiny_data):
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--hidden", "16", "16", "-q", "--epsilon",
                              "2", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "[16, 16]" not in res.output and json.dumps(16)  # ran with hidden [16, 16]
    import yaml

    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["hidden"] == [16, 16]
    helptext = runner.invoke(app, ["train", "--help"]).output
    assert "[default: None]" not in helptext and "[1000, 1000, 1000]" not in helptext
    assert "[default: 1000 1000 1000]" in " ".join(helptext.split())


def test_train_prints_a_line_per_epoch_with_progress_bars(tmp_path, tiny_data):
    res = runner.invoke(app, ["train", "--data-dir", str(tiny_data), "--hidden", "16", "--epsilon", "2",
                              "--epochs", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "epoch 1/2" in res.output and "epoch 2/2" in res.output and "test_acc" in res.output


# ----------------------------------------------------------------- 8. NNSTD
def test_distance_does_not_depend_on_the_order_of_its_arguments(tmp_path):
    a = erdos_renyi([60, 60, 60, 60, 5], density=0.03, seed=3).save(tmp_path / "a.npz")
    b = erdos_renyi([60, 60, 60, 60, 5], density=0.03, seed=4).save(tmp_path / "b.npz")
    ab = json.loads(runner.invoke(app, ["distance", str(a), str(b), "--json"]).output)
    ba = json.loads(runner.invoke(app, ["distance", str(b), str(a), "--json"]).output)
    assert ab["per_layer"] == ba["per_layer"]


def test_permission_and_other_os_errors_read_as_path_and_reason():
    import errno

    from sparsetopo.cli import os_error_message

    assert os_error_message(PermissionError(errno.EACCES, "Permission denied", "/ro/run")) == \
        "/ro/run: permission denied"
    assert os_error_message(OSError(errno.ENOSPC, "no space left on device", "/full/ckpt.pt")) == \
        "/full/ckpt.pt: no space left on device"
    assert os_error_message(OSError(errno.EROFS, "Read-only file system", "/mnt/x", None)) == \
        "/mnt/x: read-only file system"
