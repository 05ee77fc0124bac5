"""The only door to nnU-Net v2: planning, training and network inference.

Importing this package sets nnU-Net's process defaults before nnunetv2 itself is imported; the
workspace folders are set around each call (see :mod:`ichseg.engine.environment`).
"""

from ichseg.engine.environment import set_process_defaults

set_process_defaults()

from importlib.metadata import version as _version  # noqa: E402

from ichseg.engine.environment import resolve_device  # noqa: E402
from ichseg.engine.inference import TrainedNetwork  # noqa: E402
from ichseg.engine.planning import ensure_splits, plan_dataset, require_plans  # noqa: E402
from ichseg.engine.trainer import IchsegTrainer, TrainerParams  # noqa: E402
from ichseg.engine.training import nnunet_model_folder, train_model  # noqa: E402


def nnunet_version() -> str:
    return _version("nnunetv2")


def default_processes() -> int:
    """Worker processes for fingerprinting and preprocessing."""
    import os

    return max(1, min(8, os.cpu_count() or 1))


__all__ = [
    "IchsegTrainer", "TrainedNetwork", "TrainerParams", "default_processes", "ensure_splits",
    "nnunet_model_folder", "nnunet_version", "plan_dataset", "require_plans", "resolve_device",
    "train_model",
]
