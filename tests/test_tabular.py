"""Issue 18, item 4: tabular data sets read from ``.mat`` (scikit-feature's layout) and ``.npz`` files."""

import re

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from sparsetopo import data
from sparsetopo.errors import FileFormatError, SparsetopoError
from sparsetopo.training import TrainConfig

runner = CliRunner()


def blobs(n=120, features=20, classes=3, seed=0, labels_from=1):
    """Gaussian blobs, one per class, labelled ``labels_from``.. (scikit-feature's files count from 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(classes, features))
    y = np.arange(n) % classes
    x = centres[y] + rng.normal(size=(n, features)) + 50.0  # far from zero mean: standardisation shows
    return x, y + labels_from


def write_mat(path, x, y, **extra):
    scipy.io.savemat(path, {"X": x, "Y": y, **extra})
    return path


@pytest.fixture
def lung_like(tmp_path):
    """A small stand-in for SET's lung.mat: X samples x features, Y a column vector labelled 1..5."""
    x, y = blobs(n=60, features=30, classes=5)
    return write_mat(tmp_path / "small.mat", x, y.reshape(-1, 1).astype(np.uint8)), x, y


def test_mat_file_is_split_two_thirds_and_standardised_with_training_statistics(lung_like):
    path, x, y = lung_like
    d = data.load_dataset(str(path), seed=7)
    assert len(d.x_train) == 40 and len(d.x_test) == 20  # int(60 * 2 / 3) train, the rest test
    assert d.n_features == 30 and d.n_classes == 5 and d.x_val is None
    assert sorted(set(d.y_train) | set(d.y_test)) == [0, 1, 2, 3, 4]  # labels 1..5 become 0..4
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(d.x_train.std(0), 1, atol=1e-3)
    assert abs(d.x_test.mean()) > 1e-3  # scaled with the training split's statistics, not its own
    # every sample lands in exactly one split, with its own label
    train_rows = {tuple(np.round(r, 3)) for r in d.x_train}
    assert len(train_rows) == 40 and not train_rows & {tuple(np.round(r, 3)) for r in d.x_test}


def test_the_split_follows_the_data_seed(lung_like):
    path = str(lung_like[0])
    a, b, c = (data.load_dataset(path, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)
    cfg_a, cfg_b = TrainConfig(dataset=path, data_seed=3), TrainConfig(dataset=path, data_seed=4)
    assert cfg_a.named_seed("data") != cfg_b.named_seed("data")


def test_validation_split_and_limits(lung_like):
    path = str(lung_like[0])
    d = data.load_dataset(path, seed=0, val_fraction=0.25, limit_train=32, limit_test=10)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (24, 8, 10)
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-4)  # statistics of what trains, not of val


def test_npz_file_and_row_vector_labels(tmp_path):
    x, y = blobs(n=30, classes=2, labels_from=0)
    np.savez(tmp_path / "t.npz", X=x, y=np.where(y == 0, "cat", "dog"))
    d = data.load_dataset(str(tmp_path / "t.npz"))
    assert d.n_classes == 2 and d.x_train.dtype == np.float32 and len(d.x_train) == 20
    write_mat(tmp_path / "row.mat", x, (y + 3).reshape(1, -1).astype(float))  # a row vector, labels 3 and 4
    xs, labels = data.read_table(tmp_path / "row.mat")
    np.testing.assert_array_equal(labels, y)


def test_constant_feature_keeps_std_one(tmp_path):
    x, y = blobs(n=30)
    x[:, 0] = 5.0
    d = data.load_dataset(str(write_mat(tmp_path / "c.mat", x, y.reshape(-1, 1))))
    assert np.all(d.x_train[:, 0] == 0) and np.isfinite(d.x_test).all()


def _v73(path):
    """The header MATLAB writes for a v7.3 (HDF5) file: scipy.io.loadmat refuses it."""
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    path.write_bytes(head + b"\0" * 512)
    return path


def _savemat(**arrays):
    def make(p):
        scipy.io.savemat(p / "a.mat", arrays)
        return p / "a.mat"
    return make


def _savez(**arrays):
    def make(p):
        np.savez(p / "a.npz", **arrays)
        return p / "a.npz"
    return make


def _raw(name, content: bytes):
    def make(p):
        (p / name).write_bytes(content)
        return p / name
    return make


X, Y = blobs()


@pytest.mark.parametrize("make, message", [
    (_savemat(X=X), r"no variable Y; a \.mat data set holds X"),
    (_savemat(Y=np.ones(3)), "no variable X; .*found: Y"),
    (_savemat(X=X, Y=Y[:-1].reshape(-1, 1)), r"X has 120 samples \(rows\) but the labels have 119 entries"),
    (_savemat(X=np.array([["a", "b"], ["c", "d"]]), Y=np.array([[1], [2]])), "X must be numeric; got <U1 values"),
    (_savemat(X=np.where(np.eye(4) > 0, np.nan, 1.0), Y=np.array([[1], [2], [1], [2]])),
     "X holds 4 NaN or infinite values"),
    (_savemat(X=X, Y=np.ones((120, 1))), r"the labels hold a single class \(1\.0\)"),
    (_savemat(X=X, Y=np.ones((120, 2))), r"the labels must be a vector .* shape \(120, 2\)"),
    (_savemat(X=X, Y=np.linspace(0, 1, 120).reshape(-1, 1)), "the labels must be integers or strings"),
    (lambda p: _v73(p / "a.mat"), r"a MATLAB v7\.3 \(HDF5\) file, which scipy\.io\.loadmat cannot read"),
    (_raw("a.mat", b"hello world" * 3), r"not a readable MATLAB \.mat file"),
    (_savez(X=X), r"no array y; an \.npz data set holds X"),
    (_savez(X=X, y=np.array([{"k": 1}] * 120, dtype=object)),
     r"array 'y' holds Python objects \(pickled data\), which are never loaded"),
    (_raw("a.npz", b"X,y\n1,2\n"), "a text file"),
])
def test_bad_files_are_named(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(FileFormatError, match=f"^{re.escape(str(path))}: {message}"):
        data.load_dataset(str(path))


def test_file_settings_that_do_not_apply_are_refused(lung_like, tmp_path):
    path = str(lung_like[0])
    with pytest.raises(SparsetopoError, match="data_dir applies to the registered data sets"):
        data.load_dataset(path, data_dir=tmp_path)
    with pytest.raises(SparsetopoError, match="input_scaling must be standardize for a data file"):
        data.load_dataset(path, input_scaling="unit")


def test_train_config_accepts_a_file_and_names_a_missing_one(lung_like, tmp_path):
    TrainConfig(dataset=str(lung_like[0])).validate()
    missing = tmp_path / "nope.mat"
    with pytest.raises(SparsetopoError, match=f"^--dataset: data file {re.escape(str(missing))} does not exist$"):
        TrainConfig(dataset=str(missing)).validate()
    with pytest.raises(SparsetopoError, match="^dataset must be one of fashion-mnist, mnist, cifar10; got 'lung' "
                                              r"\(or a data file: a path ending in \.mat or \.npz\)"):
        TrainConfig(dataset="lung").validate(flags=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"dataset: {missing}\n")
    from sparsetopo.cli import app

    res = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and f"--dataset: data file {missing} does not exist" in res.output


def test_train_on_a_generated_mat_file(tmp_path):
    pytest.importorskip("torch")
    from sparsetopo.cli import app

    x, y = blobs(n=300, features=24, classes=4)
    path = write_mat(tmp_path / "small.mat", x, y.reshape(-1, 1).astype(np.uint8))
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", str(path), "--hidden", "32", "32", "--epochs", "2",
                              "--batch-size", "16", "--lr", "0.05", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    acc = float(res.output.strip().rsplit(" ", 1)[1])
    assert acc > 0.8  # four well-separated blobs; chance is 0.25
    assert f"dataset: {path}" in (out / "config.yaml").read_text()
