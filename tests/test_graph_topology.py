"""Graph topologies (issue 22, item 1): streams, their checks, and the versioned file format."""

import json
import zipfile

import numpy as np
import pytest

from sparsetopo.errors import FileFormatError
from sparsetopo.topology import Topology, perturb, random_topology
from sparsetopo.topology.graph import openers

#: stem -> s1; a block (s1 -> s2 -> s1, an identity shortcut); a projection block (s1 -> s3 -> s4 and s1 -> s4);
#: the classifier reads s4.
STREAMS = [(0, 1), (1, 2), (2, 1), (1, 3), (3, 4), (1, 4), (4, 5)]
SHAPES = [(8, 3, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3), (16, 8, 1, 1), (10, 16 * 4)]


def _graph(seed=0, density=0.3):
    return random_topology(SHAPES, [density] * len(SHAPES), seed, streams=STREAMS)


def test_a_graph_keeps_its_streams_and_blocks():
    t = _graph()
    assert t.is_graph and t.streams == tuple(STREAMS)
    assert t.blocks == (9, 9, 9, 9, 9, 1, 4)  # the classifier reads a 2x2 feature map per channel
    assert t.sizes[0] == 3


def test_chain_streams_are_a_chain_bit_for_bit():
    layers = [np.random.default_rng(1).random((5, 4)) < 0.5, np.random.default_rng(2).random((3, 5)) < 0.5]
    plain = Topology(layers)
    given = Topology(layers, streams=[(0, 1), (1, 2)])
    assert given.streams is None and not given.is_graph
    assert given == plain and given.fingerprint() == plain.fingerprint()


def test_a_graph_differs_from_the_chain_with_the_same_layers():
    layers = [np.ones((4, 4)), np.ones((4, 4)), np.ones((2, 4))]
    chain, graph = Topology(layers), Topology(layers, streams=[(0, 1), (1, 1), (1, 2)])
    assert chain != graph and chain.fingerprint() != graph.fingerprint()


@pytest.mark.parametrize("streams,message", [
    ([(0, 1), (2, 1)], r"layer 1 reads stream 2, which no earlier layer writes"),
    ([(0, 1), (1, 3)], r"stream 2 is never written"),
    ([(0, 1)], r"streams must have one \(read, write\) pair per layer \(2\); got 1"),
    ([(0, 1), (1, -1)], r"streams\[1\] must hold stream numbers >= 0; got \(1, -1\)"),
    ([(0, 1), "ab"], r"streams\[1\] must be a pair of integers"),
])
def test_bad_streams_are_refused_by_name(streams, message):
    with pytest.raises(ValueError, match=message):
        Topology([np.ones((4, 4)), np.ones((4, 4))], streams=streams)


def test_writers_of_one_stream_need_as_many_outputs():
    with pytest.raises(ValueError, match=r"layers 0 and 2 both write into stream 1 but have 4 and 3 outputs"):
        Topology([np.ones((4, 4)), np.ones((4, 4)), np.ones((3, 4))], streams=[(0, 1), (1, 2), (2, 1)])


def test_a_reader_must_match_its_streams_channels():
    with pytest.raises(ValueError, match=r"layer 2 has shape \(2, 5\).*expects 5 input units.*stream 1 it reads has 4"):
        Topology([np.ones((4, 4)), np.ones((6, 4)), np.ones((2, 5))], streams=[(0, 1), (1, 2), (1, 3)])


def test_openers_are_the_writers_before_any_reader():
    assert openers(STREAMS) == {1: [0], 2: [1], 3: [3], 4: [4, 5], 5: [6]}  # layer 2 writes s1 after it is read


def test_graph_files_round_trip_with_version_3(tmp_path):
    t = _graph().with_name("g", run="x")
    path = t.save(tmp_path / "g.npz")
    back = Topology.load(path)
    assert back == t and back.streams == t.streams and back.name == "g" and back.metadata["run"] == "x"
    assert back.fingerprint() == t.fingerprint()
    with zipfile.ZipFile(path) as z:
        header = json.loads(np.load(z.open("header.npy")).tobytes())
    assert header["version"] == 3


def test_chain_files_stay_in_the_old_versions(tmp_path):
    """A chain is written exactly as before (no 'streams' member, version 1 or 2): older versions read it."""
    for layers, version in (([np.ones((3, 2)), np.ones((2, 3))], 1), ([np.ones((4, 1, 3, 3)), np.ones((2, 4 * 9))], 2)):
        path = Topology(layers).save(tmp_path / f"c{version}.npz")
        with zipfile.ZipFile(path) as z:
            assert "streams.npy" not in z.namelist()
            header = json.loads(np.load(z.open("header.npy")).tobytes())
        assert header["version"] == version


def _rewrite(path, out, *, drop=(), header=None, extra=None):
    with zipfile.ZipFile(path) as z:
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    for name in drop:
        arrays.pop(name)
    if header is not None:
        h = json.loads(arrays["header"].tobytes())
        h.update(header)
        arrays["header"] = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)
    arrays.update(extra or {})
    np.savez(out, **arrays)
    return out


def test_damaged_graph_files_are_refused_by_name(tmp_path):
    path = _graph().save(tmp_path / "g.npz")
    cases = [
        (dict(drop=["streams"]), "version 3 \\(a graph\\) needs a 'streams' array"),
        (dict(header={"version": 2}), "holds 'streams' but is version 2"),
        (dict(extra={"streams": np.zeros(3, dtype=np.int64)}), "streams"),
        (dict(extra={"streams": np.array([0, 1, 5, 1, 1, 3, 3, 4, 1, 4, 4, 5, 99, 1])}), "stream numbers in"),
        (dict(extra={"streams": np.array([0, 1, 2, 1, 1, 3, 3, 4, 1, 4, 4, 5, 5, 6])}), "reads stream 2"),
    ]
    for k, (change, message) in enumerate(cases):
        bad = _rewrite(path, tmp_path / f"bad{k}.npz", **change)
        with pytest.raises(FileFormatError, match=message):
            Topology.load(bad)


def test_perturb_keeps_the_graph():
    t = _graph()
    p = perturb(t, 0.2, seed=3)
    assert p.streams == t.streams and p.n_connections == t.n_connections and p != t
