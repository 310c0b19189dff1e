import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import make_idx_dataset, write_idx
from sparsetopo.data import load_dataset, read_idx, resolve_data_dir

REAL = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "x-idx3-ubyte", a, gz=gz)
    np.testing.assert_array_equal(read_idx(p), a)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad-idx: wrong magic number"):
        read_idx(bad)
    p = write_idx(tmp_path / "t-idx", np.zeros((5, 4), dtype=np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match="t-idx: truncated"):
        read_idx(p)


def test_image_label_count_mismatch(tmp_path):
    d = make_idx_dataset(tmp_path / "d", n_train=50, n_test=20)
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(49, dtype=np.uint8))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: 50 images but .* 49 labels"):
        load_dataset("fashion-mnist", d)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\(.gz\) not found in .*empty"):
        load_dataset("fashion-mnist", tmp_path / "empty")
    with pytest.raises(ValueError, match="dataset must be one of fashion-mnist, mnist, cifar10; got 'imagenet'"):
        load_dataset("imagenet", tmp_path)


def test_env_var_names_a_folder_per_dataset(tmp_path, monkeypatch):
    d = make_idx_dataset(tmp_path / "env" / "fashion-mnist", gz=False)
    monkeypatch.setenv("SPARSETOPO_DATA", str(tmp_path / "env"))
    assert resolve_data_dir("fashion-mnist") == d
    assert resolve_data_dir("fashion-mnist", tmp_path / "x") == tmp_path / "x"
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (600, 64)
    # Another data set never silently gets Fashion-MNIST's files.
    with pytest.raises(FileNotFoundError, match=r"SPARSETOPO_DATA=.*env: no mnist/ folder there"):
        load_dataset("mnist")


def test_standardized_with_training_statistics_and_val_split(tiny_data):
    data = load_dataset("fashion-mnist", tiny_data, val_fraction=0.25, seed=1)
    assert data.x_train.dtype == np.float32
    assert len(data.x_train) == 450 and len(data.x_val) == 150
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1, atol=1e-3)
    assert abs(data.x_test.mean()) > 1e-6  # test set uses the training statistics, not its own
    assert data.n_classes == 4 and data.n_features == 64
    again = load_dataset("fashion-mnist", tiny_data, val_fraction=0.25, seed=1)
    np.testing.assert_array_equal(again.y_val, data.y_val)
    with pytest.raises(ValueError, match="val_fraction must be a number in \\[0, 1\\); got 1.0"):
        load_dataset("fashion-mnist", tiny_data, val_fraction=1.0)


class _Evil:
    """A pickle that would run a shell command when loaded by pickle.load."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(7, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 7))}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    data = load_dataset("cifar10", tmp_path)  # finds the cifar-10-batches-py subfolder
    assert data.x_train.shape == (35, 3072) and data.x_test.shape == (7, 3072)
    (d / "test_batch").write_bytes(b"junk")
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 python batch"):
        load_dataset("cifar10", d)
    (d / "test_batch").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 python batch.*refusing to load posix.system"):
        load_dataset("cifar10", d)
    (d / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 not found"):
        load_dataset("cifar10", d)


@pytest.mark.skipif(not REAL.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.n_classes == 10
    assert set(np.unique(data.y_train)) == set(range(10))
