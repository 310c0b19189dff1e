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

A ``dataset`` ending in ``.mat`` or ``.npz`` is a file instead (:func:`is_dataset_file`):
a tabular data set, one sample per row. A ``.mat`` file has scikit-feature's layout
(``X`` samples x features, ``Y`` a label vector; read with ``scipy.io.loadmat``), an
``.npz`` archive the arrays ``X`` and ``y`` (read without pickles). Labels become
0..K-1 in the order of their sorted values; a seeded 2/3 of the samples train and
1/3 test, as SET's code splits the lung data.
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

__all__ = ["Dataset", "DatasetSpec", "DATASETS", "DATASET_FILE_SUFFIXES", "INPUT_SCALINGS", "Splits", "check_dataset",
           "datasets_help", "is_dataset_file", "load_dataset", "read_idx", "read_table", "register_dataset",
           "resolve_data_dir", "unregister_dataset"]

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


#: A ``dataset`` value ending in one of these (any case) is a data file, not a registered name.
DATASET_FILE_SUFFIXES = (".mat", ".npz")


def is_dataset_file(dataset: object) -> bool:
    """Whether ``dataset`` names a data file (a path ending in ``.mat`` or ``.npz``) rather than a registered set."""
    return isinstance(dataset, str) and dataset.lower().endswith(DATASET_FILE_SUFFIXES)


def check_dataset(dataset: object, label: str = "dataset") -> None:
    """Raise :class:`SparsetopoError` unless ``dataset`` is a registered name or an existing data file.

    ``label`` names the parameter in the message (``--dataset`` on the command line).
    """
    if is_dataset_file(dataset):
        if not Path(dataset).is_file():
            state = "is not a regular file" if Path(dataset).exists() else "does not exist"
            raise SparsetopoError(f"{label}: data file {dataset} {state}")
        return
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise SparsetopoError(f"{label} must be one of {', '.join(DATASETS)}; got {dataset!r} (or a data file: "
                              f"a path ending in {' or '.join(DATASET_FILE_SUFFIXES)})")


def _spec(dataset: str) -> DatasetSpec:
    """The one check of a registered ``dataset`` name."""
    check_dataset(dataset)
    if dataset not in DATASETS:
        raise SparsetopoError(f"dataset {dataset!r} is a data file, not a registered data set")
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
        with :func:`register_dataset`; or the path of a ``.mat`` / ``.npz`` data file (:func:`read_table`),
        split 2/3 for training and 1/3 for testing by ``seed``.
    data_dir : path, optional
        Overrides ``$SPARSETOPO_DATA`` and the default location (registered data sets only).
    val_fraction : float
        Fraction of the training set held out for validation (0 for none).
    seed : int or Generator
        Seed of the validation split (and of a data file's train/test split).
    limit_train, limit_test : int, optional
        Keep only the first samples (quick experiments and smoke tests).
    input_scaling : {"standardize", "unit"}
        See ``INPUT_SCALINGS``.
    """
    check_dataset(dataset)
    _check_arguments(val_fraction, limit_train, limit_test, input_scaling)
    if is_dataset_file(dataset):
        _check_file_arguments(dataset, data_dir, input_scaling)
        seed = as_generator(seed)  # one stream: the train/test split, then the validation split
        raw = _table_splits(dataset, seed)
    else:
        raw = _read_splits(_spec(dataset), data_dir)
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


def _check_file_arguments(dataset: str, data_dir, input_scaling: str) -> None:
    """Settings that mean nothing for a data file are refused, never ignored."""
    if data_dir:
        raise SparsetopoError(f"data_dir applies to the registered data sets ({', '.join(DATASETS)}); dataset "
                              f"{dataset} is a file, give no data_dir; got {str(data_dir)!r}")
    if input_scaling != "standardize":
        raise SparsetopoError(f"input_scaling must be standardize for a data file (unit divides pixels by 255); "
                              f"dataset {dataset}, got {input_scaling!r}")


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


# ------------------------------------------------------------ tabular data files
def read_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A tabular data file as ``(X, labels)``: float32 samples x features and int64 labels 0..K-1.

    ``.mat``: scikit-feature's layout, the variables ``X`` (samples x features, dense or
    sparse) and ``Y`` (a column or row vector of labels), read with ``scipy.io.loadmat``
    (MATLAB v7.3 files are HDF5, which it cannot read). ``.npz``: the arrays ``X`` and
    ``y``, read without unpickling anything. Labels are numbers or strings, mapped to
    0..K-1 in the order of their sorted unique values.

    Raises
    ------
    FileFormatError
        Naming the file: a variable missing, X and the labels of different lengths, X not
        numeric or not finite, fewer than two classes, an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file" if not path.exists() else f"{path}: not a regular file")
    x, y = (_read_mat if path.suffix.lower() == ".mat" else _read_npz)(path)
    return _check_table(path, x, y)


#: What a damaged .mat file makes scipy.io.loadmat raise.
_MAT_ERRORS = (ValueError, TypeError, OSError, EOFError, KeyError, IndexError, AttributeError, zlib.error,
               UnicodeDecodeError, OverflowError, MemoryError)


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io
    import scipy.sparse

    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:  # scipy's answer to a v7.3 file
        raise FileFormatError(path, "a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; save it with "
                                    "save(..., '-v7') or as an .npz archive with arrays X and y") from None
    except _MAT_ERRORS as exc:
        raise FileFormatError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("X", "Y") if k not in mat]
    if missing:
        found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise FileFormatError(path, f"no variable {' or '.join(missing)}; a .mat data set holds X (samples x "
                                    f"features) and Y (labels), as scikit-feature's files do; variables found: {found}")
    x = mat["X"]
    return (x.toarray() if scipy.sparse.issparse(x) else x), mat["Y"]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ._npz import NpzArchive

    with NpzArchive(path, "a data set (arrays X and y)") as z:
        missing = [k for k in ("X", "y") if k not in z]
        if missing:
            raise FileFormatError(path, f"no array {' or '.join(missing)}; an .npz data set holds X (samples x "
                                        f"features) and y (labels); arrays found: {', '.join(z.names) or 'none'}")
        return z.read("X"), z.read("y")


def _check_table(path: Path, x, y) -> tuple[np.ndarray, np.ndarray]:
    """``(X as float32, labels 0..K-1 as int64)``, or a FileFormatError naming ``path``."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or 0 in x.shape:
        raise FileFormatError(path, f"X must be a non-empty samples x features matrix; got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise FileFormatError(path, f"X must be numeric; got {x.dtype} values")
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()  # MATLAB's column (or row) vector
    if y.ndim != 1:
        raise FileFormatError(path, f"the labels must be a vector (n x 1 or 1 x n); got shape {y.shape}")
    if len(x) != len(y):
        raise FileFormatError(path, f"X has {len(x)} samples (rows) but the labels have {len(y)} entries")
    bad = int(np.count_nonzero(~np.isfinite(x))) if x.dtype.kind == "f" else 0
    if bad:
        raise FileFormatError(path, f"X holds {bad} NaN or infinite values; every feature must be a finite number")
    if y.dtype.kind not in "biufUS" or (y.dtype.kind == "f" and not (np.isfinite(y) & (y == np.round(y))).all()):
        raise FileFormatError(path, f"the labels must be integers or strings (class labels); got {y.dtype} values")
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise FileFormatError(path, f"the labels hold a single class ({classes[0].item()!r}); classification needs at "
                                    "least two")
    if len(x) < 2:
        raise FileFormatError(path, f"{len(x)} sample: a training and a test split need at least two")
    return x.astype(np.float32), labels.astype(np.int64).ravel()


def _table_splits(dataset: str, rng: np.random.Generator) -> Splits:
    """A data file's samples split at random, 2/3 for training and 1/3 for testing, as SET's code splits
    the lung data (its ``__main__``): a shuffled order, the first ``int(n * 2 / 3)`` train."""
    x, y = read_table(dataset)
    order = rng.permutation(len(x))
    n_train = int(len(x) * 2 / 3)
    tr, te = order[:n_train], order[n_train:]
    return Splits(x[tr], y[tr], x[te], y[te])


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
