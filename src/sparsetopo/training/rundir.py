"""The run directory outside the loop: its lock, the check that it holds this config's run,
whether a finished run can be reused, and its validated ``metrics.csv``.

Every reader here refuses a foreign or damaged file with an error naming the file and the
way out, so a damaged run is never taken for a good one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import FileFormatError, SparsetopoError
from ..fileio import file_sha256
from .config import TrainConfig, load_config_file

__all__ = ["METRIC_COLUMNS", "read_metrics", "reusable_run", "run_lock"]

# Fields that do not change a run's results (beyond float rounding on another device); they may differ
# when resuming.
_NON_SEMANTIC = {"data_dir", "device", "tensorboard", "wandb"}


def _check_same_config(out: Path, config: TrainConfig, *, anchor: Path | None = None) -> None:
    """Refuse a run directory whose recorded settings (config.yaml) differ from ``config``.

    ``anchor`` is the experiment directory the run belongs to: there an ``initial_topology``
    is the same setting when it names the same file of that directory, wherever the
    directory now lies (experiment directories can be moved).
    """
    # A key missing from an older run's config.yaml had the field's default then.
    saved = {**type(config)().to_dict(), **load_config_file(out / "config.yaml")}
    current = config.to_dict()
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in _NON_SEMANTIC and not _same_setting(k, saved.get(k), current.get(k), anchor))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise SparsetopoError(
            f"{out}: holds a run with another configuration ({detail}) than wanted (setting: recorded -> wanted); "
            "delete it or choose another --out directory, or use the same settings to resume"
        )


def _same_setting(key: str, recorded: Any, wanted: Any, anchor: Path | None) -> bool:
    if recorded == wanted:
        return True
    if key != "initial_topology" or anchor is None or not isinstance(recorded, str) or not isinstance(wanted, str):
        return False
    try:
        inside = Path(wanted).resolve().relative_to(Path(anchor).resolve())
    except ValueError:
        return False
    return Path(recorded).parts[-len(inside.parts):] == inside.parts


def reusable_run(out: str | os.PathLike, config: TrainConfig, *, anchor: str | os.PathLike | None = None):
    """The validated metrics of the finished run in ``out`` if it is this ``config``'s, else ``None``.

    ``None`` means the run still has to be trained (or resumed). A directory holding a run
    with other recorded settings, or a finished run whose config.yaml, result.json or
    metrics.csv is missing or damaged, is refused with an error naming the file and the
    way out, so that a foreign or damaged run is never used as this one.

    Parameters
    ----------
    out : path
        The run directory.
    config : TrainConfig
        The settings the caller would train with.
    anchor : path, optional
        The experiment directory holding the run (see :func:`_check_same_config`).
    """
    out = Path(out)
    if (out / "config.yaml").exists():
        _check_same_config(out, config, anchor=None if anchor is None else Path(anchor))
    result_path = out / "result.json"
    if not result_path.exists():
        return None
    if not (out / "config.yaml").exists():
        raise FileFormatError(out / "config.yaml", "missing from a finished run (result.json is there), so its "
                                                   "settings are unknown; delete the run directory to train it again")
    way_out = "delete it to rewrite it from the run's checkpoint, or delete the run directory to train it again"
    try:
        result = json.loads(result_path.read_text())
    except ValueError:
        raise FileFormatError(result_path, f"not valid JSON; {way_out}") from None
    epochs = result.get("epochs") if isinstance(result, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise FileFormatError(result_path, "must be a JSON object with an integer 'epochs' >= 1 (the run's "
                                           f"length), got {' '.join(json.dumps(result).split())[:80]}; {way_out}")
    rows = read_metrics(out, epochs=epochs, validation=config.val_fraction > 0)
    recorded = result.get("metrics_sha256")  # absent in runs finished before it was recorded
    if recorded is not None and recorded != file_sha256(out / "metrics.csv"):
        raise FileFormatError(out / "metrics.csv", "changed since the run finished (its checksum is not the one "
                                                   f"result.json records); {_METRICS_WAY_OUT}")
    return rows


@contextlib.contextmanager
def run_lock(out: Path, command: str | None = None):
    """Hold the run directory's lock (``.lock``) for the body; refuse a directory another process holds.

    The lock is an ``flock`` on ``out/.lock``, which the kernel releases when
    its process dies, so a killed run never leaves a stale lock; the file names
    the holder for the message a second process gets.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise SparsetopoError(f"{out}: in use by another training run ({holder}); wait for it to finish "
                                  "or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{command or ' '.join(sys.argv)}".encode(), 0)
        yield
    finally:
        os.close(fd)


_METRICS_WAY_OUT = ("delete the run's result.json to rewrite metrics.csv from its checkpoint, or delete the run "
                    "directory to train it again")

#: Columns every metrics.csv has (validation columns with --val-fraction, connection counts per layer).
METRIC_COLUMNS = ("epoch", "phase", "train_loss", "train_acc", "test_loss", "test_acc")


def read_metrics(run_dir: str | os.PathLike, *, epochs: int | None = None,
                 validation: bool = False) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed, validated (empty before the first epoch).

    The header must hold :data:`METRIC_COLUMNS` (and ``val_loss``, ``val_acc`` with
    ``validation``), every row a number in every column but ``phase``, and the epochs
    must run 1, 2, ... (up to ``epochs`` when given: a finished run has all of them).
    Anything else raises :class:`FileFormatError` naming the file.
    """
    path = Path(run_dir) / "metrics.csv"
    way_out = _METRICS_WAY_OUT
    if not path.exists():
        if epochs is not None:
            raise FileFormatError(path, f"missing from a finished run; {way_out}")
        return []
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except (ValueError, csv.Error) as exc:  # undecodable bytes, NUL characters
        raise FileFormatError(path, f"not a metrics table ({exc}); {way_out}") from None
    if not table:
        raise FileFormatError(path, f"empty (no header); {way_out}")
    header = table[0]
    required = METRIC_COLUMNS + (("val_loss", "val_acc") if validation else ())
    missing = [c for c in required if c not in header]
    if missing or len(set(header)) != len(header):
        raise FileFormatError(path, f"header must name the columns {', '.join(required)} once each; "
                                    f"got {repr(','.join(header)[:200])[1:-1]}; {way_out}")
    rows = [_metrics_row(path, header, cells, line, way_out) for line, cells in enumerate(table[1:], start=2)]
    got = [r["epoch"] for r in rows]
    if got != list(range(1, len(rows) + 1)):
        raise FileFormatError(path, f"epochs must run 1, 2, ... one row each; got {got[:20]}; {way_out}")
    if epochs is not None and len(rows) != epochs:
        raise FileFormatError(path, f"{len(rows)} epoch rows for a finished run of {epochs} epochs; {way_out}")
    return rows


def _metrics_row(path: Path, header: list[str], cells: list[str], line: int, way_out: str) -> dict[str, Any]:
    if len(cells) != len(header):
        raise FileFormatError(path, f"line {line} has {len(cells)} cells for {len(header)} columns "
                                    f"(truncated?); {way_out}")
    row: dict[str, Any] = {}
    for k, v in zip(header, cells):
        if k == "phase":
            if not v:
                raise FileFormatError(path, f"line {line}: empty phase; {way_out}")
            row[k] = v
            continue
        try:
            row[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            raise FileFormatError(path, f"line {line}, column {k}: {v[:40]!r} is not a number; {way_out}") from None
    if not isinstance(row["epoch"], int):
        raise FileFormatError(path, f"line {line}: epoch {row['epoch']!r} is not an integer; {way_out}")
    return row
