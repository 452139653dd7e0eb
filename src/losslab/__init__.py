"""losslab: study and exploit the loss landscape of neural networks.

The public API; everything here also works inside a user's own training loop. Members are
imported on first use (:mod:`losslab.lazy`, PEP 562): ``import losslab`` and the command's
``--help`` do not pay for importing torch until something needs it.
"""

__version__ = "0.1.0"

from losslab.lazy import lazy_namespace

_MEMBERS = {
    "CurveModel": "curves",
    "Augment": "data", "DatasetNotFoundError": "data", "DatasetSplits": "data",
    "DeviceLoader": "data", "Split": "data", "list_datasets": "data", "load_dataset": "data",
    "make_loaders": "data",
    "Ensemble": "ensembles", "analyze_ensemble": "ensembles", "swa_model": "ensembles",
    "CheckpointCorruptError": "errors", "ConfigError": "errors", "InputError": "errors",
    "LosslabError": "errors", "MissingFileError": "errors", "NotFoundError": "errors",
    "create_model": "models", "list_models": "models",
    "ParamDict": "params",
    "CheckpointRef": "runs.checkpoint_set", "CheckpointSet": "runs.checkpoint_set",
    "LoadedCheckpoint": "runs.checkpoint_set",
    "TrainConfig": "runs.config", "load_config": "runs.config",
    "read_metrics": "runs.metrics",
    "H1": "train.annealing", "H2": "train.annealing", "SGDSA": "train.annealing",
    "SSA": "train.annealing", "ExponentialCooling": "train.annealing",
    "Callback": "train.callbacks",
    "evaluate": "train.evaluate",
    "CheckpointRepulsion": "train.repulsion",
    "ColdRestart": "train.restarts",
    "resume_run": "train.run", "train_run": "train.run",
    "ConstantSchedule": "train.schedules", "CosineSchedule": "train.schedules",
    "CosineWarmRestartsSchedule": "train.schedules", "FGECycleSchedule": "train.schedules",
    "LinearDecaySchedule": "train.schedules", "MultiStepSchedule": "train.schedules",
    "SnapshotCosineSchedule": "train.schedules", "StepSchedule": "train.schedules",
    "build_schedule": "train.schedules",
    "Trainer": "train.trainer",
}

__all__ = [
    "__version__",
    # data
    "Augment", "DatasetNotFoundError", "DatasetSplits", "DeviceLoader", "Split",
    "list_datasets", "load_dataset", "make_loaders",
    # models
    "create_model", "list_models",
    # curves
    "CurveModel",
    # ensembles
    "Ensemble", "analyze_ensemble", "swa_model",
    # runs and checkpoints
    "ParamDict", "CheckpointRef", "CheckpointSet", "LoadedCheckpoint", "CheckpointCorruptError",
    "TrainConfig", "load_config", "read_metrics",
    # errors: the user-error family
    "LosslabError", "InputError", "NotFoundError", "ConfigError", "MissingFileError",
    # training
    "Callback", "Trainer", "evaluate", "train_run", "resume_run", "build_schedule",
    "CheckpointRepulsion", "ColdRestart", "SSA", "SGDSA", "ExponentialCooling", "H1", "H2",
    "ConstantSchedule", "StepSchedule", "MultiStepSchedule", "LinearDecaySchedule",
    "CosineSchedule", "CosineWarmRestartsSchedule", "SnapshotCosineSchedule", "FGECycleSchedule",
]

__getattr__, __dir__ = lazy_namespace(__name__, _MEMBERS)
