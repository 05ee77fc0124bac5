"""The weighted cross-entropy + Dice loss of Li & Chen (eq. 1–2).

``L = λ_dice · L_dice + λ_ce · L_wce`` with ``L_wce = -(1/N) Σ_n Σ_c w_c y_nc log p_nc``. The
cross-entropy is divided by the voxel count N, as the paper's equation says; torch's weighted
``CrossEntropyLoss`` would instead divide by ``Σ_n w_{y_n}``, which cancels the weighting's effect on
the loss scale. With unit weights both agree, and so this loss equals nnU-Net's ``DC_and_CE_loss``.
The Dice term is nnU-Net's own memory-efficient soft Dice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1
from torch import nn


class WeightedCrossEntropy(nn.Module):
    """Class-weighted cross-entropy averaged over all voxels (Li & Chen eq. 1)."""

    class_weights: torch.Tensor | None  # a buffer: it follows the module to its device

    def __init__(self, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (b, c, ...); ``target`` (b, 1, ...) or (b, ...) of class indices."""
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        log_p = F.log_softmax(logits.float(), dim=1)
        nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        if self.class_weights is not None:
            nll = nll * self.class_weights.to(nll.device)[target]
        return nll.mean()


class DiceWeightedCELoss(nn.Module):
    """``dice_weight · soft Dice + ce_weight · weighted CE`` on one network output."""

    def __init__(self, soft_dice_kwargs: dict, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.dc = MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, **soft_dice_kwargs)
        self.ce = WeightedCrossEntropy(class_weights)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = self.dc(net_output, target) if self.dice_weight else 0.0
        ce = self.ce(net_output, target) if self.ce_weight else 0.0
        loss = self.dice_weight * dice + self.ce_weight * ce
        if not isinstance(loss, torch.Tensor):
            raise ValueError("a loss needs a Dice or a cross-entropy weight above 0")
        return loss
