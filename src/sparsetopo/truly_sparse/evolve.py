"""Drop and grow on truly sparse layers, in O(connections) time and memory.

The building blocks work on NumPy arrays of one layer's CSR structure
(``indptr``, ``indices``) and weights (``values``, CSR order):

* :func:`set_drop` / :func:`magnitude_drop` -- which connections go (boolean mask over connections);
* :func:`random_grow` / :func:`gradient_grow` -- where new ones appear (sorted flat keys
  ``row * n_in + col``, int64, never at a position kept after the drop);
* :func:`merge_structure` -- the new CSR and, per new connection, where it came from
  (``src[k]`` = its old index in ``values``, or -1 for a grown one);
* :func:`apply_update` -- installs that on a :class:`TrulySparseLinear`, reordering ``values``
  and the optimizer's per-connection state (SGD's ``momentum_buffer``, Adam's ``exp_avg`` /
  ``exp_avg_sq``, ...) in place, so the optimizer keeps working without being rebuilt; grown
  connections start at zero (or N(0, std^2)) with zero state.

:func:`set_update` and :func:`rigl_update` chain them the way ``sparsetopo.methods.set_.SET``
and ``sparsetopo.methods.rigl.RigL`` do on masked layers. As there, a dropped position may
be regrown at once (growth excludes only the connections kept), and the count per layer is
exactly preserved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .layer import TrulySparseLinear

__all__ = ["UpdateStats", "apply_update", "gradient_grow", "magnitude_drop", "merge_structure", "random_grow",
           "rigl_update", "set_drop", "set_update"]


#: Layers with at most this many cells (or crowded ones) draw regrowth by enumerating free cells.
ENUMERATE_MAX_CELLS = 4_000_000


@dataclass(frozen=True)
class UpdateStats:
    """What one drop-and-grow did to a layer."""

    dropped: int
    grown: int
    n_connections: int


def _smallest(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries (any order; ties broken arbitrarily). O(n)."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= len(score):
        return np.arange(len(score))
    return np.argpartition(score, k - 1)[:k]


def set_drop(values: np.ndarray, zeta: float) -> np.ndarray:
    """SET's drop as ``sparsetopo.methods.set_.SET.drop``: the ``int(zeta * n_pos)`` smallest positive
    weights, the ``int(zeta * n_neg)`` largest negative ones and every exactly-zero weight.

    Returns a boolean mask over connections (True = dropped). O(n) (``np.argpartition``).
    """
    values = np.asarray(values)
    drop = values == 0
    pos = np.flatnonzero(values > 0)
    neg = np.flatnonzero(values < 0)
    drop[pos[_smallest(values[pos], int(zeta * len(pos)))]] = True
    drop[neg[_smallest(-values[neg], int(zeta * len(neg)))]] = True
    return drop


def magnitude_drop(values: np.ndarray, fraction: float) -> np.ndarray:
    """RigL's drop: the ``int(fraction * n)`` connections of smallest ``|w|`` (boolean mask, True = dropped)."""
    values = np.asarray(values)
    drop = np.zeros(len(values), dtype=bool)
    drop[_smallest(np.abs(values), int(fraction * len(values)))] = True
    return drop


def _keys(indptr: np.ndarray, indices: np.ndarray, n_in: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Flat keys ``row * n_in + col`` (int64, ascending: CSR order) of all or the kept connections."""
    rows = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    if keep is not None:
        rows = rows[keep]
        cols = indices[keep]
    else:
        cols = indices
    rows *= n_in
    rows += cols
    return rows


def random_grow(indptr: np.ndarray, indices: np.ndarray, keep: np.ndarray, n_grow: int, n_in: int,
                rng: np.random.Generator) -> np.ndarray:
    """``n_grow`` positions drawn uniformly among those not kept, without duplicates; sorted flat keys.

    Rejection in rounds: draw candidate keys, keep the distinct ones (sorted) that
    are neither kept (``searchsorted`` of the sorted candidates in the sorted kept keys) nor
    already chosen; if a round yields more than still needed, a uniformly random subset of them.
    Every step treats all absent positions alike, so the result is a uniformly random subset.
    O(connections) time and memory while the layer is at most a quarter full; a crowded or tiny
    layer (at most 4 M cells) enumerates its free cells instead.
    """
    n_out = len(indptr) - 1
    total = n_out * n_in
    kept = _keys(indptr, indices, n_in, keep)
    free = total - len(kept)
    if n_grow > free:
        raise ValueError(f"cannot grow {n_grow} connections in {free} free positions")
    if n_grow <= 0:
        return np.empty(0, dtype=np.int64)
    if total <= ENUMERATE_MAX_CELLS or n_grow > free // 4:
        mask = np.ones(total, dtype=bool)
        mask[kept] = False
        return np.sort(rng.choice(np.flatnonzero(mask), size=n_grow, replace=False))
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < n_grow:
        need = n_grow - len(chosen)
        draw = rng.integers(0, total, size=int(need * 1.1) + 16, dtype=np.int64)
        draw.sort()  # not np.unique: NumPy 2's hash-based unique took 16 s on 8 M random keys, sort+diff 1 s
        if len(draw) > 1:
            draw = draw[np.concatenate(([True], draw[1:] != draw[:-1]))]
        for present in (kept, chosen):
            if len(present):
                # Sorted needles: searchsorted walks the haystack in order (measured 20x faster
                # than unsorted ones on 24 M keys).
                pos = np.minimum(np.searchsorted(present, draw), len(present) - 1)
                draw = draw[present[pos] != draw]
        if len(draw) > need:
            draw = np.sort(rng.choice(draw, size=need, replace=False))
        chosen = np.sort(np.concatenate([chosen, draw])) if len(chosen) else draw
    return chosen


def gradient_grow(indptr: np.ndarray, indices: np.ndarray, keep: np.ndarray, n_grow: int, n_in: int,
                  x: torch.Tensor, gy: torch.Tensor, *, block_elements: int = 1 << 22) -> np.ndarray:
    """RigL's growth: the ``n_grow`` positions not kept with the largest ``|gy^T x|`` (the dense weight
    gradient of the batches ``x`` ``(N, n_in)``, ``gy`` ``(N, n_out)``); sorted flat keys.

    The dense gradient is formed ``block_elements // n_in`` output rows at a time, with a running top-k
    (``torch.topk`` per block, merged): memory O(n_grow + block + connections), time O(N n_out n_in)
    -- the dense product is inherent to RigL's criterion. Ties are broken arbitrarily.
    """
    n_out = len(indptr) - 1
    if n_grow <= 0:
        return np.empty(0, dtype=np.int64)
    x = x.detach().to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    gy = gy.detach().to(x.dtype)
    block = max(1, min(n_out, block_elements // max(1, n_in)))
    rows_all = np.repeat(np.arange(n_out, dtype=np.int64), np.diff(indptr))
    best_val = torch.empty(0, dtype=x.dtype)
    best_key = torch.empty(0, dtype=torch.int64)
    for r0 in range(0, n_out, block):
        r1 = min(n_out, r0 + block)
        g = (gy[:, r0:r1].t() @ x).abs_().reshape(-1)  # (r1 - r0) * n_in
        a, b = int(indptr[r0]), int(indptr[r1])
        k_rows, k_cols, k_keep = rows_all[a:b], indices[a:b], keep[a:b]
        excl = (k_rows[k_keep] - r0) * n_in + k_cols[k_keep]
        g[torch.from_numpy(excl)] = -float("inf")
        top = torch.topk(g, min(n_grow, g.numel()), sorted=False)
        best_val = torch.cat([best_val, top.values])
        best_key = torch.cat([best_key, top.indices + r0 * n_in])
        if len(best_val) > n_grow:
            t = torch.topk(best_val, n_grow, sorted=False)
            best_val, best_key = t.values, best_key[t.indices]
    if len(best_val) < n_grow or bool(torch.isneginf(best_val).any()):
        raise ValueError(f"cannot grow {n_grow} connections: not enough free positions")
    return np.sort(best_key.numpy())


def merge_structure(indptr: np.ndarray, indices: np.ndarray, keep: np.ndarray, new_keys: np.ndarray,
                    n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR of the kept connections plus ``new_keys`` (sorted, none kept), in O(connections).

    Returns ``(indptr, indices, src)``: ``src[k]`` is the old index (into ``values``) of new
    connection ``k``, or -1 where it was grown. Rows stay sorted; no duplicates by construction.
    """
    n_out = len(indptr) - 1
    new_keys = np.asarray(new_keys, dtype=np.int64)
    kept_idx = np.flatnonzero(keep)
    kept_keys = _keys(indptr, indices, n_in, keep)
    n = len(kept_idx) + len(new_keys)
    at = np.searchsorted(kept_keys, new_keys) + np.arange(len(new_keys))  # positions of the grown ones
    is_new = np.zeros(n, dtype=bool)
    is_new[at] = True
    src = np.full(n, -1, dtype=np.int64)
    src[~is_new] = kept_idx
    out_indices = np.empty(n, dtype=indices.dtype)
    out_indices[~is_new] = indices[kept_idx]
    new_rows, new_cols = np.divmod(new_keys, n_in)
    out_indices[at] = new_cols
    counts = np.bincount(kept_keys // n_in, minlength=n_out) + np.bincount(new_rows, minlength=n_out)
    out_indptr = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(counts, out=out_indptr[1:])
    return out_indptr, out_indices, src


@torch.no_grad()
def apply_update(layer: TrulySparseLinear, indptr: np.ndarray, indices: np.ndarray, src: np.ndarray,
                 optimizer: torch.optim.Optimizer | None = None, grown_values: torch.Tensor | None = None) -> None:
    """Install a new topology on ``layer``: connection ``k`` takes the weight (and optimizer state) of old
    connection ``src[k]``, or, where ``src[k] == -1``, ``grown_values`` in order (default 0) and zero state.

    Every per-connection tensor of the optimizer's state for ``layer.values`` (shape equal to it:
    ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ...) is permuted in place
    when the count is unchanged (so the optimizer is not rebuilt), replaced otherwise; scalars
    (Adam's ``step``) are left alone. The gradient is cleared.
    """
    src_t = torch.from_numpy(np.asarray(src, dtype=np.int64))
    kept = src_t >= 0
    old_src = src_t[kept]
    grown = ~kept

    def moved(t: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.zeros(len(src_t), dtype=t.dtype)
        out[kept] = t[old_src]
        if fill is not None:
            out[grown] = fill.to(t.dtype)
        return out

    old_shape = layer.values.shape
    new_values = moved(layer.values.detach(), grown_values)
    state = optimizer.state.get(layer.values) if optimizer is not None else None
    new_state = {}
    if state:
        for name, t in state.items():
            if isinstance(t, torch.Tensor) and t.shape == old_shape:
                new_state[name] = moved(t)
    layer.set_structure(indptr, indices, new_values)
    for name, t in new_state.items():
        if state[name].shape == t.shape:
            state[name].copy_(t)
        else:
            state[name] = t


def _grown_values(n: int, regrow_init: str, init_std: float, rng: np.random.Generator) -> torch.Tensor | None:
    if regrow_init == "zero":
        return None
    if regrow_init == "normal":
        return torch.from_numpy(rng.normal(0.0, init_std, size=n))
    raise ValueError(f"regrow_init must be 'zero' or 'normal', got {regrow_init!r}")


def _replace(layer: TrulySparseLinear, optimizer: torch.optim.Optimizer | None, drop: np.ndarray,
             grow, grown_values) -> UpdateStats:
    """The one drop-then-grow step both methods share: remove ``drop``, add ``grow(ip, ix, keep, n)``
    new positions (flat keys), install the structure with the optimizer state moved and the grown
    connections' values from ``grown_values(n)`` (``None``: zero)."""
    ip, ix = layer.indptr.numpy(), layer.indices.numpy()
    n = int(drop.sum())
    if n == 0:
        return UpdateStats(0, 0, layer.n_connections)
    keep = ~drop
    new_keys = grow(ip, ix, keep, n)
    new_ip, new_ix, src = merge_structure(ip, ix, keep, new_keys, layer.in_features)
    apply_update(layer, new_ip, new_ix, src, optimizer, grown_values(n))
    return UpdateStats(n, n, layer.n_connections)


def set_update(layer: TrulySparseLinear, optimizer: torch.optim.Optimizer | None, zeta: float,
               rng: np.random.Generator | int, *, regrow_init: str = "zero", init_std: float = 0.1) -> UpdateStats:
    """One SET step on ``layer``: :func:`set_drop` then as many :func:`random_grow`, state moved.

    ``rng`` (a NumPy Generator, or a seed) draws the new positions (and, with ``regrow_init="normal"``,
    their N(0, init_std^2) weights, SET's NumPy code).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return _replace(layer, optimizer, set_drop(layer.values.detach().numpy(), zeta),
                    lambda ip, ix, keep, n: random_grow(ip, ix, keep, n, layer.in_features, rng),
                    lambda n: _grown_values(n, regrow_init, init_std, rng))


def rigl_update(layer: TrulySparseLinear, optimizer: torch.optim.Optimizer | None, fraction: float,
                x: torch.Tensor, gy: torch.Tensor, *, block_elements: int = 1 << 22, regrow_init: str = "zero",
                init_std: float = 0.1, rng: np.random.Generator | int | None = None) -> UpdateStats:
    """One RigL step on ``layer``: :func:`magnitude_drop` of ``fraction`` of the connections, then as many
    grown where ``|gy^T x|`` is largest (:func:`gradient_grow`; get ``x``, ``gy`` from
    :meth:`TrulySparseLinear.capture`). Grown weights start at zero (RigL), or with
    ``regrow_init="normal"`` at N(0, init_std^2) drawn from ``rng``; their optimizer state at zero."""
    drop = magnitude_drop(layer.values.detach().numpy(), fraction)
    if regrow_init != "zero" and rng is None and drop.any():
        raise ValueError(f"regrow_init {regrow_init!r} needs rng (a numpy Generator or a seed)")
    gen = rng if rng is None or isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return _replace(layer, optimizer, drop,
                    lambda ip, ix, keep, n: gradient_grow(ip, ix, keep, n, layer.in_features, x, gy,
                                                          block_elements=block_elements),
                    lambda n: _grown_values(n, regrow_init, init_std, gen))
