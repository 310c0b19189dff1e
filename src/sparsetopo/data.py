"""Data sets read from local files: Fashion-MNIST / MNIST (IDX) and CIFAR-10 (python pickles).

Nothing is ever downloaded. Fashion-MNIST's default location is Debian's
``dataset-fashion-mnist`` package; ``--data-dir``, or ``SPARSETOPO_DATA`` (a
directory with one folder per data set), point elsewhere. Every file is
checked (headers against sizes, labels in range, train and test alike) and a
damaged one is named in the error. Features are flattened to float32 and
standardized with the *training* set's per-feature mean and standard
deviation, as SET's Keras code
does, or divided by 255 into [0, 1] (``input_scaling="unit"``).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FileFormatError, SparsetopoError
from .seeding import SeedLike, as_generator

__all__ = ["Dataset", "DATASETS", "INPUT_SCALINGS", "load_dataset", "read_idx", "resolve_data_dir"]

DEFAULT_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
    "cifar10": "",
}
DATASETS = tuple(DEFAULT_DIRS)
_HOW_TO_GET = {
    "fashion-mnist": "install Debian's package: apt-get install dataset-fashion-mnist (make setup does it)",
    "mnist": "put train-images-idx3-ubyte(.gz) and friends there",
    "cifar10": "unpack the CIFAR-10 'python version' (data_batch_1..5, test_batch) there",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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
    if dataset not in DEFAULT_DIRS:
        raise SparsetopoError(f"--dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    if data_dir:
        return Path(data_dir)
    root = os.environ.get("SPARSETOPO_DATA")
    if root:
        sub = Path(root) / dataset
        if not sub.is_dir():
            raise FileNotFoundError(
                f"SPARSETOPO_DATA={root}: no {dataset}/ folder there; SPARSETOPO_DATA names a directory with one "
                f"folder per data set ({', '.join(d + '/' for d in DATASETS)}); or pass --data-dir")
        return sub
    if not DEFAULT_DIRS[dataset]:
        raise FileNotFoundError(f"{dataset} has no default location: give --data-dir or set SPARSETOPO_DATA")
    return Path(DEFAULT_DIRS[dataset])


def _find(directory: Path, stem: str, dataset: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{dataset}: {stem}(.gz) not found in {directory}; {_HOW_TO_GET[dataset]}, "
        "or pass --data-dir / set SPARSETOPO_DATA"
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
            raise FileNotFoundError(f"cifar10: {name} not found in {directory}; {_HOW_TO_GET['cifar10']}")
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
    """Load and standardize a data set.

    Parameters
    ----------
    dataset : {"fashion-mnist", "mnist", "cifar10"}
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
    if input_scaling not in INPUT_SCALINGS:
        raise SparsetopoError(f"--input-scaling must be one of {', '.join(INPUT_SCALINGS)}; got {input_scaling!r}")
    if not 0 <= val_fraction < 1:
        raise SparsetopoError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    directory = resolve_data_dir(dataset, data_dir)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{dataset}: data directory {directory} does not exist; {_HOW_TO_GET[dataset]}, "
            "or pass --data-dir / set SPARSETOPO_DATA"
        )
    if dataset == "cifar10":
        (x_tr, y_tr), (x_te, y_te) = _load_cifar10(directory)
        image_shape = (3, 32, 32)  # the python batches hold channel-major 3x32x32 rows
    else:
        (x_tr, y_tr), (x_te, y_te), image_shape = _load_idx_set(directory, dataset)
    for name, limit in (("--limit-train", limit_train), ("--limit-test", limit_test)):
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise SparsetopoError(f"{name} must be an integer >= 1; got {limit!r}")
    if limit_train:
        x_tr, y_tr = x_tr[:limit_train], y_tr[:limit_train]
    if limit_test:
        x_te, y_te = x_te[:limit_test], y_te[:limit_test]
    x_tr = x_tr.astype(np.float32)
    x_te = x_te.astype(np.float32)
    x_val = y_val = None
    if val_fraction > 0:
        rng = as_generator(seed)
        order = rng.permutation(len(x_tr))
        n_val = int(round(val_fraction * len(x_tr)))
        val_idx, tr_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        x_val, y_val = x_tr[val_idx], y_tr[val_idx]
        x_tr, y_tr = x_tr[tr_idx], y_tr[tr_idx]
    if input_scaling == "unit":
        mean, std = np.float32(0.0), np.float32(255.0)
    else:
        # Per-feature statistics of the training split only; constant pixels keep std 1.
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std < 1e-8] = 1.0

    def norm(x):
        return None if x is None else ((x - mean) / std).astype(np.float32)

    return Dataset(name=dataset, image_shape=image_shape, x_train=norm(x_tr), y_train=y_tr, x_test=norm(x_te),
                   y_test=y_te,
                   x_val=norm(x_val), y_val=y_val)
