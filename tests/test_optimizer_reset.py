"""``optimizer_reset: epoch``: a fresh optimizer after every epoch, as SET's Keras code compiles one."""

import pytest

torch = pytest.importorskip("torch")

from sparsetopo.training import TrainConfig, read_metrics, train  # noqa: E402

TIMING = {"seconds", "train_seconds", "update_seconds"}


def _cfg(data, engine, **kw):
    return TrainConfig(method="set", engine=engine, data_dir=str(data), hidden=[48, 48], epsilon=4, epochs=3,
                       batch_size=32, lr=0.05, momentum=0.9, seed=0, limit_train=256, **kw)


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


class _Stop(Exception):
    pass


def _stop_after_epoch_1(msg):
    if "epoch 1/" in msg:
        raise _Stop


@pytest.mark.parametrize("engine", ["masked", "truly-sparse"])
def test_momentum_starts_at_zero_every_epoch_and_resume_is_exact(tiny_data, tmp_path, engine):
    kept = train(_cfg(tiny_data, engine), tmp_path / "kept", progress=False, log=lambda m: None)
    reset_cfg = _cfg(tiny_data, engine, optimizer_reset="epoch")
    reset = train(reset_cfg, tmp_path / "reset", progress=False, log=lambda m: None)
    # The first epoch is the same run; from the second on, momentum restarting changes the training.
    assert _strip(kept.metrics)[0] == _strip(reset.metrics)[0]
    assert _strip(kept.metrics)[1]["train_loss"] != _strip(reset.metrics)[1]["train_loss"]
    # The checkpoint holds a fresh optimizer: no momentum buffers.
    state = torch.load(tmp_path / "reset" / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    assert not any(s.get("momentum_buffer") is not None for s in state.values())
    # Interrupted after epoch 1 and resumed: the same as straight through.
    with pytest.raises(_Stop):
        train(reset_cfg, tmp_path / "cut", progress=False, log=_stop_after_epoch_1)
    resumed = train(reset_cfg, tmp_path / "cut", progress=False, log=lambda m: None)
    assert resumed.resumed_from == 1 and _strip(read_metrics(tmp_path / "cut")) == _strip(reset.metrics)


def test_unknown_reset_is_refused_naming_the_field():
    with pytest.raises(Exception, match=r"optimizer.reset must be one of never, epoch; got 'always'"):
        TrainConfig(optimizer_reset="always").validate()
