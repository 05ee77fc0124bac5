"""The weighted CE + Dice loss against a hand computation and against nnU-Net's own loss."""

import math

import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from ichseg.engine.losses import DiceWeightedCELoss, WeightedCrossEntropy

DICE_KWARGS = {"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}
#: float32's unit roundoff: one rounding moves a value by at most this share of it.
FLOAT32_U = 2.0 ** -24


def order_tolerance(logits: torch.Tensor, target: torch.Tensor, dice_weight: float, ce_weight: float) -> float:
    """How far two float32 computations of ``dice + CE`` may lie apart when they take the same
    per-voxel cross-entropies and the same Dice but sum the n cross-entropies in another order
    (ours: torch's mean; nnU-Net's: the cross-entropy kernel's own sum, whose order depends on the
    CPU's vector width). Summed in any order, n non-negative terms are within (n - 1)·u of their
    sum, so the two means lie within 2·n·u of the mean cross-entropy; the weighting and the final
    sum round each term once more (the Dice loss lies in [-1, 0])."""
    nll = -torch.log_softmax(logits.double(), 1).gather(1, target.long()).flatten()
    ce = float(nll.mean())
    return FLOAT32_U * (2 * nll.numel() * ce_weight * ce + 4 * (dice_weight + ce_weight * ce))


def test_weighted_cross_entropy_matches_hand_computation():
    # Two voxels: background with p(bg) = e^2/(e^2+1), hemorrhage with p(hem) = 1/(1+e^1).
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0 - 1.0]]])  # (b=1, c=2, n=2)
    logits = logits.permute(0, 1, 2)  # (1, 2, 2): class axis 1, voxel axis 2
    target = torch.tensor([[[0, 1]]])  # (b=1, 1, n=2)
    p_bg_voxel0 = math.exp(2) / (math.exp(2) + math.exp(0))
    p_hem_voxel1 = math.exp(-1) / (math.exp(0) + math.exp(-1))
    expected = -(0.2 * math.log(p_bg_voxel0) + 0.8 * math.log(p_hem_voxel1)) / 2  # -(1/N) sum w log p
    loss = WeightedCrossEntropy([0.2, 0.8])(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_divides_by_voxel_count_not_weight_sum():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, 5)
    target = torch.randint(0, 2, (2, 1, 4, 5, 5))
    ours = WeightedCrossEntropy([0.2, 0.8])(logits, target)
    per_voxel = torch.nn.functional.cross_entropy(logits, target[:, 0], reduction="none")
    weights = torch.tensor([0.2, 0.8])[target[:, 0]]
    assert ours.item() == pytest.approx((per_voxel * weights).mean().item(), rel=1e-6)
    torch_weighted_mean = torch.nn.functional.cross_entropy(logits, target[:, 0], weight=torch.tensor([0.2, 0.8]))
    assert abs(ours.item() - torch_weighted_mean.item()) > 1e-3


def test_compound_loss_is_lambda_weighted_sum():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 3, 8, 8)
    target = torch.randint(0, 2, (2, 1, 3, 8, 8)).float()
    loss = DiceWeightedCELoss(DICE_KWARGS, dice_weight=0.6, ce_weight=0.4, class_weights=[0.2, 0.8])
    dice = MemoryEfficientSoftDiceLoss(apply_nonlin=lambda x: torch.softmax(x, 1), **DICE_KWARGS)(logits, target)
    wce = WeightedCrossEntropy([0.2, 0.8])(logits, target)
    assert loss(logits, target).item() == pytest.approx(0.6 * dice.item() + 0.4 * wce.item(), rel=1e-6)


@pytest.mark.parametrize("dice_weight, ce_weight", [(1.0, 1.0), (0.6, 0.4)])
def test_equals_nnunet_dc_and_ce_loss_with_unit_class_weights(dice_weight, ce_weight):
    torch.manual_seed(2)
    logits = torch.randn(2, 2, 4, 6, 6)
    target = torch.randint(0, 2, (2, 1, 4, 6, 6)).float()
    ours = DiceWeightedCELoss(DICE_KWARGS, dice_weight, ce_weight, class_weights=None)
    nnunet = DC_and_CE_loss(dict(DICE_KWARGS), {}, weight_ce=ce_weight, weight_dice=dice_weight,
                            dice_class=MemoryEfficientSoftDiceLoss)
    tolerance = order_tolerance(logits, target, dice_weight, ce_weight)
    assert ours(logits, target).item() == pytest.approx(nnunet(logits, target).item(), rel=0, abs=tolerance)


@pytest.mark.parametrize("optimizer, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_optimiser_and_poly_schedule_follow_the_recipe(optimizer, kind):
    from types import SimpleNamespace

    from ichseg.engine.trainer import IchsegTrainer, TrainerParams
    from ichseg.recipes import LossSpec, TrainingSpec

    training = TrainingSpec(optimizer=optimizer, initial_lr=0.01, poly_exponent=0.9, epochs=10)
    fake = SimpleNamespace(network=torch.nn.Linear(3, 2), initial_lr=0.01, weight_decay=3e-5, num_epochs=10,
                           params=TrainerParams(LossSpec(), training), device=torch.device("cpu"))
    opt, scheduler = IchsegTrainer.configure_optimizers(fake)
    assert type(opt) is kind
    if optimizer == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.99 and opt.param_groups[0]["nesterov"]
    else:  # one fused kernel per step: the same update as the loop over tensors
        assert opt.param_groups[0]["fused"]
        reference = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.01, weight_decay=3e-5)
        reference.param_groups[0]["params"][0].data.copy_(opt.param_groups[0]["params"][0].data)
        reference.param_groups[0]["params"][1].data.copy_(opt.param_groups[0]["params"][1].data)
        x = torch.randn(8, 3)
        for _ in range(3):
            for optimiser in (opt, reference):
                parameters = optimiser.param_groups[0]["params"]
                loss = (x @ parameters[0].T + parameters[1]).square().sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        for ours, theirs in zip(opt.param_groups[0]["params"], reference.param_groups[0]["params"], strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    for epoch in (0, 3, 9):
        scheduler.step(epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - epoch / 10) ** 0.9)


# --- several classes: the five subtypes -------------------------------------------------------

def test_weighted_cross_entropy_over_subtypes_matches_hand_computation():
    from ichseg.engine.params import LossSpec

    weights = LossSpec(class_weights=(0.2, 0.8)).class_weight_vector(4)
    assert weights == (0.2, 0.8, 0.8, 0.8)
    # three voxels of classes 0, 2 and 3 (b=1, c=4, n=3)
    logits = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.0], [0.0, 1.0, 1.5]]])
    target = torch.tensor([[[0, 2, 3]]])
    expected = 0.0
    for voxel, cls in enumerate((0, 2, 3)):
        column = [float(logits[0, c, voxel]) for c in range(4)]
        log_p = column[cls] - math.log(sum(math.exp(z) for z in column))
        expected -= weights[cls] * log_p
    expected /= 3  # -(1/N) sum_n w_{y_n} log p_{n, y_n}
    assert WeightedCrossEntropy(weights)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_the_recipes_two_weights_expand_to_every_hemorrhage_class():
    from ichseg.engine.params import LossSpec

    li_chen = LossSpec(0.6, 0.4, (0.2, 0.8))
    assert li_chen.class_weight_vector(2) == (0.2, 0.8)  # the paper's one class, unchanged
    assert li_chen.class_weight_vector(6) == (0.2, 0.8, 0.8, 0.8, 0.8, 0.8)
    assert LossSpec().class_weight_vector(6) is None


def test_equals_nnunet_dc_and_ce_loss_over_six_classes_with_unit_class_weights():
    torch.manual_seed(3)
    logits = torch.randn(2, 6, 4, 6, 6)
    target = torch.randint(0, 6, (2, 1, 4, 6, 6)).float()
    ours = DiceWeightedCELoss(DICE_KWARGS, 1.0, 1.0, class_weights=None)
    nnunet = DC_and_CE_loss(dict(DICE_KWARGS), {}, weight_ce=1.0, weight_dice=1.0,
                            dice_class=MemoryEfficientSoftDiceLoss)
    tolerance = order_tolerance(logits, target, 1.0, 1.0)
    assert ours(logits, target).item() == pytest.approx(nnunet(logits, target).item(), rel=0, abs=tolerance)


@pytest.mark.parametrize("labels, expected", [
    ({"background": 0, "hemorrhage": 1}, [0.2, 0.8]),
    ({"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}, [0.2, 0.8, 0.8, 0.8, 0.8, 0.8]),
])
def test_trainer_weights_each_class_nnunet_reads_from_dataset_json(labels, expected):
    from types import SimpleNamespace

    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from ichseg.engine.params import LossSpec, TrainingSpec
    from ichseg.engine.trainer import IchsegTrainer, TrainerParams

    fake = SimpleNamespace(params=TrainerParams(LossSpec(0.6, 0.4, (0.2, 0.8)), TrainingSpec()),
                           configuration_manager=SimpleNamespace(batch_dice=True), is_ddp=False,
                           label_manager=LabelManager(labels, regions_class_order=None),
                           enable_deep_supervision=False)
    loss = IchsegTrainer._build_loss(fake)
    assert loss.ce.class_weights.tolist() == pytest.approx(expected)
    assert (loss.dice_weight, loss.ce_weight) == (0.6, 0.4)
