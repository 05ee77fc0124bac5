"""The only door to nnU-Net v2: planning, training and network inference.

Importing this package changes no setting of the process: nnU-Net's folders and switches are set
around each call and process counts passed as arguments (see :mod:`ichseg.engine.environment`).
Its names are imported on first use, so that prediction does not pay for importing nnU-Net's
training code, and importing the package (or :mod:`ichseg.engine.params`) does not import torch.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import version as _version
from typing import Any

from ichseg.layout import nnunet_model_folder

#: name -> the submodule that defines it
_LAZY = {
    "IchsegTrainer": "trainer", "TrainerParams": "trainer",
    "resolve_device": "environment",
    "TrainedNetwork": "inference",
    "ensure_splits": "planning", "plan_dataset": "planning", "require_plans": "planning",
    "train_model": "fold_training", "training_state": "fold_training",
    "save_untrained_model": "fold_training",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def nnunet_version() -> str:
    return _version("nnunetv2")


def default_processes() -> int:
    """Worker processes for fingerprinting and preprocessing."""
    return max(1, min(8, os.cpu_count() or 1))


__all__ = [*sorted(_LAZY), "default_processes", "nnunet_model_folder", "nnunet_version"]
