"""ichseg's prediction against nnU-Net's own route on the same checkpoints, where resampling matters.

The models are nnU-Net checkpoints with initial weights and a scaled output layer
(:func:`ichseg.testing.untrained_model`): their probabilities are decided and spatially busy, so
every boundary shows a resampling difference. The case's spacing (5 × 1.2 × 1.2 mm) is far from the
plans' (tiny phantoms: about 9 × 3.6 × 3.6 mm) and it has a zero border that nnU-Net crops away, so
the prediction goes through cropping, resampling to the plans' spacing, and nnU-Net's separate-z
export back. The reference is ``nnUNetPredictor.predict_single_npy_array`` with the same weights.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import (
    determine_num_input_channels,
)
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from scipy.ndimage import zoom

from ichseg.engine import inference
from ichseg.engine.plans import read_model_json
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.io.image import CTImage, load_image
from ichseg.model.networks import ModelSet
from ichseg.recipes import load_recipe
from ichseg.segmentation.segmenter import Segmenter
from ichseg.segmentation.settings import InferenceSettings
from ichseg.testing import untrained_model

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
#: Where nnU-Net's probability is this close to 0.5, float rounding may tip a mask either way.
COIN_TOSS = 1e-4
NO_MIRRORING = InferenceSettings(mirroring=False)


@pytest.fixture(scope="module")
def case(planned_tiny) -> CTImage:
    """A tiny test phantom at 5 × 1.2 × 1.2 mm (slices × 1.9, pixels × 3), with a zero border."""
    root, _ = planned_tiny
    source = load_image(sorted((root / "test" / "data").glob("*.nii.gz"))[0])
    factors = (source.spacing[0] / 5.0, source.spacing[1] / 1.2, source.spacing[2] / 1.2)
    array = zoom(source.array.astype(np.float32), factors, order=1)
    array[:, :4], array[:, -3:], array[:, :, :5] = 0, 0, 0
    return CTImage(array, (5.0, 1.2, 1.2), source.origin, source.direction)


@pytest.fixture
def nnunets_norms(monkeypatch) -> None:
    """ichseg's networks keep nnU-Net's instance norms (on the CPU it swaps them for group norms,
    the same function by faster kernels, see the last test): every other step must then give
    nnU-Net's numbers to float32 rounding."""
    monkeypatch.setattr(inference, "group_norms_for_instance_norms", lambda network: None)


@pytest.fixture(scope="module")
def models(planned_tiny):
    """nnU-Net's default plans, one 3d_fullres and one 2d model with initial weights."""
    _, ws = planned_tiny
    recipe = dataclasses.replace(load_recipe("nnunet"), name="nnunet-untrained")
    return untrained_model("tiny", recipe, workspace=ws, folds=[0], groups=["3d_fullres", "2d"], logit_scale=30.0)


def nnunet_plans(network):
    """nnU-Net's own plans and configuration managers and dataset.json of a loaded network."""
    plans, dataset_json = read_model_json(network.nnunet_folder)
    manager = PlansManager(plans)
    return manager, manager.get_configuration(network.plan.configuration), dataset_json


def nnunet_network(network, fold: int = 0) -> torch.nn.Module:
    """The network as nnU-Net builds it from the plans, with the checkpoint's weights: the
    reference keeps nnU-Net's own modules (ichseg swaps instance norms for group norms on the CPU)."""
    plans_manager, configuration, dataset_json = nnunet_plans(network)
    made = get_network_from_plans(
        configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
        configuration.network_arch_init_kwargs_req_import,
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, deep_supervision=False)
    checkpoint = torch.load(network.nnunet_folder / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)
    made.load_state_dict(checkpoint["network_weights"])
    return made.eval()


def nnunet_probability(network, image: CTImage) -> np.ndarray:
    """P(class 1) by nnU-Net's own route: its network, preprocessing, sliding window, export."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=CPU, allow_tqdm=False)
    reference = nnunet_network(network)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in reference.modules())
    plans_manager, configuration, dataset_json = nnunet_plans(network)
    predictor.manual_initialization(reference, plans_manager, configuration, [reference.state_dict()],
                                    dataset_json, "IchsegTrainer", None)
    _, probabilities = predictor.predict_single_npy_array(image.array[None].astype(np.float32),
                                                          {"spacing": list(image.spacing)}, None, None, True)
    return probabilities[1]


def assert_same_masks(ours: np.ndarray, reference: np.ndarray, name: str) -> None:
    """Probabilities within 1e-5 (the issue asks 1e-4; the port reproduces nnU-Net's float16 logits
    exactly, leaving float32 softmax rounding); masks differ only where nnU-Net's P is a coin toss."""
    assert ours.shape == reference.shape, name
    assert np.abs(ours - reference).max() < 1e-5, name
    mask, expected = ours > 0.5, reference > 0.5
    assert expected.sum() > 100 and (~expected).sum() > 100, f"{name}: a trivial reference proves nothing"
    differ = mask != expected
    assert np.all(np.abs(reference[differ] - 0.5) < COIN_TOSS), name
    dice = 2 * (mask & expected).sum() / (mask.sum() + expected.sum())
    assert dice >= 0.999, f"{name}: Dice {dice}"


@pytest.mark.usefixtures("nnunets_norms")
def test_each_model_gives_nnunets_probabilities_on_a_resampled_cropped_case(models, case):
    model_set = ModelSet(models, models.select(), CPU, NO_MIRRORING)
    assert {m.configuration for m in model_set.models} == {"3d_fullres", "2d"}
    prepared = model_set.prepare(case)
    outputs = model_set.probabilities(prepared)
    for model, network, output in zip(model_set.models, model_set.networks, outputs, strict=True):
        assert network.plan.spacing != case.spacing[-len(network.plan.spacing):]
        assert_same_masks(output.probability.numpy(), nnunet_probability(network, case), model.configuration)


@pytest.mark.usefixtures("nnunets_norms")
def test_an_ensemble_gives_nnunets_per_model_probabilities_combined(models, case):
    settings = InferenceSettings(ensemble=EnsembleSpec("mean"), mirroring=False)
    segmenter = Segmenter.load(models.path, settings, device="cpu")
    segmentation = segmenter.segment(case)
    each = [nnunet_probability(n, case) for n in segmenter.models.networks]
    reference = np.mean(each, axis=0)
    expected = reference > 0.5
    differ = (segmentation.mask.array != 0) != expected
    assert np.all(np.abs(reference[differ] - 0.5) < COIN_TOSS)
    assert expected.sum() > 100
    near = np.any([np.abs(p - 0.5) < COIN_TOSS for p in each], axis=0)
    votes = np.sum([p > 0.5 for p in each], axis=0)
    assert np.array_equal(segmentation.votes.array[~near], votes[~near])


@pytest.mark.usefixtures("nnunets_norms")
def test_padded_windowed_route_equals_nnunet_on_the_padded_image_with_the_pads_removed(planned_tiny_liangwei, case):
    _, ws = planned_tiny_liangwei
    recipe = dataclasses.replace(load_recipe("liangwei2022"), name="liangwei-untrained")
    folder = untrained_model("tiny", recipe, workspace=ws, folds=[0], logit_scale=30.0)
    model_set = ModelSet(folder, folder.select(), CPU, NO_MIRRORING)
    (output,) = model_set.probabilities(model_set.prepare(case))
    windowed = model_set.preprocessing.apply(case)
    assert windowed.shape[0] == case.shape[0] + 2
    reference = model_set.preprocessing.revert_array(nnunet_probability(model_set.networks[0], windowed))
    assert_same_masks(output.probability.numpy(), reference, "liangwei2022")


@pytest.mark.usefixtures("nnunets_norms")
def test_preprocessing_equals_nnunets_default_preprocessor(models, case):
    """ichseg prepares cases without nnU-Net's preprocessor class (its module imports the training
    data loaders); the arrays and properties must be the class's own."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import (
        DefaultPreprocessor,
    )

    model_set = ModelSet(models, models.select(), CPU, NO_MIRRORING)
    prepared = model_set.prepare(case)
    for network in model_set.networks:
        expected, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            case.array[None].astype(np.float32), None, {"spacing": list(case.spacing)}, *nnunet_plans(network))
        ours = prepared.inputs[network.preprocessing_key]
        assert np.array_equal(ours.data.numpy(), expected), network.configuration
        assert [list(b) for b in ours.properties["bbox_used_for_cropping"]] == \
            [list(b) for b in properties["bbox_used_for_cropping"]]
        for key in ("shape_before_cropping", "shape_after_cropping_and_before_resampling"):
            assert tuple(ours.properties[key]) == tuple(properties[key]), key


#: Roundings to float16 a logit goes through between the network and the probability: one per
#: overlapping tile added to nnU-Net's accumulator (at most 2**3 at step 0.5 in 3D), the division by
#: the summed weights, and the float16 result of the export resampling.
FLOAT16_ROUNDINGS = 2 ** 3 + 2
#: One float16 rounding moves a value by at most one unit in its last place: 2**-10 of it.
FLOAT16_ULP = 2.0 ** -10


def test_group_norms_on_the_cpu_keep_nnunets_masks(models, case):
    """On the CPU the networks' instance norms are group norms (one channel per group): the same
    function, rounded differently in float32. nnU-Net accumulates logits in float16, so a last-bit
    difference can tip any of the float16 roundings a logit goes through by one unit: each class's
    logit by at most FLOAT16_ROUNDINGS x FLOAT16_ULP x its magnitude (bounded by the largest tile
    logit, twice the largest averaged one here), the two-class softmax by a quarter of the change
    of their difference. That bounds the probabilities; the masks must keep the Dice ≥ 0.999 that
    ichseg promises against nnU-Net's own route."""
    model_set = ModelSet(models, models.select(groups=["3d_fullres"]), CPU, NO_MIRRORING)
    network = model_set.networks[0]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in network.window.network.modules())
    prepared = model_set.prepare(case)
    largest_logit = 2 * float(network.window.logits(prepared.inputs[network.preprocessing_key].data).abs().max())
    bound = 0.25 * 2 * FLOAT16_ROUNDINGS * FLOAT16_ULP * largest_logit
    (output,) = model_set.probabilities(prepared)
    ours, reference = output.probability.numpy(), nnunet_probability(network, case)
    assert np.abs(ours - reference).max() <= bound, bound
    mask, expected = ours > 0.5, reference > 0.5
    dice = 2 * (mask & expected).sum() / (mask.sum() + expected.sum())
    assert expected.sum() > 100 and dice >= 0.999, dice
