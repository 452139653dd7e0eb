"""losslab: study and exploit the loss landscape of neural networks.

The public API; everything here also works inside a user's own training loop.
"""

__version__ = "0.1.0"

from losslab.curves import CurveModel
from losslab.data import (
    Augment,
    DatasetNotFoundError,
    DatasetSplits,
    DeviceLoader,
    Split,
    list_datasets,
    load_dataset,
    make_loaders,
)
from losslab.ensembles import Ensemble, analyze_ensemble, swa_model
from losslab.errors import (
    CheckpointCorruptError,
    ConfigError,
    InputError,
    LosslabError,
    MissingFileError,
    NotFoundError,
)
from losslab.models import create_model, list_models
from losslab.params import ParamDict
from losslab.runs.checkpoint_set import CheckpointRef, CheckpointSet, LoadedCheckpoint
from losslab.runs.config import TrainConfig, load_config
from losslab.runs.metrics import read_metrics
from losslab.train.annealing import H1, H2, SGDSA, SSA, ExponentialCooling
from losslab.train.callbacks import Callback
from losslab.train.evaluate import evaluate
from losslab.train.repulsion import CheckpointRepulsion
from losslab.train.restarts import ColdRestart
from losslab.train.run import resume_run, train_run
from losslab.train.schedules import (
    ConstantSchedule,
    CosineSchedule,
    CosineWarmRestartsSchedule,
    FGECycleSchedule,
    LinearDecaySchedule,
    MultiStepSchedule,
    SnapshotCosineSchedule,
    StepSchedule,
    build_schedule,
)
from losslab.train.trainer import Trainer

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
