"""Devices (issue 19, item 1): the ``device`` setting, its errors, and device-correct updates.

There is no GPU in CI. Device resolution is tested with ``torch.cuda`` availability patched; the update
path's device handling is tested with torch's fake tensors (``FakeTensorMode``), which give CUDA tensors
on a CPU-only build and raise on any operation mixing devices, exactly as CUDA does. Whole updates cannot
run on fake tensors (they read counts from the data), so the full GPU path is checked by
``make gpu-check`` on a machine with CUDA.
"""

import csv
import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode  # noqa: E402

from sparsetopo.cli import app  # noqa: E402
from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.masking import rescale_to_fan_in  # noqa: E402
from sparsetopo.methods import UpdateContext, drop_and_grow, get_method  # noqa: E402
from sparsetopo.models import SeededDropout  # noqa: E402
from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402
from sparsetopo.training import device as device_mod  # noqa: E402
from sparsetopo.training.device import resolve_device  # noqa: E402

TIMING = {"seconds", "train_seconds", "update_seconds"}


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


@pytest.fixture
def one_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


# ------------------------------------------------------------------ resolution
def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(no_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    # an engine that runs on the CPU only takes auto as the CPU
    assert resolve_device("auto", cpu_only="CPU kernels") == torch.device("cpu")


def test_cuda_without_cuda_names_the_setting_and_what_is_available(no_cuda):
    with pytest.raises(SparsetopoError) as err:
        resolve_device("cuda", "--device")
    msg = str(err.value)
    assert msg.startswith("--device cuda: no CUDA device")
    assert "torch.cuda.is_available() is False" in msg and msg.endswith("available: cpu")


def test_cuda_index_past_the_last_device_is_refused(one_cuda):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(SparsetopoError, match=r"^device cuda:3: torch sees 1 CUDA device\(s\); "
                                              r"available: cpu, cuda, cuda:0$"):
        resolve_device("cuda:3")


def test_mps_without_mps_is_refused(no_cuda):
    with pytest.raises(SparsetopoError, match=r"^device mps: no MPS device .*available: cpu$"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "", "cpu ", 0, None])
def test_unknown_spellings_are_refused_naming_the_forms(spec):
    with pytest.raises(SparsetopoError) as err:
        resolve_device(spec, "--device")
    assert str(err.value) == f"--device must be one of auto, cpu, cuda, cuda:N or mps; got {spec!r}"


def test_the_truly_sparse_engine_refuses_a_gpu(one_cuda):
    with pytest.raises(SparsetopoError, match=r"^--device cuda: the truly sparse engine's kernels \(numba\) run on "
                                              r"the CPU only; use --device cpu \(or auto\)$"):
        TrainConfig(method="set", engine="truly-sparse", device="cuda").validate()
    with pytest.raises(SparsetopoError, match=r"^device cuda:0: the truly sparse"):
        TrainConfig(method="set", engine="truly-sparse", device="cuda:0").validate(flags=False)
    TrainConfig(method="set", engine="truly-sparse", device="auto").validate()  # auto: the CPU


def test_config_and_yaml_check_the_device(no_cuda, tmp_path):
    with pytest.raises(SparsetopoError, match=r"^--device must be one of auto, cpu, cuda, cuda:N or mps; got 'gpu'$"):
        TrainConfig(device="gpu").validate()
    with pytest.raises(SparsetopoError, match=r"^device cuda: no CUDA device"):
        TrainConfig(device="cuda").validate(flags=False)
    with pytest.raises(SparsetopoError, match=r"options: --device must be a string; got 3"):
        TrainConfig.from_dict({"device": 3}, source="options")
    assert TrainConfig.from_dict({"device": "cpu"}).validate().device == "cpu"


def test_train_cli_refuses_a_missing_gpu(no_cuda, tiny_data, tmp_path):
    res = CliRunner().invoke(app, ["train", "--data-dir", str(tiny_data), "--device", "cuda:1", "--out",
                                   str(tmp_path / "run")])
    assert res.exit_code != 0
    assert "--device cuda:1: no CUDA device" in res.output and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_experiment_cli_refuses_a_missing_gpu(tmp_path):
    res = CliRunner().invoke(app, ["experiment", "evolution", "--preset", "smoke", "--device", "cuda",
                                   "--out", str(tmp_path / "exp")])
    assert res.exit_code != 0 and "--device cuda: no CUDA device" in res.output
    res = CliRunner().invoke(app, ["experiment", "evolution", "--device", "tpu", "--out", str(tmp_path / "exp")])
    assert res.exit_code != 0 and "--device must be one of auto, cpu, cuda, cuda:N or mps; got 'tpu'" in res.output


def test_experiment_configs_carry_the_device():
    from sparsetopo.experiments.base import make_config

    cfg = make_config("evolution", "smoke", {"device": "cpu"})
    assert cfg.device == "cpu" and cfg.train_config().device == "cpu"
    assert make_config("evolution", "smoke").train_config().device == "auto"


# ------------------------------------------------------------------ training records its device
def _cfg(data, **kw):
    base = dict(method="set", data_dir=str(data), hidden=[32, 32], epsilon=4, epochs=2, batch_size=32,
                lr=0.05, seed=0, dropout=0.1, regrow_init="normal")
    base.update(kw)
    return TrainConfig(**base)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_a_cpu_run_records_its_device_and_equals_auto(no_cuda, tiny_data, tmp_path):
    a = train(_cfg(tiny_data, device="cpu"), tmp_path / "cpu", progress=False, log=lambda m: None)
    b = train(_cfg(tiny_data), tmp_path / "auto", progress=False, log=lambda m: None)
    assert _strip(a.metrics) == _strip(b.metrics)
    assert json.loads((tmp_path / "cpu" / "result.json").read_text())["device"] == "cpu"
    with open(tmp_path / "auto" / "resources.csv") as f:
        assert [r["device"] for r in csv.DictReader(f)] == ["cpu", "cpu"]
    # the device does not change what a run is: the finished run is reused under another spelling
    again = train(_cfg(tiny_data, device="auto"), tmp_path / "cpu", progress=False, log=lambda m: None)
    assert again.skipped and _strip(again.metrics) == _strip(read_metrics(tmp_path / "cpu"))


# ------------------------------------------------------------------ the update path on a fake CUDA device
def _fake_cuda_layer(shape=(6, 5)):
    """A weight and its mask on a fake CUDA device (made inside a FakeTensorMode; their values are never read)."""
    return torch.zeros(shape, device="cuda"), torch.zeros(shape, dtype=torch.bool, device="cuda")


def test_fake_tensors_catch_mixed_devices():
    """The premise of the tests below: a CPU tensor meeting a (fake) CUDA one raises, as on a GPU."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        weight, mask = _fake_cuda_layer()
        cpu_score = torch.rand(weight.shape, generator=torch.Generator().manual_seed(0))
        with pytest.raises(FakeTensorDeviceMismatchError):
            cpu_score.masked_fill(mask, float("-inf"))


def test_set_regrowth_scores_are_drawn_on_the_cpu_and_put_on_the_mask_device():
    cfg = TrainConfig(method="set")
    method = get_method(cfg)
    ctx = UpdateContext(model=None, optimizer=None, epoch=1, total_epochs=2,
                        regrowth=torch.Generator().manual_seed(3), dense_grads=lambda: [])
    with FakeTensorMode(allow_non_fake_inputs=True):
        weight, mask = _fake_cuda_layer()
        score = method.grow_score(0, weight, mask, ctx)
        assert score.device == mask.device == torch.device("cuda", 0)
        kept = mask & (weight != 0)
        assert score.float().masked_fill(kept, float("-inf")).device == mask.device  # drop_and_grow's first step
    # on the CPU the scores are the generator's own draws: the same numbers on every device
    w, m = torch.zeros(6, 5), torch.ones(6, 5, dtype=torch.bool)
    ctx.regrowth.manual_seed(3)
    assert torch.equal(method.grow_score(0, w, m, ctx), torch.rand((6, 5), generator=torch.Generator().manual_seed(3)))


def test_rigl_scores_stay_on_the_weight_device():
    method = get_method(TrainConfig(method="rigl"))
    with FakeTensorMode(allow_non_fake_inputs=True):
        weight, mask = _fake_cuda_layer()
        ctx = UpdateContext(model=None, optimizer=None, epoch=1, total_epochs=2, regrowth=torch.Generator(),
                            dense_grads=lambda: [weight * 2])
        assert method.grow_score(0, weight, mask, ctx).device == mask.device


def test_fan_in_rescaling_takes_a_cpu_mask_for_a_gpu_weight():
    """sparsify draws masks on the CPU and rescales a model's weights wherever they are."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        weight, _ = _fake_cuda_layer()
        cpu_mask = torch.ones(6, 5, dtype=torch.bool)
        rescale_to_fan_in(weight, cpu_mask)
        assert weight.device == torch.device("cuda", 0)


def test_dropout_with_a_cpu_generator_on_a_gpu_input():
    drop = SeededDropout(0.5, torch.Generator().manual_seed(0))
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.ones(4, 3, device="cuda")
        assert drop(x).device == x.device
    # on the CPU the masks are the generator's own draws, as before devices existed
    x = torch.ones(200, 10)
    got = SeededDropout(0.5, torch.Generator().manual_seed(1))(x)
    keep = torch.empty_like(x).bernoulli_(0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(got, x * keep / 0.5)


def test_drop_and_grow_keeps_the_count_on_the_cpu():
    """The CPU reference the device changes must not alter (drop_and_grow is untouched)."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(8, 8, generator=gen) < 0.3
    drop = mask & (torch.rand(8, 8, generator=gen) < 0.5)
    new, grown = drop_and_grow(mask, drop, torch.rand(8, 8, generator=gen))
    assert int(new.sum()) == int(mask.sum()) and not (grown & mask & ~drop).any()
