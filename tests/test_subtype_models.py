"""Models of the five hemorrhage types on the CPU: nnU-Net's class probabilities reproduced, and
typed phantoms from import to per-type evaluation (synth → import → plan → train two folds →
out of fold → cv-report → postprocess-select → predict → evaluate).

One workspace of typed tiny phantoms is planned once for the module (3d_fullres only). The
trained model is one li2022 group, two folds of one epoch of two iterations: every step runs for
real and leaves what it should; its Dice is near 0.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json

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

from ichseg.cli import main
from ichseg.commands import train
from ichseg.crossval import cv_report, select_postprocessing
from ichseg.engine import inference
from ichseg.engine.plans import read_model_json
from ichseg.io.image import CTImage, load_image
from ichseg.labels import SUBTYPES
from ichseg.model.networks import ModelSet
from ichseg.postprocessing import ClassPostprocessing
from ichseg.postprocessing.class_selection import ClassSelection
from ichseg.recipes import load_recipe
from ichseg.segmentation.segmenter import Segmenter, folder_rule
from ichseg.segmentation.settings import InferenceSettings
from ichseg.testing import untrained_model

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
K = SUBTYPES.n_classes
#: Where nnU-Net's two largest class probabilities are this close, float rounding may pick either.
COIN_TOSS = 1e-4


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """Six typed tiny phantoms imported as data set ``typed`` and planned (3d_fullres), two more to
    test on; returns (root, workspace)."""
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.training import plan
    from ichseg.workspace import Workspace

    root = tmp_path_factory.mktemp("typed")
    synthesize(root / "train", 6, seed=0, size="tiny", progress=False, subtypes=True)
    synthesize(root / "test", 2, seed=77, size="tiny", progress=False, subtypes=True)
    ws = Workspace.open(root / "ws")
    assert import_dataset(root / "train", "typed", ws, progress=False).labels == SUBTYPES
    plan("typed", "li2022", workspace=ws, configurations=("3d_fullres",), progress=False)
    return root, ws


@pytest.fixture
def nnunets_norms(monkeypatch) -> None:
    """ichseg keeps nnU-Net's instance norms (see test_fidelity): every step must then give
    nnU-Net's numbers to float32 rounding."""
    monkeypatch.setattr(inference, "group_norms_for_instance_norms", lambda network: None)


def resampled_case(root) -> CTImage:
    """A typed test phantom at 5 × 1.2 × 1.2 mm with a zero border nnU-Net crops away."""
    source = load_image(sorted((root / "test" / "data").glob("*.nii.gz"))[1])
    factors = (source.spacing[0] / 5.0, source.spacing[1] / 1.2, source.spacing[2] / 1.2)
    array = zoom(source.array.astype(np.float32), factors, order=1)
    array[:, :4], array[:, -3:], array[:, :, :5] = 0, 0, 0
    return CTImage(array, (5.0, 1.2, 1.2), source.origin, source.direction)


def nnunet_class_probabilities(network, image: CTImage) -> np.ndarray:
    """Every class's probability by nnU-Net's own route: its network (instance norms), its
    preprocessing, sliding window and export."""
    plans, dataset_json = read_model_json(network.nnunet_folder)
    manager = PlansManager(plans)
    configuration = manager.get_configuration(network.plan.configuration)
    reference = get_network_from_plans(
        configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
        configuration.network_arch_init_kwargs_req_import,
        determine_num_input_channels(manager, configuration, dataset_json),
        manager.get_label_manager(dataset_json).num_segmentation_heads, deep_supervision=False)
    checkpoint = torch.load(network.nnunet_folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    reference.load_state_dict(checkpoint["network_weights"])
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=CPU, allow_tqdm=False)
    predictor.manual_initialization(reference.eval(), manager, configuration, [reference.state_dict()],
                                    dataset_json, "IchsegTrainer", None)
    _, probabilities = predictor.predict_single_npy_array(image.array[None].astype(np.float32),
                                                          {"spacing": list(image.spacing)}, None, None, True)
    return probabilities


@pytest.mark.usefixtures("nnunets_norms")
def test_a_model_of_the_subtypes_gives_nnunets_class_probabilities(typed):
    root, ws = typed
    recipe = dataclasses.replace(load_recipe("nnunet"), name="nnunet-untrained")
    folder = untrained_model("typed", recipe, workspace=ws, folds=[0], groups=["3d_fullres"], logit_scale=30.0)
    case = resampled_case(root)
    models = ModelSet(folder, folder.select(), CPU, InferenceSettings(mirroring=False))
    assert models.labels == SUBTYPES and models.networks[0].plan.spacing != case.spacing
    (output,) = models.probabilities(models.prepare(case))
    ours = output.probability.numpy()
    reference = nnunet_class_probabilities(models.networks[0], case)
    assert ours.shape == reference.shape == (K, *case.shape)
    assert np.abs(ours - reference).max() < 1e-5
    assert (ours[0, :, :4] == 1).all()  # outside nnU-Net's crop: background
    top_two = np.sort(reference, axis=0)[-2:]
    differ = ours.argmax(axis=0) != reference.argmax(axis=0)
    assert np.all(top_two[1][differ] - top_two[0][differ] < COIN_TOSS)
    assert len(np.unique(reference.argmax(axis=0))) >= 3  # several classes: a trivial map proves little


def test_typed_phantoms_train_predict_and_evaluate_per_type(typed):
    root, ws = typed
    folder = train("typed", "li2022", workspace=ws, groups=["3d_wce"], folds=[0, 1], epochs=1, iterations=2,
                   val_iterations=1, device="cpu", progress=False)
    assert folder.labels == SUBTYPES
    held_out = sorted(path.stem for path in folder.oof_dir("3d_wce").glob("*.npz"))
    assert len(held_out) >= 2
    for name in held_out:
        reference = load_image(ws.raw / ws.dataset_folder_name("typed") / "labelsTr" / f"{name}.nii.gz")
        with np.load(folder.oof_dir("3d_wce") / f"{name}.npz") as stored:
            assert stored["probability"].shape == (K - 1, *reference.shape)
            assert stored["probability"].dtype == np.uint8 and list(stored["classes"]) == list(SUBTYPES.names)

    report = cv_report(folder.path, ws, progress=False)
    assert list(report.results) == ["3d_wce"] and set(report.class_results) == set(SUBTYPES.names[1:])
    assert all(len(rows["3d_wce"]) == len(held_out) for rows in report.class_results.values())
    assert report.markdown.startswith("## Any hemorrhage") and "\n## SDH\n" in report.markdown
    assert {row["class"] for row in csv.DictReader(io.StringIO(report.csv))} == {"any", *SUBTYPES.names[1:]}

    selection = select_postprocessing(folder.path, ws, progress=False)
    assert isinstance(selection, ClassSelection) and selection.any_hemorrhage is not None  # the CTs were there
    saved = json.loads(folder.postprocessing_file.read_text())
    assert saved["steps"] == selection.chosen.steps.to_list() and "classes" in saved
    assert isinstance(folder_rule(folder), ClassPostprocessing)

    out = root / "pred"
    assert main(["predict", "-i", str(root / "test" / "data"), "-o", str(out), "--model", str(folder.path),
                 "--device", "cpu", "--no-mirroring", "--workspace", str(ws.root)]) == 0
    segmenter = Segmenter.load(folder.path, InferenceSettings(mirroring=False), device="cpu")
    for source in sorted((root / "test" / "data").glob("*.nii.gz")):
        image, mask = load_image(source), load_image(out / source.name)
        segmentation = segmenter.segment(image)
        assert segmentation.labels == SUBTYPES and segmentation.mask.array.dtype == np.uint8
        assert set(np.unique(segmentation.mask.array).tolist()) <= set(range(K))
        assert mask.same_geometry(image) and mask.array.dtype == np.uint8
        # The file holds what the writer keeps of the class map (report/outputs.py): any hemorrhage
        # at least, each voxel's class where the writer keeps the values.
        np.testing.assert_array_equal(mask.array != 0, segmentation.mask.array != 0)
        record = json.loads((out / source.name.replace(".nii.gz", ".json")).read_text())
        assert record["postprocessing"]["rule"] == selection.chosen.name

    assert main(["evaluate", str(out), str(root / "test" / "label"), "-o", str(root / "eval")]) == 0
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert set(summary["classes"]) == set(SUBTYPES.names[1:])
    rows = list(csv.DictReader(io.StringIO((root / "eval" / "metrics.csv").read_text())))
    assert {row["class"] for row in rows} == {"any", *SUBTYPES.names[1:]}
