"""Data sets read from local files: Fashion-MNIST / MNIST (IDX) and CIFAR-10 (python pickles).

Nothing is ever downloaded. Fashion-MNIST's default location is Debian's
``dataset-fashion-mnist`` package; ``data_dir`` (``--data-dir``), or
``SPARSETOPO_DATA`` (a directory with one folder per data set), point
elsewhere. Every file is checked (headers against sizes, labels in range, train
and test alike) and a damaged one is named in the error. Features are
flattened to float32 and standardized with the *training* set's per-feature
mean and standard deviation, as SET's Keras code does, or divided by 255 into
[0, 1] (``input_scaling="unit"``).

Data sets are a registry, like methods and models: :func:`register_dataset`
adds one (a loader returning raw :class:`Splits`), and ``--dataset``, its help
and :func:`load_dataset` take what is registered. The three built-in ones are
registered at the end of this module.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import check_value
from .errors import FileFormatError, SparsetopoError
from .seeding import SeedLike, as_generator

__all__ = ["Dataset", "DatasetSpec", "DATASETS", "INPUT_SCALINGS", "Splits", "datasets_help", "load_dataset",
           "read_idx", "register_dataset", "resolve_data_dir", "unregister_dataset"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Splits(NamedTuple):
    """What a loader returns: raw (unscaled) features, one sample per row, and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    #: (channels, height, width) of the images the flattened features came from, or None.
    image_shape: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set.

    Attributes
    ----------
    name : str
        The ``dataset`` value (``--dataset``) that selects it.
    loader : callable
        ``loader(directory) -> Splits``; ``directory`` is None when the data set reads no files.
    default_dir : str or None
        Where its files are when neither ``data_dir`` nor ``SPARSETOPO_DATA`` is given.
    description : str
        One line for ``--dataset``'s help.
    how_to_get : str
        Advice shown when its files are missing.
    reads_files : bool
        False for a data set made in memory (no directory is resolved).
    """

    name: str
    loader: Callable[[Path | None], Splits]
    default_dir: str | None = None
    description: str = ""
    how_to_get: str = ""
    reads_files: bool = True


#: The registered data sets by name, in registration order (``--dataset``'s choices).
DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, loader: Callable[[Path | None], Splits], *, default_dir: str | None = None,
                     description: str = "", how_to_get: str = "", reads_files: bool = True) -> DatasetSpec:
    """Register a data set under ``name``; returns its :class:`DatasetSpec`.

    A name is registered once: registering it again is an error (unregister it first).
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise SparsetopoError(f"name must be a non-empty string without surrounding spaces; got {name!r}")
    if name in DATASETS:
        raise SparsetopoError(f"a data set named {name!r} is already registered")
    if not callable(loader):
        raise SparsetopoError(f"loader must be callable; got {loader!r}")
    spec = DatasetSpec(name, loader, default_dir, description, how_to_get, reads_files)
    DATASETS[name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    """Remove a registered data set (tests, plugins replacing one)."""
    if DATASETS.pop(name, None) is None:
        raise SparsetopoError(f"no data set named {name!r} is registered")


def datasets_help() -> str:
    """``fashion-mnist (...), mnist (...) or cifar10 (...)``: the registered data sets, for ``--dataset``'s help."""
    items = [f"{s.name} ({s.description})" if s.description else s.name for s in DATASETS.values()]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _spec(dataset: str) -> DatasetSpec:
    """The one check of a ``dataset`` parameter."""
    if dataset not in DATASETS:
        raise SparsetopoError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    return DATASETS[dataset]


@dataclass(frozen=True)
class Dataset:
    """Standardized, flattened arrays ready for an MLP."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    #: (channels, height, width) of the images the flattened features came from.
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array, checking magic number and length."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise FileFormatError(path, f"cannot read IDX file ({type(exc).__name__}: {exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise FileFormatError(path, f"wrong magic number {raw[:4].hex() or '(empty file)'}; not an IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise FileFormatError(path, "truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FileFormatError(path, f"truncated or oversized IDX file: header promises {dims} "
                                    f"({expected} bytes of data), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def resolve_data_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$SPARSETOPO_DATA/<dataset>``, else the dataset's default directory.

    ``SPARSETOPO_DATA`` names a directory holding one folder per data set
    (``fashion-mnist/``, ``mnist/``, ``cifar10/``), so that setting it for one
    data set never hands another data set's files to a run.
    """
    spec = _spec(dataset)
    if data_dir:
        return Path(data_dir)
    root = os.environ.get("SPARSETOPO_DATA")
    if root:
        sub = Path(root) / dataset
        if not sub.is_dir():
            folders = ", ".join(d + "/" for d, s in DATASETS.items() if s.reads_files)
            raise FileNotFoundError(
                f"SPARSETOPO_DATA={root}: no {dataset}/ folder there; SPARSETOPO_DATA names a directory with one "
                f"folder per data set ({folders}); or give data_dir")
        return sub
    if not spec.default_dir:
        raise FileNotFoundError(f"{dataset} has no default location: give data_dir or set SPARSETOPO_DATA")
    return Path(spec.default_dir)


def _find(directory: Path, stem: str, dataset: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{dataset}: {stem}(.gz) not found in {directory}; {DATASETS[dataset].how_to_get}, "
        "or give data_dir / set SPARSETOPO_DATA"
    )


def _load_idx_set(directory: Path, dataset: str):
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img_path = _find(directory, f"{prefix}-images-idx3-ubyte", dataset)
        lab_path = _find(directory, f"{prefix}-labels-idx1-ubyte", dataset)
        images, labels = read_idx(img_path), read_idx(lab_path)
        if labels.ndim != 1:
            raise FileFormatError(lab_path, f"labels must be 1-D, got shape {labels.shape}")
        if images.ndim < 2 or images.shape[0] != labels.shape[0]:
            raise FileFormatError(img_path, f"{images.shape[0]} images but {lab_path.name} has "
                                            f"{labels.shape[0]} labels")
        _check_labels(lab_path, labels)
        parts[split] = (img_path, images, labels.astype(np.int64))
    (tr_path, tr_img, tr_lab), (te_path, te_img, te_lab) = parts["train"], parts["test"]
    if tr_img.shape[1:] != te_img.shape[1:]:
        raise FileFormatError(te_path, f"test images are {'x'.join(map(str, te_img.shape[1:]))} but the training "
                                       f"images in {tr_path.name} are {'x'.join(map(str, tr_img.shape[1:]))}")
    shape = (1, *tr_img.shape[1:]) if tr_img.ndim == 3 else tuple(tr_img.shape[1:])
    return (tr_img.reshape(len(tr_img), -1), tr_lab), (te_img.reshape(len(te_img), -1), te_lab), shape


#: Every supported data set has ten classes; a label outside 0..9 is a damaged file.
N_CLASSES = 10


def _check_labels(path, labels: np.ndarray) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise FileFormatError(path, f"labels must be in 0..{N_CLASSES - 1}, found {labels.min()}..{labels.max()}")


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches only: plain containers and NumPy arrays, never arbitrary code."""

    _ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
    _ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar10(directory: Path):
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"

    def batch(name: str):
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"cifar10: {name} not found in {directory}; {DATASETS['cifar10'].how_to_get}")
        try:
            with open(path, "rb") as f:
                d = _SafeUnpickler(f, encoding="bytes").load()
            data = np.asarray(d[b"data"], dtype=np.uint8)
            labels = np.asarray(d[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError,
                UnicodeDecodeError, OverflowError, MemoryError) as exc:
            raise FileFormatError(path, f"not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise FileFormatError(path, f"expected (N, 3072) data with N labels, got {data.shape} and {len(labels)}")
        _check_labels(path, labels)
        return data, labels

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    return (x_train, y_train), batch("test_batch")


#: How pixels become features: ``standardize`` -- per-feature mean and standard
#: deviation of the training split (SET's Keras code); ``unit`` -- divided by
#: 255 into [0, 1] (the paper's published networks: non-negative inputs, so a
#: first-layer neuron with only negative weights is dead from the start).
INPUT_SCALINGS = ("standardize", "unit")


def load_dataset(dataset: str = "fashion-mnist", data_dir: str | os.PathLike | None = None, *,
                 val_fraction: float = 0.0, seed: SeedLike = 0, limit_train: int | None = None,
                 limit_test: int | None = None, input_scaling: str = "standardize") -> Dataset:
    """Load and standardize a registered data set.

    Parameters
    ----------
    dataset : str
        A name in :data:`DATASETS`: ``"fashion-mnist"``, ``"mnist"``, ``"cifar10"`` or one registered
        with :func:`register_dataset`.
    data_dir : path, optional
        Overrides ``$SPARSETOPO_DATA`` and the default location.
    val_fraction : float
        Fraction of the training set held out for validation (0 for none).
    seed : int or Generator
        Seed of the validation split.
    limit_train, limit_test : int, optional
        Keep only the first samples (quick experiments and smoke tests).
    input_scaling : {"standardize", "unit"}
        See ``INPUT_SCALINGS``.
    """
    spec = _spec(dataset)
    _check_arguments(val_fraction, limit_train, limit_test, input_scaling)
    raw = _read_splits(spec, data_dir)
    x_tr, y_tr = raw.x_train[:limit_train], raw.y_train[:limit_train]  # [:None] keeps everything
    x_te, y_te = raw.x_test[:limit_test].astype(np.float32), raw.y_test[:limit_test]
    (x_tr, y_tr), (x_val, y_val) = _hold_out(x_tr.astype(np.float32), y_tr, val_fraction, seed)
    mean, std = _scaling(x_tr, input_scaling)

    def norm(x):
        return None if x is None else ((x - mean) / std).astype(np.float32)

    return Dataset(name=dataset, image_shape=raw.image_shape, x_train=norm(x_tr), y_train=y_tr, x_test=norm(x_te),
                   y_test=y_te, x_val=norm(x_val), y_val=y_val)


def _check_arguments(val_fraction, limit_train, limit_test, input_scaling) -> None:
    """load_dataset's settings, checked before any file is read (the rules of config.check_value)."""
    check_value("input_scaling", input_scaling, str, {"choices": INPUT_SCALINGS})
    check_value("val_fraction", val_fraction, float, {"min": 0.0, "lt": 1.0})
    check_value("limit_train", limit_train, int | None, {"min": 1})
    check_value("limit_test", limit_test, int | None, {"min": 1})


def _read_splits(spec: DatasetSpec, data_dir) -> Splits:
    """The loader's raw splits, from the resolved directory (None for a data set made in memory)."""
    directory = None
    if spec.reads_files:
        directory = resolve_data_dir(spec.name, data_dir)
        if not directory.is_dir():
            advice = f"{spec.how_to_get}, or give" if spec.how_to_get else "give"
            raise FileNotFoundError(f"{spec.name}: data directory {directory} does not exist; {advice} "
                                    "data_dir / set SPARSETOPO_DATA")
    raw = Splits(*spec.loader(directory))
    _check_splits(spec.name, raw)
    return raw


def _check_splits(name: str, raw: Splits) -> None:
    """What a registered loader returns fits what training needs: (N, features) rows, N integer labels >= 0."""
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
            raise SparsetopoError(f"data set {name!r}: the {split} split must be (N, features) features and N "
                                  f"integer labels >= 0; got {x.shape} features and {y.shape} {y.dtype} labels")
    if np.shape(raw.x_train)[1] != np.shape(raw.x_test)[1]:
        raise SparsetopoError(f"data set {name!r}: train and test have {np.shape(raw.x_train)[1]} and "
                              f"{np.shape(raw.x_test)[1]} features")


def _hold_out(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: SeedLike):
    """``((x_train, y_train), (x_val, y_val))``: a seeded random fraction held out, both in their original order."""
    if val_fraction <= 0:
        return (x, y), (None, None)
    order = as_generator(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val_idx, tr_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (x[tr_idx], y[tr_idx]), (x[val_idx], y[val_idx])


def _scaling(x_train: np.ndarray, input_scaling: str):
    """``(mean, std)`` that features are normalized with."""
    if input_scaling == "unit":
        return np.float32(0.0), np.float32(255.0)
    # Per-feature statistics of the training split only; constant pixels keep std 1.
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std < 1e-8] = 1.0
    return mean, std


# ------------------------------------------------------------ the built-in data sets
def _idx_loader(name: str) -> Callable[[Path | None], Splits]:
    def load(directory: Path | None) -> Splits:
        (x_tr, y_tr), (x_te, y_te), shape = _load_idx_set(directory, name)
        return Splits(x_tr, y_tr, x_te, y_te, shape)
    return load


def _cifar10_loader(directory: Path | None) -> Splits:
    (x_tr, y_tr), (x_te, y_te) = _load_cifar10(directory)
    return Splits(x_tr, y_tr, x_te, y_te, (3, 32, 32))  # the python batches hold channel-major 3x32x32 rows


register_dataset("fashion-mnist", _idx_loader("fashion-mnist"), default_dir="/usr/share/datasets/fashion-mnist",
                 description="Zalando's clothing images, 28x28 grey",
                 how_to_get="install Debian's package: apt-get install dataset-fashion-mnist (make setup does it)")
register_dataset("mnist", _idx_loader("mnist"), default_dir="/usr/share/datasets/mnist",
                 description="handwritten digits, 28x28 grey",
                 how_to_get="put train-images-idx3-ubyte(.gz) and friends there")
register_dataset("cifar10", _cifar10_loader, description="32x32 colour images, no default location",
                 how_to_get="unpack the CIFAR-10 'python version' (data_batch_1..5, test_batch) there")
