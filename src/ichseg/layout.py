"""Where nnU-Net keeps a trained model: the names shared by training, prediction and model folders.

Free of torch and nnU-Net, so that :mod:`ichseg.model.folder` can list a folder's models and the
engine can train and load them under the same names. The layout is nnU-Net's own results
layout, kept so that nnU-Net's tools can read ichseg's models too.
"""

from __future__ import annotations

from pathlib import Path

TRAINER_NAME = "IchsegTrainer"
#: A finished model's weights, and the periodic checkpoint an interrupted training resumes from.
FINAL_CHECKPOINT = "checkpoint_final.pth"
LATEST_CHECKPOINT = "checkpoint_latest.pth"
FOLD_PREFIX = "fold_"


def nnunet_model_folder(output_root: Path, folder_name: str, plans_name: str, configuration: str) -> Path:
    """Where nnU-Net puts a trainer's output under a results folder."""
    return output_root / folder_name / f"{TRAINER_NAME}__{plans_name}__{configuration}"


def fold_folder_name(fold: int | str) -> str:
    return f"{FOLD_PREFIX}{fold}"


def fold_dir(nnunet_folder: Path, fold: int | str) -> Path:
    """The folder of one fold's model inside a trainer's nnU-Net folder (checkpoints, logs)."""
    return nnunet_folder / fold_folder_name(fold)


def final_checkpoint(nnunet_folder: Path, fold: int | str) -> Path:
    """A finished model's weights: what prediction loads and what marks a training as done."""
    return fold_dir(nnunet_folder, fold) / FINAL_CHECKPOINT


def fold_of_folder(name: str) -> int | str | None:
    """The fold a ``fold_K`` folder holds (an int for 0-4, ``"all"`` for nnU-Net's fold 'all'),
    or None for another name."""
    if not name.startswith(FOLD_PREFIX):
        return None
    text = name[len(FOLD_PREFIX):]
    return int(text) if text.isdigit() else text
