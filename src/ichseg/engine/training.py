"""Training one model (one configuration, one fold) with :class:`IchsegTrainer`, resumably."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ichseg.atomic import write_json
from ichseg.engine.checkpoint import load_checkpoint
from ichseg.engine.environment import captured_output, nnunet_paths, quiet_warnings
from ichseg.engine.planning import require_plans
from ichseg.engine.trainer import IchsegTrainer, TrainerParams
from ichseg.layout import FINAL_CHECKPOINT, LATEST_CHECKPOINT, fold_folder_name, nnunet_model_folder
from ichseg.progress import TrainingEpoch
from ichseg.workspace import Workspace

def train_model(workspace: Workspace, folder_name: str, plans_name: str, configuration: str,
                fold: int | str, params: TrainerParams, output_root: Path, device: torch.device,
                epoch_callback: Callable[[TrainingEpoch], None] | None = None,
                verbose: bool = False) -> Path:
    """Train (or resume, or skip if finished) one model; returns its fold folder.

    A fold folder with ``checkpoint_final.pth`` is finished and left alone; one with only
    ``checkpoint_latest.pth`` was interrupted and continues from that epoch.
    """
    plans = require_plans(workspace, folder_name, plans_name, configuration)
    fold_dir = nnunet_model_folder(output_root, folder_name, plans_name, configuration) / fold_folder_name(fold)
    if (fold_dir / FINAL_CHECKPOINT).is_file():
        return fold_dir
    dataset_json = json.loads((workspace.preprocessed / folder_name / "dataset.json").read_text())
    resume = (fold_dir / LATEST_CHECKPOINT).is_file()
    plans = dict(plans, continue_training=resume)
    with nnunet_paths(workspace, results=output_root, device=device):
        # the constructor prints the device on stdout; its log lines go to its own log file
        with captured_output(fold_dir.parent / f"{fold_folder_name(fold)}_training.log", verbose):
            trainer = IchsegTrainer(plans=plans, configuration=configuration, fold=fold,
                                    dataset_json=dataset_json, device=device)
        trainer.echo_log = verbose
        trainer.configure(params)
        trainer.epoch_callback = epoch_callback
        if resume:
            trainer.load_checkpoint(load_checkpoint(fold_dir / LATEST_CHECKPOINT))
        write_json(fold_dir / "trainer_params.json", params.to_dict(), overwrite=True)
        with quiet_warnings():
            trainer.run_training()
    return fold_dir


def training_state(output_root: Path, folder_name: str, plans_name: str, configuration: str,
                   fold: int | str) -> tuple[bool, int | None]:
    """Whether a model is finished, and if not, the epochs its latest checkpoint holds (None when
    it has saved none): what a resumed training starts from."""
    fold_dir = nnunet_model_folder(output_root, folder_name, plans_name, configuration) / fold_folder_name(fold)
    if (fold_dir / FINAL_CHECKPOINT).is_file():
        return True, None
    if not (fold_dir / LATEST_CHECKPOINT).is_file():
        return False, None
    checkpoint = load_checkpoint(fold_dir / LATEST_CHECKPOINT)
    return False, int(checkpoint["current_epoch"])
