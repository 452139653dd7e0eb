"""The training state file (``state/trainer.pt``): verified on read, with one generation kept.

The state holds everything a resumed run needs (model, optimizer moments, schedule, callbacks,
RNG states, counters). ``torch.save`` alone checks nothing: a file with bytes flipped in its
middle loads and trains on. So the file starts with a one-line header holding the SHA-256 of
the ``torch.save`` payload after it::

    LOSSLAB-STATE-1 <64 hex digits>\\n<torch.save bytes>

and reading checks it. Header and payload are one file written atomically, so no crash can
leave a hash that belongs to another payload. The state of the epoch before is kept as
``trainer.prev.pt``: a corrupt newest state costs one epoch, not the run
(``losslab resume RUN --from-checkpoint``). Writing moves the current state to the previous
name and the new one into place, each an atomic rename; a kill between the two leaves only
the previous state, which a resume uses as it is. The payload is always loaded with
``weights_only=True``. A file without the header (written before it existed) is read as a
plain ``torch.save`` file, unverified.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from losslab.errors import CheckpointCorruptError, MissingFileError
from losslab.runs.atomic import temporary_beside

__all__ = ["write_state", "read_state", "previous_state_path", "newest_good_state", "MAGIC"]

log = logging.getLogger(__name__)

MAGIC = b"LOSSLAB-STATE-1 "
_HEADER = len(MAGIC) + 64 + 1  # magic, hex digest, newline


def previous_state_path(path: str | Path) -> Path:
    """``trainer.prev.pt`` beside ``trainer.pt``: the state of the epoch before."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def write_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with its hash to ``path``; the file there before becomes the previous one."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_state_path(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_state(path: str | Path) -> dict[str, Any]:
    """The state in ``path``, its hash checked; any damage is a one-line error naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"training state {path} is missing") from None
    if not data:
        raise CheckpointCorruptError(f"training state {path} is empty (0 bytes)")
    if data.startswith(MAGIC):
        recorded = data[len(MAGIC):_HEADER - 1].decode("ascii", errors="replace")
        payload = data[_HEADER:]
        if len(data) < _HEADER or hashlib.sha256(payload).hexdigest() != recorded:
            raise CheckpointCorruptError(
                f"training state {path} is corrupt: its SHA-256 does not match the one written "
                f"in its header ({len(data)} bytes)")
    else:
        payload = data  # a state written before the header existed: not verifiable
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which one
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointCorruptError(f"training state {path} is unreadable ({first})") from e
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointCorruptError(f"training state {path} is not a losslab training state")
    return state


def newest_good_state(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest state of ``path`` and its previous generation that reads back intact, or
    None when there is none (a corrupt one is named in a warning)."""
    for candidate in (Path(path), previous_state_path(path)):
        if not candidate.exists():
            continue
        try:
            return candidate, read_state(candidate)
        except CheckpointCorruptError as e:
            log.warning("%s", e)
    return None
