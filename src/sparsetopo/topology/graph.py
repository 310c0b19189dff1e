"""Topologies that are graphs: which *stream* each layer reads and which one it writes into.

A stream is a set of channels (neurons) that keep their identity from one
layer to another. Stream 0 is the network's input. A plain layer opens a new
stream with its outputs; a residual stream is one that several layers add
into (``x + f(x)``, a projection shortcut and a block's last convolution):
batch norm, activations, pooling and flatten act per channel, so they keep a
stream's channels where they are and do not start a new one.

``streams[k] = (r, w)``: layer ``k`` reads stream ``r`` and writes into stream
``w``. A chain is ``(k, k + 1)`` for every ``k``; :class:`~.core.Topology`
stores a chain as it always did (``streams`` is then ``None``), so that chains
keep their files, fingerprints and NNSTD values.

Layers are listed in an order in which every stream a layer reads has already
been written (a topological order, as ``torch.fx`` lists a model's calls).
"""

from __future__ import annotations

from collections.abc import Sequence

import scipy.sparse as ss

from ..errors import SparsetopoError

__all__ = ["LayerShapes", "check_streams", "graph_blocks", "is_chain", "openers"]


class LayerShapes(list):
    """A network's weight shapes that know the graph they belong to: ``streams`` (``None``: a chain).

    A masked residual network's ``layer_shapes`` is one, so that code drawing a starting topology
    from the shapes alone (:func:`~sparsetopo.topology.random_topology`, hence every method's
    ``initial_topology``) draws a graph without having to be told.
    """

    def __init__(self, shapes, streams: Sequence[tuple[int, int]] | None = None):
        super().__init__(shapes)
        self.streams = None if streams is None else [tuple(s) for s in streams]


def is_chain(streams: Sequence[tuple[int, int]]) -> bool:
    """Whether ``streams`` describe a plain chain: layer ``k`` reads stream ``k`` and writes ``k + 1``."""
    return all(tuple(s) == (k, k + 1) for k, s in enumerate(streams))


def check_streams(streams: Sequence[Sequence[int]], n_layers: int) -> tuple[tuple[int, int], ...]:
    """``streams`` as a tuple of ``(read, write)`` integer pairs, checked to form a graph in layer order.

    Every stream but the input (0) must be written by some layer, stream numbers must be
    ``0 .. n_streams - 1``, and a layer may read only the input or a stream an earlier layer wrote.
    """
    if len(streams) != n_layers:
        raise SparsetopoError(f"streams must have one (read, write) pair per layer ({n_layers}); got {len(streams)}")
    pairs = []
    for k, s in enumerate(streams):
        try:
            r, w = (int(v) for v in s)
        except (TypeError, ValueError):
            raise SparsetopoError(f"streams[{k}] must be a pair of integers (read, write); got {s!r}") from None
        if r < 0 or w < 0:
            raise SparsetopoError(f"streams[{k}] must hold stream numbers >= 0; got {(r, w)}")
        pairs.append((r, w))
    written: set[int] = set()
    for k, (r, w) in enumerate(pairs):
        if r != 0 and r not in written:
            raise SparsetopoError(f"layer {k} reads stream {r}, which no earlier layer writes; list the layers "
                                  "in an order where each stream is written before it is read")
        written.add(w)
    used = written | {0}
    missing = sorted(set(range(max(used) + 1)) - used)
    if missing:
        raise SparsetopoError(f"streams must be numbered 0 .. n_streams - 1 with every one but the input written; "
                              f"stream {missing[0]} is never written")
    return tuple(pairs)


def stream_sizes(csr: Sequence[ss.csr_matrix], streams: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Channels per written stream; refuses a stream whose writers disagree."""
    sizes: dict[int, int] = {}
    first: dict[int, int] = {}
    for k, (_, w) in enumerate(streams):
        n = csr[k].shape[0]
        if w in sizes and sizes[w] != n:
            raise SparsetopoError(f"layers {first[w]} and {k} both write into stream {w} but have {sizes[w]} and {n} "
                                  "outputs; layers that add into one stream need as many outputs as it has channels")
        sizes.setdefault(w, n)
        first.setdefault(w, k)
    return sizes


def graph_blocks(csr: Sequence[ss.csr_matrix], kerns: Sequence[tuple[int, int] | None],
                 streams: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Per layer, how many flattened inputs make one input unit (as ``Topology.blocks``), checking each
    layer's input units against the channels of the stream it reads."""
    sizes = stream_sizes(csr, streams)
    blocks = []
    for k, (m, kern) in enumerate(zip(csr, kerns)):
        n_in, r = m.shape[1], streams[k][0]
        if kern is not None:
            block = kern[0] * kern[1]
        elif r in sizes and n_in != sizes[r] and n_in % sizes[r] == 0:
            block = n_in // sizes[r]  # a flattened feature map per channel
        else:
            block = 1
        if n_in % block:
            raise SparsetopoError(f"layer {k}: {n_in} inputs are not a whole number of {kern} kernels")
        if r not in sizes:
            sizes[r] = n_in // block  # the network input: its first reader says how many channels it has
        if n_in // block != sizes[r]:
            raise SparsetopoError(f"layer {k} has shape {m.shape} (n_out, n_in) so it expects {n_in // block} input "
                                  f"units (blocks of {block}), but the stream {r} it reads has {sizes[r]} channels")
        blocks.append(block)
    return tuple(blocks)


def openers(streams: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    """Per written stream, the layers that *open* it: those writing into it before any layer reads it.

    Their inputs never depend on the stream itself, so its matching can be chosen on their costs;
    every later writer reads (through some path) the stream it writes and is scored under that matching.
    """
    first_reader: dict[int, int] = {}
    for k, (r, _) in enumerate(streams):
        first_reader.setdefault(r, k)
    found: dict[int, list[int]] = {}
    for k, (_, w) in enumerate(streams):
        if k < first_reader.get(w, len(streams)):
            found.setdefault(w, []).append(k)
    return found
