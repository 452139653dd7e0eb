"""Per-epoch bookkeeping of the simulated-annealing optimizers, as a callback.

SSA and SGD-SA count their moves on the device during an epoch; ``epoch_end()`` reads the
counters once, cools the temperature (and, for SSA, shrinks ε when too few moves improved) and
returns the epoch's statistics, which this callback adds to the metrics (``metrics.jsonl``):

    worsening_accepted, worsening_rejected   worsening moves kept / undone (thesis Figs 3.4, 4.2)
    improving_moves, neutral_moves           moves that did not worsen the objective
    mean_acceptance_prob                     mean exp(-Δ/T) over the epoch's worsening moves
    temperature                              T during the epoch
    eps, eps_drops, improving_share          SSA: ε during the epoch, drops so far, the share
                                             of non-worsening moves that decides a drop
    mean_lr                                  SGD-SA: mean η drawn from H

With a run directory it also writes every worsening move's acceptance probability, for the
scatter of the thesis's Figs 3.3 and 4.1, to ``annealing_moves.jsonl``: one line per epoch,
``{"epoch", "steps", "step": [...], "prob": [...], "accepted": [0/1, ...]}`` with ``step`` the
move's index within the epoch. The probabilities stay on the device during the epoch and are
read with the counters, in the optimizer's one host sync per epoch.

Source: M. Stringher, "Unconventional Training of Deep Neural Networks", Master's thesis,
University of Padova, 2019 ("the thesis").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from losslab.runs.atomic import atomic_write_text
from losslab.runs.readers import read_json_lines
from losslab.train.callbacks import Callback

if TYPE_CHECKING:
    from losslab.train.trainer import Trainer

__all__ = ["AnnealingLog", "MOVES_FILE", "read_moves"]

MOVES_FILE = "annealing_moves.jsonl"


def read_moves(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch move records of a run (empty if it has none). A torn last line (a write
    cut short by a kill: the epoch is redone) is dropped; any other unreadable line is an error
    that names the file and the line."""
    return read_json_lines(Path(run_dir) / MOVES_FILE, what="one JSON object of moves per epoch")


class AnnealingLog(Callback):
    """Adds the optimizer's epoch statistics to the metrics; with ``directory``, writes the
    per-move acceptance probabilities to ``directory / annealing_moves.jsonl``."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.path = Path(directory) / MOVES_FILE if directory is not None else None

    def on_train_start(self, trainer: Trainer) -> None:
        # A resumed run redoes the epochs after its last saved state: drop what they wrote.
        if self.path is not None and self.path.exists():
            kept = [r for r in read_moves(self.path.parent) if r.get("epoch", 0) <= trainer.epoch]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        stats = trainer.optimizer.epoch_end()
        for key, value in stats.items():
            metrics[key] = value
        moves = getattr(trainer.optimizer, "last_moves", None)
        if self.path is not None and moves is not None:
            record = {"epoch": epoch, "steps": stats.get("steps"),
                      "step": moves.get("step", []),
                      "prob": [p if math.isfinite(p) else None for p in moves["prob"]],
                      "accepted": moves["accepted"]}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
