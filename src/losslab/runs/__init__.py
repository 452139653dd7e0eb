"""Runs on disk: the config schema, the run directory and everything written into it.

* :mod:`~losslab.runs.config`: the validated run config (:class:`TrainConfig`,
  :func:`load_config`, ``--set`` overrides);
* :mod:`~losslab.runs.rundir`: the run directory (:class:`RunDir`: config, meta, metrics,
  checkpoints, state, TensorBoard);
* :mod:`~losslab.runs.metrics`: the metrics log (JSON lines + TensorBoard), :func:`read_metrics`;
* :mod:`~losslab.runs.checkpoints` (safetensors + a JSON sidecar with the SHA-256 of the
  weights) and :mod:`~losslab.runs.optimizer_state` beside them;
* :mod:`~losslab.runs.checkpoint_set`: :class:`CheckpointSet`, the ordered, lazily loaded
  checkpoints every analysis takes;
* :mod:`~losslab.runs.atomic`: atomic writes (a killed process never leaves half a file);
* :mod:`~losslab.runs.device`: :func:`resolve_device`, the device a name (``auto``) means;
* :mod:`~losslab.runs.rebuild`: a finished run's config, data set, untrained network and
  in-order loaders rebuilt from its ``config.yaml`` (for analyses of its checkpoints).

Members are imported on first use (:mod:`losslab.lazy`), which keeps the config schema free of
import cycles with the training code it validates.
"""


from losslab.lazy import lazy_namespace

_MEMBERS = {
    "TrainConfig": "config", "ConfigError": "config", "load_config": "config",
    "RunDir": "rundir", "read_metrics": "metrics",
    "CheckpointRef": "checkpoint_set", "CheckpointSet": "checkpoint_set",
    "LoadedCheckpoint": "checkpoint_set", "CheckpointCorruptError": "checkpoints",
    "save_checkpoint": "checkpoints", "load_checkpoint_tensors": "checkpoints",
}
__all__ = list(_MEMBERS)
__getattr__, __dir__ = lazy_namespace(__name__, _MEMBERS)
