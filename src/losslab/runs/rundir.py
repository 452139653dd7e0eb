"""The run directory: everything one training run leaves behind.

::

    RUN_DIR/
      config.yaml       the resolved config (every default written out)
      meta.json         versions, seed, device, git revision, start/end time, status
      metrics.jsonl     one JSON object per epoch
      checkpoints/      NAME.safetensors + NAME.json sidecars (see runs.checkpoints)
      state/trainer.pt  the full training state after the last finished epoch (for resume)
      tb/               TensorBoard event files with the same scalars as metrics.jsonl

Every file is written atomically, so a run killed at any moment leaves a directory that
``losslab resume RUN_DIR`` continues.
"""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from losslab.errors import CorruptFileError, MissingFileError
from losslab.runs.atomic import atomic_write_json, atomic_write_text
from losslab.runs.readers import read_json, read_yaml

__all__ = ["RunDir", "git_revision", "environment_info"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_revision(path: str | Path | None = None) -> str | None:
    """The git commit of the losslab source tree (or ``path``), ``-dirty`` if modified; None if unknown."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict[str, Any]:
    import numpy
    import torch

    import losslab

    info = {"losslab": losslab.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": sys.version.split()[0], "platform": platform.platform(),
            "hostname": socket.gethostname()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


class RunDir:
    """Paths and small records of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def state_path(self) -> Path:
        return self.path / "state" / "trainer.pt"

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The run's stored config tree; a missing, binary, empty, cut-short or broken
        ``config.yaml`` is an error that names it."""
        # complete: the file was written whole, so a cut one is refused even where the rest
        # still parses (a value cut in two would be read as another value)
        return read_yaml(self.config_path, what="the run's config (YAML written by losslab)",
                         complete=True)

    def read_meta(self) -> dict[str, Any]:
        """The run's ``meta.json`` (``{}`` before it is first written); an unreadable one is an
        error that names it."""
        try:
            meta = read_json(self.meta_path, what="the run's meta record (a JSON object)")
        except MissingFileError:
            return {}
        if not isinstance(meta, dict):
            raise CorruptFileError(f"{self.meta_path} holds a JSON {type(meta).__name__}; "
                                   "expected the run's meta record (a JSON object)")
        return meta

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = self.read_meta()
        meta.update(fields)
        atomic_write_json(self.meta_path, meta)
        return meta

    def start(self, *, seed: int, device: str, resumed: bool) -> None:
        meta = self.read_meta()
        starts = meta.get("starts", [])
        starts.append(_now())
        fields: dict[str, Any] = {"run_id": self.run_id, "seed": seed, "device": device,
                                  "environment": environment_info(), "git_revision": git_revision(),
                                  "status": "running", "starts": starts, "end_time": None,
                                  "command": " ".join(sys.argv)}
        if not resumed:
            fields["start_time"] = starts[0]
        self.update_meta(**fields)

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        self.update_meta(status=status, end_time=_now(), error=error)
