"""Where nnU-Net keeps a trained model: names shared by training and prediction.

Kept apart from the trainer so that prediction can find checkpoints without importing nnU-Net's
training code (seconds of imports a prediction does not need).
"""

from __future__ import annotations

from pathlib import Path

TRAINER_NAME = "IchsegTrainer"
FINAL_CHECKPOINT = "checkpoint_final.pth"
LATEST_CHECKPOINT = "checkpoint_latest.pth"


def nnunet_model_folder(output_root: Path, folder_name: str, plans_name: str, configuration: str) -> Path:
    """Where nnU-Net puts a trainer's output under a results folder (its own layout, kept so that
    nnU-Net's tools can read the model too)."""
    return output_root / folder_name / f"{TRAINER_NAME}__{plans_name}__{configuration}"


def fold_folder_name(fold: int | str) -> str:
    return f"fold_{fold}"
