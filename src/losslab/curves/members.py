"""Points along a fitted curve as checkpoints: ensemble members (Garipov et al. 2018, §4).

``save_curve_points(curve_run, ts)`` writes φ(t) for each t into the curve run's
``checkpoints/`` as ``curve_t0.250`` (role ``curve_point``, ``extra={"t": t}``), with its
BatchNorm statistics recomputed on the training split (``recompute_batchnorm``), in the
architecture's own parameter names. They are then ordinary checkpoints: the ensemble analytics
(``analyze_ensemble``, ``losslab ensemble CURVE_RUN --role curve_point``) take them as members.
A point already written is kept (the curve does not change once fitted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from losslab.curves.training import load_curve
from losslab.ensembles.swa import recompute_batchnorm
from losslab.errors import InputError
from losslab.params import buffers_of
from losslab.runs.checkpoint_set import CheckpointSet, resolve_checkpoint
from losslab.runs.checkpoints import save_checkpoint
from losslab.runs.rebuild import dataset_of, split_loader

__all__ = ["CURVE_POINT_ROLE", "save_curve_points"]

CURVE_POINT_ROLE = "curve_point"


def save_curve_points(path: str | Path, ts: Sequence[float],
                      device: torch.device | str = "cpu") -> CheckpointSet:
    """φ(t) of the curve run at ``path`` for every t, as checkpoints; returns them in t order."""
    path = Path(path)
    for torn in (path if path.is_dir() else path.parent.parent).glob("checkpoints/curve_t*.safetensors"):
        if not torn.with_suffix(".json").exists():  # a killed earlier call; written again below
            torn.unlink()
    final = resolve_checkpoint(path)
    run_dir = final.path.parent.parent
    curve, config = load_curve(final.path, device)
    train = split_loader(dataset_of(config), "train", 1024, device)
    names = []
    for t in ts:
        if not 0.0 <= float(t) <= 1.0:
            raise InputError(f"t must be in [0, 1], got {t}")
        name = f"curve_t{float(t):.3f}"
        names.append(name)
        if (run_dir / "checkpoints" / f"{name}.json").exists():
            continue
        with torch.no_grad():
            params = {k: v.detach() for k, v in curve.point(float(t)).items()}
        state = recompute_batchnorm(curve.net, {**params, **buffers_of(curve.net)}, train)
        buffers = {k: v for k, v in state.items() if k not in params}
        save_checkpoint(run_dir / "checkpoints", name, params, buffers, run_id=final.run_id,
                        epoch=final.epoch, step=final.step, role=CURVE_POINT_ROLE,
                        extra={"t": float(t)})
    points = CheckpointSet.from_run(run_dir, role=CURVE_POINT_ROLE)
    by_name = {r.path.stem: r for r in points}
    return CheckpointSet(by_name[n] for n in names)
