import numpy as np
import pytest
import scipy.sparse as ss

from sparsetopo.errors import SparsetopoError
from sparsetopo.experiments.fidelity import run_network_stats
from sparsetopo.experiments.network_stats import (
    churn,
    layer_stats,
    max_pre_activations,
    network_stats,
    read_published_network,
    summarise,
)


def _net():
    """3 inputs -> 3 hidden -> 2 hidden -> 2 outputs, inputs non-negative.

    Hidden neuron 0 has only negative weights (dead on non-negative inputs), neuron 1 reads
    input 2 only, which is always 0 (dead), neuron 2 is alive. Layer 1: neuron 0 reads the
    live neuron 2, neuron 1 reads dead neurons only (dead through its inputs, bias 0), and an
    explicit zero weight sits on a dead input.
    """
    w0 = ss.csr_matrix(np.array([[-1.0, -2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0]]))
    w1 = ss.csr_matrix((np.array([2.0, 0.0, 5.0]), (np.array([0, 0, 1]), np.array([2, 0, 1]))), shape=(2, 3))
    w2 = ss.csr_matrix(np.ones((2, 2)))
    b = [np.zeros(3), np.zeros(2), np.zeros(2)]
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(0, 1, 50), rng.uniform(0, 1, 50), np.zeros(50)])
    return [w0, w1, w2], b, x


def _dense_reference(weights, biases, x):
    h, out = x, []
    for w, b in zip(weights, biases):
        z = h @ w.toarray().T + b
        out.append(z.max(axis=0))
        h = np.maximum(z, 0)
    return out


def test_max_pre_activations_match_a_dense_forward_pass_in_any_batch_size():
    rng = np.random.default_rng(1)
    ws = [ss.random(7, 5, density=0.4, random_state=2, format="csr") - ss.random(7, 5, density=0.3, random_state=3),
          ss.random(4, 7, density=0.5, random_state=4, format="csr")]
    bs = [rng.normal(size=7), rng.normal(size=4)]
    x = rng.uniform(0, 1, (33, 5))
    ref = _dense_reference(ws, bs, x)
    for batch in (1, 8, 1000):
        got = max_pre_activations(ws, bs, x, batch_size=batch)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_all_negative_weights_on_non_negative_inputs_and_dead_inputs_make_dead_neurons():
    w, b, x = _net()
    rows = network_stats(w, b, x)
    assert [r["layer"] for r in rows] == [0, 1]  # hidden layers only
    l0, l1 = rows
    assert l0["dead_neurons"] == 2 and l0["dead_inputs"] == 1  # neurons 0 and 1; pixel 2
    assert l1["dead_inputs"] == 2 and l1["dead_neurons"] == 1  # neuron 1 reads dead neurons only
    assert l1["connections"] == 3 and l1["zero_valued"] == 1 and l1["zero_on_dead"] == 1
    assert l1["into_dead"] == 1  # the 5.0 into the dead neuron 1
    assert l0["no_input_neurons"] == 0 and l0["unused_inputs"] == 0
    assert l1["no_input_neurons"] == 0 and l1["unused_inputs"] == 1  # hidden neuron 0's only weight out is 0


def test_a_positive_bias_keeps_a_neuron_alive():
    w, b, x = _net()
    b[0] = np.array([0.5, 0.0, 0.0])
    assert network_stats(w, b, x)[0]["dead_neurons"] == 1


def test_layer_stats_degrees_count_non_zero_connections_only():
    w = ss.csr_matrix((np.array([1.0, 0.0, 2.0, 3.0]), (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 2]))), shape=(3, 3))
    s = layer_stats(w, np.zeros(3, bool), np.array([False, False, True]))
    assert s["connections"] == 4 and s["zero_valued"] == 1 and s["zero_on_dead"] == 0
    assert s["no_input_neurons"] == 1  # output 2
    assert s["unused_inputs"] == 1  # input 1: its only connection is a zero
    assert s["in_degree_max"] == 2 and np.isclose(s["in_degree_std"], np.std([1, 2, 0]))
    with pytest.raises(SparsetopoError, match=r"dead_in and dead_out must have shapes \(3,\) and \(3,\)"):
        layer_stats(w, np.zeros(2, bool), np.zeros(3, bool))


def test_churn_counts_explicit_zeros_as_connections_and_reports_the_zero_share_of_the_moved():
    before = ss.csr_matrix((np.array([1.0, 0.0, 0.0, 2.0]), (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))),
                           shape=(2, 2))
    after = ss.csr_matrix((np.array([0.0, 5.0]), (np.array([0, 1]), np.array([1, 1]))), shape=(2, 2))
    c = churn(before, after)  # kept: (0,1) [a zero in after too] and (1,1); moved: (0,0)=1 and (1,0)=0
    assert c == {"moved": 0.5, "moved_zero_valued": 0.5}
    assert churn(before, before) == {"moved": 0.0, "moved_zero_valued": 0.0}
    with pytest.raises(SparsetopoError, match="same shape"):
        churn(before, ss.csr_matrix((3, 2)))


def test_bad_networks_are_refused_naming_the_parameter():
    w, b, x = _net()
    with pytest.raises(SparsetopoError, match=r"biases\[1\] must have one entry per output neuron \(2\)"):
        max_pre_activations(w, [b[0], np.zeros(3), b[2]], x)
    with pytest.raises(SparsetopoError, match=r"x must have shape \(n_samples, 3\)"):
        max_pre_activations(w, b, x[:, :2])
    with pytest.raises(SparsetopoError, match="batch_size must be >= 1; got 0"):
        max_pre_activations(w, b, x, batch_size=0)
    with pytest.raises(SparsetopoError, match=r"layers must be hidden layers 0..1; got \[2\]"):
        network_stats(w, b, x, layers=[2])


def test_summarise_means_over_networks():
    rows = [{"network": "a", "epoch": 1, "layer": 0, "dead_neurons": 2, "moved": None},
            {"network": "b", "epoch": 1, "layer": 0, "dead_neurons": 4, "moved": None},
            {"network": "a", "epoch": 2, "layer": 0, "dead_neurons": 1, "moved": 0.5}]
    out = summarise(rows)
    assert out[0] == {"epoch": 1, "layer": 0, "networks": 2, "dead_neurons": 3.0}
    assert out[1]["moved"] == 0.5 and out[1]["networks"] == 1


def test_read_published_network_round_trips_the_published_layout(tmp_path):
    w, b, _ = _net()
    for k, (wk, bk) in enumerate(zip(w, b)):
        # published: (n_in + 1, n_out), the bias as the last row, no explicit zeros
        m = ss.vstack([wk.T, ss.csr_matrix(bk[None, :] + k)]).tocsr()
        m.eliminate_zeros()
        ss.save_npz(tmp_path / f"weight_l{k}.npz", m)
    rw, rb = read_published_network(tmp_path)
    for k in range(3):
        np.testing.assert_array_equal(rw[k].toarray(), w[k].toarray())
        np.testing.assert_array_equal(rb[k], b[k] + k)
    with pytest.raises(SparsetopoError, match="no weight_l"):
        read_published_network(tmp_path / "missing")


def test_run_network_stats_reads_weights_snapshots_and_measures_each_update(tmp_path):
    from sparsetopo.training.weights import load_weights

    w, b, x = _net()
    run = tmp_path / "net0"
    (run / "weights").mkdir(parents=True)
    moved = w[1].copy()
    moved.indices = np.array([1, 0, 1], dtype=moved.indices.dtype)  # row 0's two connections move
    for e, w1 in ((0, w[1]), (1, moved), (5, moved)):
        arrays = {"n_layers": np.array(3)}
        for k, wk in enumerate((w[0], w1, w[2])):
            wk = ss.csr_matrix(wk)
            wk.sort_indices()
            arrays.update({f"w{k}": wk.data.astype(np.float32), f"m{k}_indptr": wk.indptr.astype(np.int64),
                           f"m{k}_indices": wk.indices.astype(np.int32), f"m{k}_shape": np.array(wk.shape),
                           f"b{k}": b[k].astype(np.float32)})
        np.savez(run / "weights" / f"epoch_{e:03d}.npz", **arrays)
    assert load_weights(run / "weights" / "epoch_001.npz")[0][1].nnz == 3
    rows = run_network_stats([run], inputs=lambda d: x)
    got = {(r["epoch"], r["layer"]): r for r in rows}
    assert set(got) == {(e, k) for e in (0, 1, 5) for k in (0, 1)}
    assert got[(0, 0)]["moved"] == 0.0
    # row 0 of layer 1: (0,0)=0.0 and (0,2)=2.0 become (0,1) and (0,0): (0,2) gone, (0,0) kept
    assert np.isclose(got[(0, 1)]["moved"], 1 / 3) and got[(0, 1)]["moved_zero_valued"] == 0.0
    assert got[(1, 1)]["moved"] is None  # no epoch-2 snapshot: no single update to measure
    assert got[(0, 0)]["dead_neurons"] == 2 and got[(0, 0)]["network"] == "net0"


def test_fidelity_rows_compare_network_statistics_at_matched_epochs():
    from sparsetopo.experiments import published
    from sparsetopo.experiments.fidelity import fidelity_rows, network_finding

    stats = {"shared": {}, "kept": {}, "correlation": {}, "connections": {}}
    net = [{"epoch": 12, "layer": k, "networks": 2, "dead_neurons": 100.0 + k, "zero_valued": 130.0,
            "zero_on_dead": 120.0, "into_dead": 200.0, "no_input_neurons": 10.0, "unused_inputs": 5.0}
           for k in (0, 1, 2)]
    rows = fidelity_rows({}, stats, {}, net)
    got = {(r["statistic"], r["layer"], r["published_epoch"]): r for r in rows}
    dead = got[("dead hidden neurons (no positive pre-activation on the training split)", 1, 10)]
    assert dead["our_epoch"] == 12 and dead["ours"] == 101.0
    assert dead["published"] == published.DEAD_NEURONS[1][10]
    zero = got[("zero-valued connections (published: 3772 minus the file's)", 0, 10)]
    assert zero["published"] == published.ZERO_VALUED[0][10] == round(3772 - published.CONNECTIONS[0][10], 1)
    assert {r["published_epoch"] for r in rows} == {10}  # only epoch 12 of ours exists: published 10
    text = network_finding(rows)
    assert text.startswith("At published epoch 10 (ours: epoch 12): dead neurons per hidden layer 100 / 101 / 102")
    assert network_finding(fidelity_rows({}, stats, {})) is None
