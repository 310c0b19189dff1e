"""Issue 17: the training package's layout and the library's errors naming parameters, not flags."""

import importlib

import pytest

pytest.importorskip("torch")

from sparsetopo.errors import SparsetopoError  # noqa: E402
from sparsetopo.methods import method_class  # noqa: E402
from sparsetopo.models import MaskedLinear, SparseCNN, SparseMLP  # noqa: E402
from sparsetopo.schedule import UpdateSchedule  # noqa: E402
from sparsetopo.training import TrainConfig, loss_function  # noqa: E402

ACTIVATION = "activation must be one of relu, tanh, sigmoid, gelu, leaky_relu; got 'x'"

OLD_NAMES = ("TrainConfig", "RunResult", "train", "load_config_file", "loss_function", "SEED_PURPOSES", "read_metrics",
             "reusable_run", "estimate_memory", "available_memory", "load_weights", "save_weights", "run_lock",
             "METRIC_COLUMNS", "DIVERGED_LOSS", "LOSSES", "OPTIMIZERS")


def test_the_package_keeps_every_name_training_py_had():
    import sparsetopo.training as training

    for name in OLD_NAMES:
        assert hasattr(training, name), name
    assert set(training.__all__) <= set(dir(training))
    for module in ("config", "loop", "rundir", "weights", "resources"):
        importlib.import_module(f"sparsetopo.training.{module}")
    assert training.TrainConfig.__module__ == "sparsetopo.training.config"


@pytest.mark.parametrize("call,message", [
    (lambda: SparseMLP([3, 2], activation="x"), ACTIVATION),
    (lambda: SparseCNN((1, 4, 4), 2, activation="x"), ACTIVATION),
    (lambda: MaskedLinear(3, 2, init="x"), "init must be one of he, normal; got 'x'"),
    (lambda: method_class("x"), "method must be one of dense, static, set, rigl, lottery, gmp, magnitude, "
                                    "snip, grasp, synflow; got 'x'"),
    (lambda: loss_function("x"), "loss must be one of cross_entropy, mse; got 'x'"),
    (lambda: UpdateSchedule(drop_schedule="x"), "drop_schedule must be one of constant, cosine; got 'x'"),
])
def test_library_errors_name_parameters(call, message):
    with pytest.raises(SparsetopoError) as info:
        call()
    assert str(info.value) == message


def test_train_config_names_keys_or_flags_as_asked():
    cfg = TrainConfig(method="lottery", update_every=2)
    with pytest.raises(SparsetopoError, match="^update_every applies to .* not method lottery$"):
        cfg.validate(flags=False)
    with pytest.raises(SparsetopoError, match="^--update-every applies to .* not --method lottery$"):
        cfg.validate()
    with pytest.raises(SparsetopoError, match="^drop_schedule=.cosine. decays to end_step: give end_step$"):
        TrainConfig(update_every=2, drop_schedule="cosine").validate(flags=False)
