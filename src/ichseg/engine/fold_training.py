"""Training one model (one configuration, one fold) with :class:`IchsegTrainer`, resumably."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ichseg import layout
from ichseg.atomic import write_json
from ichseg.engine.checkpoint import load_checkpoint
from ichseg.engine.environment import captured_output, nnunet_paths, quiet_warnings
from ichseg.engine.planning import require_plans
from ichseg.engine.trainer import IchsegTrainer, TrainerParams
from ichseg.layout import (
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    fold_folder_name,
    nnunet_model_folder,
)
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
    fold_dir = layout.fold_dir(nnunet_model_folder(output_root, folder_name, plans_name, configuration), fold)
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
        with quiet_warnings(), cudnn_autotuning(device):
            trainer.run_training()
    return fold_dir


@contextlib.contextmanager
def cudnn_autotuning(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest convolution algorithms for the patch size, as ``nnUNetv2_train``
    has it (nondeterministic); the process's own settings come back afterwards."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if device.type == "cuda":
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def training_state(output_root: Path, folder_name: str, plans_name: str, configuration: str,
                   fold: int | str) -> tuple[bool, int | None]:
    """Whether a model is finished, and if not, the epochs its latest checkpoint holds (None when
    it has saved none): what a resumed training starts from."""
    fold_dir = layout.fold_dir(nnunet_model_folder(output_root, folder_name, plans_name, configuration), fold)
    if (fold_dir / FINAL_CHECKPOINT).is_file():
        return True, None
    if not (fold_dir / LATEST_CHECKPOINT).is_file():
        return False, None
    checkpoint = load_checkpoint(fold_dir / LATEST_CHECKPOINT)
    return False, int(checkpoint["current_epoch"])


def save_untrained_model(workspace: Workspace, folder_name: str, plans_name: str, configuration: str,
                         fold: int | str, params: TrainerParams, output_root: Path, *, seed: int = 0,
                         logit_scale: float = 1.0) -> Path:
    """A model as training would leave it, with the network's initial (random) weights.

    For benchmarks and parity tests, where the computation matters and not the accuracy: the
    checkpoint is nnU-Net's own (written by the trainer), so every route loads it as a trained one.
    ``logit_scale`` multiplies the output layer, so that probabilities are decided (near 0 or 1)
    rather than all near 0.5, as they are with initial weights. Returns the fold folder; one that
    holds a final checkpoint already is left alone.
    """
    fold_dir = layout.fold_dir(nnunet_model_folder(output_root, folder_name, plans_name, configuration), fold)
    if (fold_dir / FINAL_CHECKPOINT).is_file():
        return fold_dir
    plans = dict(require_plans(workspace, folder_name, plans_name, configuration), continue_training=False)
    dataset_json = json.loads((workspace.preprocessed / folder_name / "dataset.json").read_text())
    device = torch.device("cpu")
    with nnunet_paths(workspace, results=output_root, device=device), \
            captured_output(fold_dir.parent / f"{fold_folder_name(fold)}_training.log", verbose=False):
        torch.manual_seed(seed)
        trainer = IchsegTrainer(plans=plans, configuration=configuration, fold=fold,
                                dataset_json=dataset_json, device=device)
        trainer.configure(params)
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the mirroring axes
        with torch.no_grad():
            for parameter in trainer.network.decoder.seg_layers[-1].parameters():
                parameter.mul_(logit_scale)
        trainer.save_checkpoint(str(fold_dir / FINAL_CHECKPOINT))
    # what the trainer's on_train_start leaves beside the folds, for inference
    write_json(fold_dir.parent / "plans.json", trainer.plans_manager.plans, overwrite=True)
    write_json(fold_dir.parent / "dataset.json", dataset_json, overwrite=True)
    write_json(fold_dir / "trainer_params.json", params.to_dict(), overwrite=True)
    return fold_dir
