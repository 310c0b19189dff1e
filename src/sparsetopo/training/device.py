"""Where a run computes: the ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) checked and
resolved to a :class:`torch.device`.

Random numbers are always drawn from the run's seeded CPU generators and then moved to the device
(:mod:`sparsetopo.methods`, :class:`~sparsetopo.models.SeededDropout`), so the draws -- the topology, the
data order, SET's regrowth, dropout -- are the same on every device; only float rounding differs. The
truly sparse engine's numba kernels and NNSTD run on the CPU only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import SparsetopoError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEVICE_FORMS", "check_device_spelling", "resolve_device"]

#: How a device may be written (the ``--device`` help and error messages).
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
_SPELLING = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_spelling(spec, label: str = "device") -> str:
    """``spec`` if it is written as a device (:data:`DEVICE_FORMS`), else a :class:`SparsetopoError`
    naming ``label``; needs no torch (whether the device exists is :func:`resolve_device`'s question)."""
    if not isinstance(spec, str) or not _SPELLING.fullmatch(spec):
        raise SparsetopoError(f"{label} must be one of {DEVICE_FORMS}; got {spec!r}")
    return spec


def _available() -> str:
    """The devices this machine offers, as a user writes them."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        found.append("cuda" if n == 1 else f"cuda, cuda:0 ... cuda:{n - 1}")
        if n == 1:
            found.append("cuda:0")
    if _mps_available():
        found.append("mps")
    return ", ".join(found)


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str, label: str = "device", *, cpu_only: str | None = None) -> torch.device:
    """The :class:`torch.device` that ``spec`` names on this machine.

    Parameters
    ----------
    spec : str
        ``auto`` (CUDA device 0 when torch sees one, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    label : str
        How errors name the setting (``--device`` on the command line, ``device`` in a config).
    cpu_only : str, optional
        Why this run can only use the CPU (e.g. the truly sparse engine): ``auto`` then resolves to the
        CPU and any other device is refused with this reason.

    Raises
    ------
    SparsetopoError
        ``spec`` is not a device's spelling, names a device torch does not see (no CUDA, ``cuda:N`` past
        the last device, no MPS), or is not the CPU under ``cpu_only``; the message names ``label``, what
        was given and what this machine offers.
    """
    import torch

    check_device_spelling(spec, label)
    if spec == "auto":
        return torch.device("cuda" if cpu_only is None and torch.cuda.is_available() else "cpu")
    if cpu_only is not None and spec != "cpu":
        raise SparsetopoError(f"{label} {spec}: {cpu_only}; use {label} cpu (or auto)")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SparsetopoError(f"{label} {spec}: no CUDA device (torch.cuda.is_available() is False; torch "
                                  f"{torch.__version__}); available: {_available()}")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise SparsetopoError(f"{label} {spec}: torch sees {torch.cuda.device_count()} CUDA device(s); "
                                  f"available: {_available()}")
        return torch.device("cuda", index)
    if spec == "mps" and not _mps_available():
        raise SparsetopoError(f"{label} mps: no MPS device (torch.backends.mps.is_available() is False); "
                              f"available: {_available()}")
    return torch.device(spec)
