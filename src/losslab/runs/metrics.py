"""Per-epoch metrics: ``metrics.jsonl`` (one JSON object per epoch) and TensorBoard scalars.

The JSON lines are the record of truth; TensorBoard receives the same numbers for browsing.
Lines are appended and fsynced one epoch at a time. A run killed mid-write can leave a torn
last line; :func:`read_metrics` drops it, and on resume :meth:`MetricsLog.truncate` rewrites
the file (atomically) to the epochs the resumed state has actually finished.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from losslab.runs.atomic import atomic_write_text
from losslab.runs.readers import read_json_lines
from losslab.runs.rundir import RunDir

__all__ = ["MetricsLog", "read_metrics"]


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: write them as strings that read back unambiguously.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


_NON_FINITE = {"nan", "inf", "-inf"}


def _restore(value: Any) -> Any:
    # The inverse of _clean: non-finite floats were written as strings.
    return float(value) if isinstance(value, str) and value in _NON_FINITE else value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a ``metrics.jsonl`` file (or a run directory's).

    A torn last line (a kill in the middle of an append) is dropped with a warning; any other
    line that does not read is a :class:`~losslab.errors.CorruptFileError` naming the file and
    the line. A missing file has no records.
    """
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).metrics_path
    records = read_json_lines(path, what="one JSON object per epoch")
    return [{k: _restore(v) for k, v in r.items()} for r in records]


class MetricsLog:
    """Writes one record per epoch to ``metrics.jsonl`` and, optionally, TensorBoard."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, start_epoch: int = 0):
        self.path = RunDir(run_dir).metrics_path
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step discards events a killed run wrote past its last saved state.
            self.writer = SummaryWriter(str(Path(run_dir) / "tb"),
                                        purge_step=start_epoch + 1 if start_epoch else None)

    def truncate(self, last_epoch: int) -> None:
        """Keep only the records of epochs ``<= last_epoch`` (used on resume)."""
        kept = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= last_epoch]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            step = int(record["epoch"])
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
