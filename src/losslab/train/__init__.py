"""Training: the loop, its callbacks, and the methods that move through the landscape on purpose.

* :class:`~losslab.train.trainer.Trainer` (the loop, events, exact resume) with
  :class:`~losslab.train.callbacks.Callback` hooks and the
  :class:`~losslab.train.checkpointing.CheckpointPolicy`;
* :func:`~losslab.train.run.train_run` / :func:`~losslab.train.run.resume_run`: a run from a
  config into a run directory (and :func:`~losslab.train.run.build_trainer` without running);
* methods: :class:`~losslab.train.repulsion.CheckpointRepulsion` (an RBF penalty around saved
  checkpoints), :class:`~losslab.train.restarts.ColdRestart`, the annealers
  :class:`~losslab.train.annealing.SSA` and :class:`~losslab.train.annealing.SGDSA`;
* :mod:`losslab.train.schedules` (closed-form learning-rate schedules) and
  :func:`losslab.train.optim.build_optimizer`.

The evaluation function is :func:`losslab.train.evaluate.evaluate` (also ``losslab.evaluate``);
it is not re-exported here, where its name would hide the module ``losslab.train.evaluate``.
Members are imported on first use (:mod:`losslab.lazy`): the submodules import each other's
packages, so an eager namespace would be an import cycle.
"""

from losslab.lazy import lazy_namespace

_MEMBERS = {
    "Trainer": "trainer", "Callback": "callbacks", "CheckpointPolicy": "checkpointing",
    "train_run": "run", "resume_run": "run", "build_trainer": "run",
    "CheckpointRepulsion": "repulsion", "RepulsionCallback": "repulsion_callback",
    "ColdRestart": "restarts", "SSA": "annealing", "SGDSA": "annealing",
    "build_schedule": "schedules",
}
__all__ = list(_MEMBERS)
__getattr__, __dir__ = lazy_namespace(__name__, _MEMBERS)
