import numpy as np
import scipy.sparse as ss

from sparsetopo.experiments import published
from sparsetopo.experiments.fidelity import connection_stats, fidelity_rows, our_epoch_for
from sparsetopo.topology import Topology


def _topo(*masks):
    return Topology.from_masks([np.asarray(m, dtype=bool) for m in masks])


def test_connection_stats_on_hand_made_networks():
    a0 = [[1, 1, 0, 0], [0, 0, 1, 1]]
    b0 = [[1, 0, 1, 0], [0, 0, 1, 1]]  # shares 3 of a's 4 connections
    a1 = [[0, 1, 0, 1], [0, 0, 1, 1]]  # keeps 3 of its 4, shares 2 with b
    b1 = b0
    snaps = {0: [_topo(a0), _topo(b0)], 5: [_topo(a1), _topo(b1)]}
    w = {e: [[ss.csr_matrix(np.asarray(t[0].toarray(), float) * (1 + np.arange(4)))] for t in ts]
         for e, ts in snaps.items()}
    stats = connection_stats(snaps, w, layers=[0])
    assert stats["shared"][0] == {0: 0.75, 5: 0.5}
    assert stats["kept"][0] == {(0, 5): (0.75 + 1.0) / 2}
    assert stats["connections"][0] == {0: 4.0, 5: 4.0}
    # identical weights on the shared positions: correlation 1
    assert np.isclose(stats["correlation"][0][0], 1.0)


def test_published_epoch_maps_to_two_more_epochs_of_training_and_epoch0_never_falls_back():
    assert our_epoch_for(10, [10, 11, 12]) == 12
    assert our_epoch_for(10, [10, 11]) == 11
    assert our_epoch_for(10, [0, 10]) == 10
    assert our_epoch_for(0, [0, 1]) is None  # the untrained state is not the published epoch 0
    assert our_epoch_for(0, [0, 1, 2]) == 2


def test_fidelity_rows_put_published_and_ours_side_by_side():
    means = {0: {0: 0.07, 2: 0.30, 12: 0.40}}
    stats = {"shared": {0: {2: 0.8}}, "kept": {0: {(2, 12): 0.7}}, "correlation": {0: {}},
             "connections": {0: {12: 3700.0}}}
    rows = fidelity_rows(means, stats, {1: 0.2, 11: 0.78})
    got = {(r["statistic"], r["layer"], r["published_epoch"]): (r["our_epoch"], r["ours"], r["published"])
           for r in rows}
    assert got[("mean NNSTD", 0, 0)] == (2, 0.30, published.NNSTD_MEAN[0][0])
    assert got[("mean NNSTD", 0, 10)] == (12, 0.40, published.NNSTD_MEAN[0][10])
    assert got[("connections shared by two networks", 0, 0)] == (2, 0.8, 0.81)
    assert got[("connections kept between the two epochs", 0, "0-10")] == ("2-12", 0.7, 0.75)
    assert got[("accuracy after this many epochs", "", 11)] == (11, 0.78, published.ACCURACY[10])
    assert all(np.isclose(r["difference"], r["ours"] - r["published"]) for r in rows)
