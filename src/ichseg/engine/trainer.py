"""One parameterised nnU-Net trainer for every recipe.

:class:`IchsegTrainer` is nnU-Net's trainer with three things made parameters: the loss
(``dice_weight · Dice + ce_weight · class-weighted CE``), the optimiser (SGD-Nesterov 0.99, nnU-Net's
default, or Adam) and the poly schedule (initial rate, exponent, epochs, iterations per epoch). The
network has one output per class of the data set (background, then one or five hemorrhage
classes), with nnU-Net's softmax over them. The parameters are set with
:meth:`IchsegTrainer.configure` before training and written beside the checkpoints
(``trainer_params.json``); prediction needs none of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ichseg.engine.losses import DiceWeightedCELoss
from ichseg.engine.params import LossSpec, TrainingSpec
from ichseg.progress import TrainingEpoch


@dataclass(frozen=True)
class TrainerParams:
    """Everything that distinguishes one recipe's training from another's."""

    loss: LossSpec
    training: TrainingSpec
    checkpoint_every: int = 50

    def to_dict(self) -> dict:
        data = asdict(self)
        weights = data["loss"]["class_weights"]
        data["loss"]["class_weights"] = list(weights) if weights is not None else None
        return data


class IchsegTrainer(nnUNetTrainer):
    """nnU-Net's trainer with the recipe's loss, optimiser and schedule."""

    #: Called after every epoch with its losses and pseudo-Dice.
    epoch_callback: Callable[[TrainingEpoch], None] | None = None
    #: Whether the trainer's log lines also go to stdout (``--verbose``); they always go to its
    #: log file. A class default, since nnU-Net's constructor already logs.
    echo_log: bool = False

    def configure(self, params: TrainerParams) -> None:
        """Apply a recipe's parameters; call before :meth:`initialize`."""
        if self.was_initialized:
            raise RuntimeError("configure() must be called before the trainer is initialised")
        self.params = params
        training = params.training
        self.initial_lr = training.initial_lr
        self.num_epochs = training.epochs
        self.num_iterations_per_epoch = training.iterations_per_epoch
        self.num_val_iterations_per_epoch = training.val_iterations_per_epoch
        self.save_every = params.checkpoint_every

    def _build_loss(self) -> torch.nn.Module:
        """The recipe's loss over as many classes as the data set's labels declare (nnU-Net's
        label manager reads them from ``dataset.json``): one CE weight per class."""
        loss_spec: LossSpec = self.params.loss
        loss: torch.nn.Module = DiceWeightedCELoss(
            {"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False,
             "ddp": self.is_ddp},
            dice_weight=loss_spec.dice_weight,
            ce_weight=loss_spec.ce_weight,
            class_weights=loss_spec.class_weight_vector(self.label_manager.num_segmentation_heads),
        )
        if self.enable_deep_supervision:
            # nnU-Net's weighting: halve per level, drop the lowest, normalise to sum 1.
            scales = self._get_deep_supervision_scales()
            weights = np.array([1 / (2 ** i) for i in range(len(scales))])
            weights[-1] = 0
            loss = DeepSupervisionWrapper(loss, weights / weights.sum())
        return loss

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PolyLRScheduler]:
        training: TrainingSpec = self.params.training
        optimizer: torch.optim.Optimizer
        if training.optimizer == "adam":
            # one fused kernel per step instead of a loop over parameter tensors: the same update,
            # about 3x faster a step on a CPU (and the usual choice on a GPU)
            optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr,
                                         weight_decay=self.weight_decay, fused=self.device.type in ("cuda", "cpu"))
        else:
            optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                        momentum=0.99, nesterov=True)
        scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=training.poly_exponent)
        return optimizer, scheduler

    def plot_network_architecture(self) -> None:
        """Skipped: drawing the graph costs time and needs optional packages."""

    def print_to_log_file(self, *args, also_print_to_console: bool = True,
                          add_timestamp: bool = True) -> None:
        """nnU-Net's logging hook: every line to the log file, to stdout only with ``echo_log``."""
        super().print_to_log_file(*args, also_print_to_console=also_print_to_console and self.echo_log,
                                  add_timestamp=add_timestamp)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """Resume from a checkpoint's contents (read safely by :mod:`ichseg.engine.checkpoint`).

        nnU-Net 2.8.1's own method takes a dict in its signature but reads ``checkpoint`` only from
        a path, so a dict fails there; this is its single-process path with the dict used as given.
        """
        if isinstance(filename_or_checkpoint, str):
            return super().load_checkpoint(filename_or_checkpoint)
        checkpoint = filename_or_checkpoint
        if not self.was_initialized:
            self.initialize()
        compiled = hasattr(self.network, "_orig_mod")  # torch.compile wraps the network
        network = self.network._orig_mod if compiled else self.network
        network.load_state_dict({key.removeprefix("module."): value
                                 for key, value in checkpoint["network_weights"].items()})
        self.my_init_kwargs = checkpoint["init_args"]
        self.current_epoch = checkpoint["current_epoch"]
        self.logger.load_checkpoint(checkpoint["logging"])
        self._best_ema = checkpoint["_best_ema"]
        if "inference_allowed_mirroring_axes" in checkpoint:
            self.inference_allowed_mirroring_axes = checkpoint["inference_allowed_mirroring_axes"]
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint.get("grad_scaler_state") is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
        return None

    def _do_i_compile(self) -> bool:
        """torch.compile costs minutes per model and run, worth it only for long trainings on a
        GPU: on only when the user sets nnU-Net's ``nnUNet_compile`` (nnU-Net's default is on)."""
        wanted = os.environ.get("nnUNet_compile", "").lower() in ("true", "1", "t")
        return wanted and super()._do_i_compile()

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        """nnU-Net's pseudo-Dice per class; a class absent from every validation patch (a subtype
        the batch lacks) has none: NaN, which its mean skips, without numpy's warning."""
        with np.errstate(invalid="ignore", divide="ignore"):
            super().on_validation_epoch_end(val_outputs)

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        if self.epoch_callback is not None:
            log = self.logger
            self.epoch_callback(TrainingEpoch(
                done=self.current_epoch, total=self.num_epochs,
                train_loss=float(log.get_value("train_losses", step=-1)),
                val_loss=float(log.get_value("val_losses", step=-1)),
                pseudo_dice=float(log.get_value("mean_fg_dice", step=-1))))
