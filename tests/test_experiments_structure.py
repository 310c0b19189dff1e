"""Issue 17: experiment settings are declared once (TrainConfig's fields), method capabilities are
asked of the method class, and a newly registered method runs in a study."""

import dataclasses

from sparsetopo.experiments import EXPERIMENTS, PRESETS, make_config
from sparsetopo.experiments.base import STUDY_DEFAULTS, TRAIN_SETTINGS, CommonConfig, exp_defaults
from sparsetopo.training import TrainConfig

#: CommonConfig's defaults and key order before its fields were derived from TrainConfig: the keys
#: of experiment.yaml and summary.json, and the values an old experiment directory resumes with.
COMMON_DEFAULTS = {
    "dataset": "fashion-mnist", "data_dir": None, "limit_train": None, "limit_test": None,
    "input_scaling": "standardize", "epochs": 200, "batch_size": 128, "lr": 0.01, "momentum": 0.9,
    "weight_decay": 2e-4, "zeta": 0.3, "init": "he", "init_std": 0.1, "regrow_init": "zero",
    "regrow_where": "anywhere",  # issue 23: an old experiment.yaml without it resumes with anywhere
    "loss": "cross_entropy", "dropout": 0.0, "val_fraction": 0.0, "snapshot_timing": "after_update",
    "snapshot_connections": "mask", "snapshot_weights": False,
    "optimizer_reset": "never",  # issue 23: added before seed; old experiment.yaml files resume with never
    "seed": 0,
    "device": "auto",  # issue 19: added after seed; an old experiment.yaml without it resumes with auto
    "solver": "auto",
}


def test_common_defaults_and_key_order_are_unchanged():
    assert list(dataclasses.asdict(CommonConfig()).items()) == list(COMMON_DEFAULTS.items())
    for exp in EXPERIMENTS.values():
        keys = list(dataclasses.asdict(exp.config_cls()))
        assert keys[:len(COMMON_DEFAULTS)] == list(COMMON_DEFAULTS)


def test_common_settings_are_train_config_fields_with_their_checks():
    train = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(CommonConfig):
        if f.name in TRAIN_SETTINGS:
            assert f.metadata == train[f.name].metadata, f.name
            assert f.default == STUDY_DEFAULTS.get(f.name, train[f.name].default), f.name
    # the settings reach every training run
    tc = make_config("tickets", "smoke").train_config()
    assert {n: getattr(tc, n) for n in TRAIN_SETTINGS} == {
        n: getattr(make_config("tickets", "smoke"), n) for n in TRAIN_SETTINGS}


def test_presets_are_declared_once():
    for exp in EXPERIMENTS.values():
        assert tuple(exp.presets) == PRESETS
        assert type(exp_defaults(make_config(exp.name, "smoke"))) is exp.config_cls


def test_experiment_messages_name_keys_not_flags():
    import pytest

    with pytest.raises(ValueError, match=r"^overrides: rewind_epoch must be in \[0, 1\]"):
        make_config("tickets", "smoke", {"rewind_epoch": 5}, source="overrides")
    with pytest.raises(ValueError, match=r"wide_hidden must be a list of integers in \[1, 1000000\]; got \[0\]"):
        make_config("sparse-vs-dense", "smoke", {"wide_hidden": [0]})


def test_sparse_vs_dense_runs_a_newly_registered_method(tmp_path, tiny_data):
    """A method is one new class: registered, the study accepts it and trains it, no list to extend."""
    import json

    import pytest

    torch = pytest.importorskip("torch")
    from sparsetopo.experiments import Context, run_experiment
    from sparsetopo.methods import METHODS, DropGrowMethod, register

    @register
    class Dummy(DropGrowMethod):
        """Drops the weights closest to zero in each layer, grows at the first empty positions."""

        name = "dummy"
        starts_sparse = True
        accepts_initial_topology = True
        evolves_topology = True

        def drop(self, weight, mask, ctx):
            k = int(0.1 * int(mask.sum()))
            out = torch.zeros_like(mask)
            out.view(-1)[weight.abs().masked_fill(~mask, float("inf")).flatten().topk(k, largest=False).indices] = True
            return out

        def grow_score(self, layer_id, weight, mask, ctx):
            return -torch.arange(weight.numel(), dtype=torch.float32).reshape(weight.shape)

    try:
        config = tmp_path / "dummy.yaml"
        config.write_text(f"data_dir: {tiny_data}\nmethods: [dummy]\n"
                          "hidden: [16]\nwide_hidden: [32]\nepsilons: [2]\nseeds: 1\nepochs: 2\n")
        summary = run_experiment("sparse-vs-dense", "smoke", tmp_path / "out", config_file=str(config),
                                 ctx=Context(n_jobs=1, progress=False, log=lambda m: None))
        assert summary["config"]["methods"] == ["dummy"]
        assert any(f.startswith("Best dummy network (epsilon 2,") for f in summary["findings"])
        rows = (tmp_path / "out" / "tables" / "accuracy.csv").read_text()
        assert "\ndummy,16,2," in rows
        recorded = json.loads((tmp_path / "out" / "summary.json").read_text())["config"]
        assert recorded["methods"] == ["dummy"]
    finally:
        del METHODS["dummy"]
    with pytest.raises(ValueError, match="methods must be a non-empty list of static, set, rigl; got"):
        make_config("sparse-vs-dense", "smoke", {"methods": ["dummy"]})
