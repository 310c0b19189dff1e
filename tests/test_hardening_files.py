"""Crafted and damaged topology files (issue 16): every file is validated, and bounded, before it is used."""

import io
import json
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as ss
from click.testing import CliRunner

from conftest import official_dir
from sparsetopo._npz import UNBACKED_INPUTS, NpzArchive, read_npz
from sparsetopo.cli import app
from sparsetopo.errors import FileFormatError, SparsetopoError
from sparsetopo.topology import Topology, erdos_renyi
from test_hardening import one_line_error

runner = CliRunner()
HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ helpers
def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _write_zip(path, members: dict[str, bytes]):
    """An archive of raw members (``name.npy`` -> bytes), deflated as ``np.savez_compressed`` does."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _header(**fields) -> np.ndarray:
    h = {"format": "sparsetopo.topology", "version": 1, "n_layers": 1, "name": "x", "metadata": {}}
    h.update(fields)
    return np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)


def _arrays(t: Topology) -> dict[str, np.ndarray]:
    arrays = {"header": _header(n_layers=len(t))}
    for k, m in enumerate(t.layers):
        arrays.update({f"l{k}_indptr": m.indptr.astype(np.int64), f"l{k}_indices": m.indices.astype(np.int64),
                       f"l{k}_shape": np.array(m.shape, dtype=np.int64)})
    return arrays


def _save(path, arrays: dict[str, np.ndarray]):
    return _write_zip(path, {f"{k}.npy": _npy(v) for k, v in arrays.items()})


def _load_error(path) -> str:
    with pytest.raises(FileFormatError) as err:
        Topology.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    return msg


def _peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SMALL = erdos_renyi([12, 10], epsilon=2, seed=0, dense_output=False)


# --------------------------------------------------------- zero-neuron layers
@pytest.mark.parametrize("shape", [(0, 12), (10, 0)])
def test_zero_neuron_layers_are_refused_at_construction(shape):
    with pytest.raises(SparsetopoError) as err:
        Topology([np.zeros(shape)])
    assert str(err.value) == (f"layer 0 has shape {shape} (n_out, n_in): a layer needs at least one output and "
                              "one input neuron")
    with pytest.raises(SparsetopoError, match=r"layer 1 has shape \(0, 3\)"):
        Topology.from_masks([np.ones((3, 4)), ss.csr_matrix((0, 3), dtype=bool)])


@pytest.mark.parametrize("shape", [(0, 12), (10, 0)])
def test_zero_neuron_layer_in_a_file_names_file_and_layer(tmp_path, shape):
    arrays = {"header": _header(), "l0_indptr": np.zeros(shape[0] + 1, dtype=np.int64),
              "l0_indices": np.zeros(0, dtype=np.int64), "l0_shape": np.array(shape, dtype=np.int64)}
    path = _save(tmp_path / "t.npz", arrays)
    assert f"layer 0 has shape {shape} (n_out, n_in): a layer needs at least one" in _load_error(path)
    one_line_error(runner.invoke(app, ["distance", str(path), str(path)]), str(path), "layer 0 has shape")


def test_zero_output_official_layer_names_the_file(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    ss.save_npz(d / "weight_l0.npz", ss.csr_matrix((5, 0)))
    with pytest.raises(FileFormatError, match=r"weight_l0.npz: expected shape \(n_in \+ 1, n_out\) with a bias row "
                                              r"and at least one input and one output neuron, got \(5, 0\)"):
        Topology.from_official_npz(d)


# ----------------------------------------------- header sizes beyond content
def test_forged_input_count_is_refused_before_anything_allocates_it(tmp_path):
    arrays = {"header": _header(n_layers=2),
              "l0_indptr": np.array([0, 1, 2]), "l0_indices": np.array([0, 5]), "l0_shape": np.array([2, 2**31 - 1]),
              "l1_indptr": np.array([0, 2]), "l1_indices": np.array([0, 1]), "l1_shape": np.array([1, 2])}
    path = _save(tmp_path / "t.npz", arrays)
    assert path.stat().st_size < 2000
    msg = _load_error(path)
    assert f"layer 0: {2**31 - 1} inputs for 2 connections is more than the {UNBACKED_INPUTS}" in msg
    one_line_error(runner.invoke(app, ["distance", str(path), str(path)]), str(path), "layer 0:", "forged shape")


def test_many_unconnected_inputs_within_the_bound_load(tmp_path):
    arrays = {"header": _header(), "l0_indptr": np.array([0, 1, 2]), "l0_indices": np.array([0, 5]),
              "l0_shape": np.array([2, 100_000])}
    t = Topology.load(_save(tmp_path / "t.npz", arrays))
    assert t.shapes == ((2, 100_000),) and t.n_connections == (2,)


def test_forged_official_coo_shape_is_refused(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    _save(d / "weight_l0.npz", {"format": np.array(b"coo"), "shape": np.array([2**31 - 1, 2**31 - 1]),
                                "data": np.ones(2), "row": np.array([0, 1]), "col": np.array([0, 1])})
    with pytest.raises(FileFormatError, match=rf"weight_l0.npz: matrix: {2**31 - 1} rows for 2 stored entries is "
                                              rf"more than the {UNBACKED_INPUTS}"):
        Topology.from_official_npz(d)


def test_official_arrays_must_fit_the_declared_shape(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    _save(d / "weight_l0.npz", {"format": np.array(b"csr"), "shape": np.array([3, 2]), "data": np.ones(7),
                                "indices": np.zeros(7, dtype=np.int32), "indptr": np.array([0, 7, 7, 7])})
    with pytest.raises(FileFormatError, match=r"weight_l0.npz: 'data' has 7 entries, more than the 3 x 2 matrix"):
        Topology.from_official_npz(d)
    _save(d / "weight_l0.npz", {"format": np.array(b"csr"), "shape": np.array([3, 2]), "data": np.ones(2),
                                "indices": np.zeros(2, dtype=np.int32), "indptr": np.array([0, 1, 2, 2, 2, 2])})
    with pytest.raises(FileFormatError, match=r"weight_l0.npz: matrix: array 'indptr' has 6 entries, needs 4"):
        Topology.from_official_npz(d)


# ------------------------------------------------------------ compressed bombs
BOMB_ITEMS = 8_000_000  # 64 MB of int64 zeros, deflated to about 64 kB


def _bomb(tmp_path, member: str) -> Path:
    members = {f"{k}.npy": _npy(v) for k, v in _arrays(SMALL).items()}
    members[f"{member}.npy"] = _npy(np.zeros(BOMB_ITEMS, dtype=np.int64 if member != "header" else np.uint8))
    path = _write_zip(tmp_path / f"bomb_{member}.npz", members)
    assert path.stat().st_size < 200_000
    return path


@pytest.mark.parametrize("member,message", [
    ("l0_indices", "indptr must rise from 0 to the 8000000 indices"),
    ("l0_indptr", "indptr has 8000000 entries for 10 rows"),
    ("l0_shape", "array 'l0_shape' has 8000000 entries, at most 16"),
    ("header", "array 'header' declares 8000000 entries, more than the 1048576"),
])
def test_compressed_bomb_is_refused_before_it_inflates(tmp_path, member, message):
    path = _bomb(tmp_path, member)
    box = {}

    def load():
        with pytest.raises(FileFormatError) as err:
            Topology.load(path)
        box["msg"] = str(err.value)

    peak = _peak_while(load)
    assert box["msg"].startswith(f"{path}: ") and message in box["msg"], box["msg"]
    assert peak < 8 * 2**20, peak  # the 64 MB member was never inflated


def test_compressed_bomb_in_the_official_layout(tmp_path):
    d = tmp_path / "e"
    d.mkdir()
    _save(d / "weight_l0.npz", {"format": np.array(b"csr"), "shape": np.array([13, 10]),
                                "data": np.zeros(BOMB_ITEMS), "indices": np.zeros(2, dtype=np.int32),
                                "indptr": np.zeros(14, dtype=np.int32)})
    assert (d / "weight_l0.npz").stat().st_size < 200_000
    box = {}

    def load():
        with pytest.raises(FileFormatError) as err:
            Topology.from_official_npz(d)
        box["msg"] = str(err.value)

    peak = _peak_while(load)
    assert "weight_l0.npz: 'data' has 8000000 entries, more than the 13 x 10 matrix holds" in box["msg"]
    assert peak < 8 * 2**20, peak


def test_a_member_is_inflated_only_to_its_declared_size(tmp_path):
    """A zip entry that declares fewer bytes than its stream inflates to is read only that far."""
    path = tmp_path / "lie.npz"
    small = _npy(np.arange(4, dtype=np.int64))
    _write_zip(path, {"a.npy": small + b"\0" * 4_000_000})  # the stream holds 4 MB more than the .npy needs
    with pytest.raises(FileFormatError, match=r"array 'a' declares shape \(4,\) \(32 bytes\) but holds 4000032"):
        read_npz(path, "x")
    with NpzArchive.__new__(NpzArchive) as z:  # bypass the size check to exercise the bounded read itself
        z.path, z.what, z.others, z._members = path, "x", [], {}
        z._zf = zipfile.ZipFile(path)
        info = z._zf.getinfo("a.npy")
        z._members["a"] = (info, (4,), False, np.dtype(np.int64), len(small) - 32)
        peak = _peak_while(lambda: np.testing.assert_array_equal(z.read("a"), np.arange(4)))
    assert peak < 2**20


# ------------------------------------------------------------ header content
@pytest.mark.parametrize("raw", [b"[" * 200_000, b'{"a": ' * 100_000])
def test_deeply_nested_header_is_named_not_a_recursion_error(tmp_path, raw):
    arrays = _arrays(SMALL)
    arrays["header"] = np.frombuffer(raw, dtype=np.uint8)
    path = _save(tmp_path / "t.npz", arrays)
    assert "topology header nests deeper than 64 levels" in _load_error(path)
    one_line_error(runner.invoke(app, ["distance", str(path), str(path)]), str(path), "nests deeper")


def test_deep_metadata_is_refused_shallow_metadata_kept(tmp_path):
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    arrays = _arrays(SMALL)
    arrays["header"] = _header(metadata=deep)
    assert "nests deeper than 64" in _load_error(_save(tmp_path / "t.npz", arrays))
    t = SMALL.with_name("s", run={"epoch": 3, "seeds": [1, 2]})
    assert Topology.load(t.save(tmp_path / "ok.npz")).metadata == {**SMALL.metadata, "run": {"epoch": 3,
                                                                                            "seeds": [1, 2]}}


def test_header_listing_fewer_layers_than_the_file_holds(tmp_path):
    t = erdos_renyi([12, 10, 8, 4], epsilon=2, seed=0)
    arrays = _arrays(t)
    arrays["header"] = _header(n_layers=1)
    msg = _load_error(_save(tmp_path / "t.npz", arrays))
    assert "holds arrays of 3 layers (l0 .. l2) but its header says n_layers 1" in msg


@pytest.mark.parametrize("extra", [{"evil.npy": _npy(np.ones(3))}, {"README.txt": b"hello"},
                                   {"l0_weights.npy": _npy(np.ones(3))}])
def test_unknown_members_are_refused(tmp_path, extra):
    members = {f"{k}.npy": _npy(v) for k, v in _arrays(SMALL).items()}
    members.update(extra)
    msg = _load_error(_write_zip(tmp_path / "t.npz", members))
    (name,) = extra
    assert f"unknown members {name.removesuffix('.npy')!r}; a sparsetopo topology holds only" in msg


def test_two_members_of_one_name_are_refused(tmp_path):
    path = _save(tmp_path / "t.npz", _arrays(SMALL))
    other = erdos_renyi([12, 10], epsilon=3, seed=1, dense_output=False)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("l0_indices.npy", _npy(other.layers[0].indices.astype(np.int64)))
    assert "holds two arrays named 'l0_indices'" in _load_error(path)


def test_saved_topologies_still_round_trip(tmp_path):
    from sparsetopo.topology import random_topology

    conv = random_topology([(4, 3, 3, 3), (6, 4, 3, 3), (5, 6 * 16)], [0.5, 0.3, 1.0], seed=0)
    for t in (SMALL, erdos_renyi([20, 16, 12, 4], epsilon=2, seed=0), conv):
        back = Topology.load(t.save(tmp_path / "t.npz"))
        assert back == t and back.kernels == t.kernels and back.name == t.name


# ----------------------------------------------------------- official layout
def test_two_files_for_one_official_layer_are_ambiguous(tmp_path):
    d = official_dir(tmp_path / "e", [np.ones((3, 4)), np.ones((2, 3))])
    (d / "weight_l01.npz").write_bytes((d / "weight_l1.npz").read_bytes())
    with pytest.raises(SparsetopoError, match=r"e: weight_l01.npz and weight_l1.npz are both layer 1; remove one"):
        Topology.from_official_npz(d)


def test_official_chaining_error_names_the_offending_file(tmp_path):
    d = official_dir(tmp_path / "chain", [np.ones((3, 4)), np.ones((2, 5))])
    with pytest.raises(FileFormatError) as err:
        Topology.from_official_npz(d)
    assert err.value.path == str(d / "weight_l1.npz")
    assert "layer 1 does not chain with layer 0: its shape (6, 2) (n_in + 1, n_out) expects 5 inputs but " \
           "weight_l0.npz has 3 outputs" in str(err.value)


def test_official_gap_names_the_real_file_and_non_ascii_digits_are_not_layers(tmp_path):
    d = official_dir(tmp_path / "e", [np.ones((3, 4))])
    (d / "weight_l007.npz").write_bytes((d / "weight_l0.npz").read_bytes())
    with pytest.raises(SparsetopoError, match=r"weight_l1.npz is missing but weight_l007.npz exists"):
        Topology.from_official_npz(d)
    (d / "weight_l007.npz").unlink()
    (d / "weight_l\u0661.npz").write_bytes(b"not a layer")  # ARABIC-INDIC DIGIT ONE: not our layer 1
    assert Topology.from_official_npz(d).shapes == ((3, 4),)


# ------------------------------------------------------------------ fuzzing
FUZZ = r"""
import json, random, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from conftest import official_dir
from sparsetopo.errors import SparsetopoError
from sparsetopo.topology import Topology, erdos_renyi, random_topology

tmp = Path(sys.argv[2])
rng = random.Random(1)
shapes = {
    "one layer": erdos_renyi([30, 5], epsilon=3, seed=0, dense_output=False),
    "dense": erdos_renyi([6, 5, 4], epsilon=50, seed=0),
    "conv": random_topology([(4, 3, 3, 3), (6, 4, 3, 3), (5, 6 * 16)], [0.5, 0.3, 1.0], seed=0),
    "metadata": erdos_renyi([16, 12, 4], epsilon=2, seed=0).with_name("m", run={"epoch": 3, "note": "x" * 50}),
}
targets = {n: (t.save(tmp / f"{i}.npz"), Topology.load) for i, (n, t) in enumerate(shapes.items())}
od = official_dir(tmp / "official", shapes["dense"].to_dense())
targets["official l0"] = (od / "weight_l0.npz", lambda p: Topology.from_official_npz(p.parent))
outcomes = {}
for name, (path, load) in targets.items():
    good = path.read_bytes()
    for trial in range(80):
        raw = bytearray(good)
        if trial % 4 == 3:
            raw = raw[: rng.randrange(len(raw))]
        else:
            for _ in range(rng.choice((1, 2, 4))):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
        try:
            load(path)
            key = "loaded"
        except (SparsetopoError, FileNotFoundError) as exc:
            assert str(path) in str(exc) or str(path.parent) in str(exc), (name, exc)
            key = "clean error"
        outcomes[f"{name}: {key}"] = outcomes.get(f"{name}: {key}", 0) + 1
    path.write_bytes(good)
print(json.dumps(outcomes))
"""


def test_fuzzed_topologies_of_more_shapes_give_clean_errors(tmp_path):
    """Flip bytes of and truncate one-layer, dense, convolutional and metadata-carrying topologies and an
    official-layout file: each load succeeds or raises our error naming the file, never a crash."""
    res = subprocess.run([sys.executable, "-c", FUZZ, str(HERE), str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert sum(counts.values()) == 5 * 80
    for name in ("one layer", "dense", "conv", "metadata", "official l0"):
        assert counts.get(f"{name}: clean error", 0) > 0, counts
