"""Prediction with several hemorrhage classes, with fake model sets (no torch): the segmenter's class
map against an independent computation from the same probabilities, the one-class route as it
was, class maps back in the input's orientation, postprocessing per class, out-of-fold files of
K classes, and cv-report and postprocess-select per class on a model folder's out-of-fold files.

Each fake model gives every voxel a softmax over K classes of logits drawn from the voxel's HU
and the model's own random weights, so models disagree and every strategy is computed here
voxel by voxel from the papers' rules (DESIGN §15).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ichseg.batch.runner import predict_folder
from ichseg.crossval import cv_report, select_postprocessing
from ichseg.data.synth import Tissue, generate_case
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.io.image import CTImage, load_image, save_image
from ichseg.labels import ONE_CLASS, SUBTYPES
from ichseg.metrics import metrics_by_class
from ichseg.model.folder import ModelFolder
from ichseg.model.networks import ModelSet
from ichseg.model.out_of_fold import read_out_of_fold, stored_probabilities
from ichseg.postprocessing import (
    ClassPostprocessing,
    Postprocessing,
    Rule,
    RuleError,
    find_intracranial_space,
    load_rule,
    postprocess,
    postprocess_classes,
    save_rule,
)
from ichseg.postprocessing.class_selection import ClassCase, select_class_rules
from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.recipes import load_recipe
from ichseg.report.options import OutputOptions
from ichseg.segmentation.segmenter import Segmenter, folder_rule
from test_segmenter import FakeModels

RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SPACING = (5.0, 0.8, 0.6)
K = SUBTYPES.n_classes
EDH, IPH, SAH, SDH = (SUBTYPES.value(name) for name in ("EDH", "IPH", "SAH", "SDH"))


def class_probabilities(hu: np.ndarray, seed: int, n_classes: int = K) -> np.ndarray:
    """A model's softmax (K, z, y, x) of each voxel's HU alone: background likelier at low HU,
    the classes' logits a wave in HU with the model's own weights (so the models disagree)."""
    rng = np.random.default_rng(seed)
    slope, offset, frequency, phase = (rng.normal(0, scale, (n_classes, 1, 1, 1)) for scale in (0.01, 1.0, 0.2, 3.0))
    logits = slope * hu[None] + offset + 1.5 * np.sin(frequency * hu[None] + phase)
    logits[0] += (40 - hu) / 25
    weights = np.exp(logits - logits.max(axis=0))
    return (weights / weights.sum(axis=0)).astype(np.float32)


@dataclass
class Output:
    probability: np.ndarray


class FakeClassModels:
    """Models of K classes whose probabilities are :func:`class_probabilities` of the case's HU."""

    labels = SUBTYPES

    def __init__(self, seeds: tuple[int, ...]) -> None:
        self.seeds = seeds
        self.orientations: list[str] = []

    def __len__(self) -> int:
        return len(self.seeds)

    def prepare(self, image: CTImage) -> np.ndarray:
        self.orientations.append(image.orientation)
        return image.array.astype(np.float32)

    def probabilities(self, prepared: np.ndarray):
        for seed in self.seeds:
            yield Output(class_probabilities(prepared, seed))


SEEDS = (1, 2, 3, 4, 5)


@pytest.fixture
def hu() -> np.ndarray:
    return np.random.default_rng(3).uniform(-100, 150, size=(6, 9, 11)).astype(np.float32)


def expected_class_map(probabilities: np.ndarray, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN §15's rules voxel by voxel, in float64, from the models' probabilities (C, K, ...):
    the class map and the any-hemorrhage votes."""
    n_models = probabilities.shape[0]
    mean = probabilities.astype(np.float64).mean(axis=0)
    choices = probabilities.argmax(axis=1)
    votes = (choices != 0).sum(axis=0)
    result = np.zeros(mean.shape[1:], np.uint8)
    if strategy == "uncertainty":  # eq. 4-5 (printed HR, N1 = 1, N2 = C // 2) on the votes for any class
        hr = np.count_nonzero(votes == n_models // 2) / np.count_nonzero(votes)
        where = ((hr < 0.5) | (votes > 1)) & ((hr > 0.5) | (votes > n_models // 2))
    for index in np.ndindex(*result.shape):
        means = mean[(slice(None), *index)]
        if strategy == "mean":
            result[index] = int(np.argmax(means))
        elif strategy == "vote":
            counts = np.bincount(choices[(slice(None), *index)], minlength=len(means))
            result[index] = max(range(len(means)), key=lambda k: (counts[k], means[k], -k))
        elif where[index]:
            result[index] = 1 + int(np.argmax(means[1:]))
    return result, votes


@pytest.mark.parametrize("strategy", ["mean", "vote", "uncertainty"])
def test_each_strategy_gives_its_class_map(hu, strategy):
    result = Segmenter(FakeClassModels(SEEDS), EnsembleSpec(strategy)).segment(hu, SPACING)
    probabilities = np.stack([class_probabilities(hu, seed) for seed in SEEDS])
    expected, votes = expected_class_map(probabilities, strategy)
    assert result.mask.array.dtype == np.uint8 and result.labels == SUBTYPES
    np.testing.assert_array_equal(result.mask.array, expected)
    np.testing.assert_array_equal(result.votes.array, votes)
    assert len(set(np.unique(expected).tolist()) - {0}) >= 3  # several classes, or the test proves little
    assert result.ensemble.strategy == strategy and result.ensemble.n_models == len(SEEDS)


def test_the_class_strategies_differ_on_this_case(hu):
    """Guards the test above: with maps all alike it would not tell the strategies apart."""
    maps = [Segmenter(FakeClassModels(SEEDS), EnsembleSpec(s)).segment(hu, SPACING).mask.array
            for s in ("mean", "vote", "uncertainty")]
    assert not np.array_equal(maps[0], maps[1])
    assert not np.array_equal(maps[1], maps[2])
    assert not np.array_equal(maps[0], maps[2])


def test_a_class_map_comes_back_in_the_inputs_orientation(hu):
    image = CTImage(hu, SPACING, origin=(10.0, -4.0, 2.0), direction=RAS)
    models = FakeClassModels(SEEDS)
    result = Segmenter(models, EnsembleSpec("mean")).segment(image)
    assert models.orientations == ["LPS"]  # the models see the canonical orientation
    assert result.mask.orientation == "RAS" and result.mask.same_geometry(image)
    # The fake is a function of each voxel's HU, so the map computed on the input as given is the answer.
    expected, votes = expected_class_map(np.stack([class_probabilities(hu, s) for s in SEEDS]), "mean")
    np.testing.assert_array_equal(result.mask.array, expected)
    np.testing.assert_array_equal(result.votes.array, votes)


class LabelledFakeModels(FakeModels):
    """The one-class fake of test_segmenter, saying what its classes are."""

    labels = ONE_CLASS


@pytest.mark.parametrize("strategy", ["mean", "vote", "uncertainty"])
def test_a_one_class_model_set_segments_as_before(hu, strategy, tmp_path):
    """A model set that names its one class and one that names none give the same masks, votes,
    case JSON and postprocessing: the formulas of test_segmenter, the one-class route."""
    thresholds = (0.0, 10.0, 100.0, 110.0, 120.0)
    rule = Postprocessing((Rule("min_volume", {"min_ml": 0.01}),))
    outputs = {}
    for name, models in (("unnamed", FakeModels(thresholds)), ("named", LabelledFakeModels(thresholds))):
        segmenter = Segmenter(models, EnsembleSpec(strategy), rule)
        result = segmenter.segment(hu, SPACING)
        assert result.labels == ONE_CLASS and result.mask.array.dtype == np.uint8
        assert set(np.unique(result.mask.array).tolist()) <= {0, 1}
        save_image(CTImage(hu, SPACING), tmp_path / name / "in" / "case.nii.gz")
        predict_folder(segmenter, tmp_path / name / "in", tmp_path / name / "out",
                       OutputOptions(preview=False, html=False), progress=False)
        outputs[name] = (result, json.loads((tmp_path / name / "out" / "case.json").read_text()))
    (plain, plain_json), (named, named_json) = outputs["unnamed"], outputs["named"]
    np.testing.assert_array_equal(plain.mask.array, named.mask.array)
    np.testing.assert_array_equal(plain.votes.array, named.votes.array)
    assert plain.postprocessing == named.postprocessing
    for record in (plain_json, named_json):
        record.pop("created")
    assert plain_json == named_json
    p = np.stack([np.clip(0.5 + (hu - t) / 100, 0, 1) for t in thresholds])
    before = {"mean": p.mean(axis=0) > 0.5, "vote": (p > 0.5).sum(axis=0) > 2}.get(strategy)
    if before is not None:
        np.testing.assert_array_equal(plain.mask.array, postprocess(before, SPACING, rule).mask)


# --- postprocessing of class maps ---

def blob_map() -> np.ndarray:
    """EDH: a large lens (24 voxels) and a 1-voxel speck; SAH: a 2-voxel trace and a 12-voxel
    patch touching the EDH lens; SDH: one large crescent (18 voxels)."""
    labels = np.zeros((4, 12, 12), np.uint8)
    labels[1:3, 1:4, 1:5] = EDH
    labels[0, 10, 10] = EDH
    labels[3, 8, 1:3] = SAH
    labels[1:3, 1:4, 5:7] = SAH  # touches the lens: one component of any hemorrhage
    labels[0:2, 6:9, 6:9] = SDH
    return labels


def test_component_rules_apply_to_each_class_alone():
    labels = blob_map()
    rules = ClassPostprocessing(classes={"EDH": Postprocessing((Rule("keep_largest"),)),
                                         "SAH": Postprocessing((Rule("min_volume", {"min_ml": 0.01}),))})
    done = postprocess_classes(labels, (1.0, 1.0, 1.0), rules, SUBTYPES)
    expected = labels.copy()
    expected[0, 10, 10] = 0  # the EDH speck: not the largest EDH component
    expected[3, 8, 1:3] = 0  # the SAH trace: 2 µL < 10 µL
    np.testing.assert_array_equal(done.mask, expected)
    assert done.report["removed_voxels"] == 3 and done.report["any_hemorrhage"] is None
    assert done.report["classes"]["EDH"]["removed_components"] == 1
    assert done.report["classes"]["SAH"]["removed_voxels"] == 2 and "SDH" not in done.report["classes"]
    assert done.report["rule"] == "EDH: keep_largest; SAH: min_volume"


def test_rules_without_classes_apply_to_any_hemorrhage():
    """keep_largest on any hemorrhage keeps the lens and the SAH patch that touches it, each
    with its class, and removes the rest whatever its class."""
    labels = blob_map()
    done = postprocess_classes(labels, (1.0, 1.0, 1.0), Rule("keep_largest"), SUBTYPES)
    expected = np.where(postprocess(labels != 0, (1.0, 1.0, 1.0), Rule("keep_largest")).mask, labels, 0)
    assert set(np.unique(expected).tolist()) == {0, EDH, SAH}
    np.testing.assert_array_equal(done.mask, expected)
    assert done.report == postprocess(labels != 0, (1.0, 1.0, 1.0), Rule("keep_largest")).report


def test_the_intracranial_rule_removes_every_class_outside_the_skull():
    case = generate_case(7, "tiny", hemorrhage=True)
    labels = case.typed_label.copy()
    scalp = case.tissues == Tissue.SCALP
    labels[scalp & (labels == 0)] = SDH  # a subdural-looking false positive in the scalp
    rules = ClassPostprocessing(Postprocessing((Rule("intracranial"),)),
                                {"SDH": Postprocessing((Rule("min_volume", {"min_ml": 0.001}),))})
    done = postprocess_classes(labels, case.image.spacing, rules, SUBTYPES, case.image)
    space = find_intracranial_space(case.image).mask
    inside = np.where(space, labels, 0)
    expected = np.where(postprocess(inside == SDH, case.image.spacing, rules.classes["SDH"]).mask | (inside != SDH),
                        inside, 0)
    assert (labels[~space] != 0).sum() > 100
    np.testing.assert_array_equal(done.mask, expected)
    np.testing.assert_array_equal(done.intracranial.mask, space)
    assert done.report["any_hemorrhage"]["removed_voxels"] == int((labels[~space] != 0).sum())


def test_class_rules_are_stored_as_data_and_read_back(tmp_path):
    rules = ClassPostprocessing(Postprocessing((Rule("intracranial"),)),
                                {"SAH": Postprocessing((Rule("min_slices", {"min_slices": 2}),)),
                                 "EDH": Postprocessing((Rule("none"),))})
    path = save_rule(tmp_path / "postprocessing.json", rules, extra={"selected_on": "test"})
    stored = json.loads(path.read_text())
    assert stored == {"steps": [{"name": "intracranial", "params": {}}],
                      "classes": {"SAH": [{"name": "min_slices", "params": {"min_slices": 2}}]},
                      "selected_on": "test"}
    assert load_rule(path) == rules and rules.classes.keys() == {"SAH"}
    save_rule(tmp_path / "one.json", Rule("keep_largest"))  # one class: today's form
    assert json.loads((tmp_path / "one.json").read_text()) == {"steps": [{"name": "keep_largest", "params": {}}]}
    assert load_rule(tmp_path / "one.json") == Postprocessing((Rule("keep_largest"),))


@pytest.mark.parametrize("content, message", [
    ('{"steps": [], "classes": {"SAH": [{"name": "intracranial"}]}}', "applies to any hemorrhage"),
    ('{"steps": [], "classes": [1]}', "'classes' must map class names"),
    ('{"steps": [], "classes": {"SAH": [{"name": "median"}]}}', "unknown postprocessing rule"),
])
def test_a_bad_class_rule_file_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "postprocessing.json"
    path.write_text(content)
    with pytest.raises(RuleError, match=message) as raised:
        load_rule(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def model_folder(root: Path, labels, groups=("3d_fullres",)) -> ModelFolder:
    """A model folder whose groups' nnU-Net dataset.json name ``labels`` (no network in it)."""
    folder = root / "models" / "phantoms" / "nnunet"
    description = {"recipe": load_recipe("nnunet").to_dict(), "dataset": "phantoms", "groups": {},
                   "preprocessing": {}, "nnunet_dataset": "Dataset001_phantoms", "plans_name": "nnUNetPlans"}
    for group in groups:
        fold_dir = folder / group / "nnunet" / "fold_0"
        fold_dir.mkdir(parents=True)
        (fold_dir / "checkpoint_final.pth").write_bytes(b"")
        (fold_dir.parent / "dataset.json").write_text(json.dumps({"labels": labels.to_dataset_json()}))
        description["groups"][group] = {"configuration": "3d_fullres", "nnunet_folder": f"{group}/nnunet"}
    (folder / "ichseg_model.json").write_text(json.dumps(description))
    return ModelFolder.open(folder)


def test_a_folder_refuses_rules_for_a_class_it_does_not_segment(tmp_path):
    folder = model_folder(tmp_path, SUBTYPES)
    save_rule(folder.postprocessing_file, ClassPostprocessing(classes={"SAH": Rule("keep_largest")}))
    assert folder_rule(folder) == ClassPostprocessing(classes={"SAH": Rule("keep_largest")})
    one_class = model_folder(tmp_path / "one", ONE_CLASS)
    save_rule(one_class.postprocessing_file, ClassPostprocessing(classes={"SAH": Rule("keep_largest")}))
    with pytest.raises(RuleError, match="class 'SAH', which the model does not segment") as raised:
        folder_rule(one_class)
    assert "postprocessing.json" in str(raised.value)


def test_the_segmenter_postprocesses_its_class_map(hu):
    rules = ClassPostprocessing(classes={name: Postprocessing((Rule("keep_largest"),)) for name in SUBTYPES.names[1:]})
    plain = Segmenter(FakeClassModels(SEEDS), EnsembleSpec("vote")).segment(hu, SPACING)
    kept = Segmenter(FakeClassModels(SEEDS), EnsembleSpec("vote"), rules).segment(hu, SPACING)
    expected = postprocess_classes(plain.mask.array, SPACING, rules, SUBTYPES)
    np.testing.assert_array_equal(kept.mask.array, expected.mask)
    assert np.count_nonzero(kept.mask.array) < np.count_nonzero(plain.mask.array)
    assert kept.postprocessing == expected.report and set(kept.postprocessing["classes"]) == set(SUBTYPES.names[1:])
    assert kept.labels == SUBTYPES


def test_a_case_travels_pickled_between_the_stages(hu):
    """Ray's stages pass a case as pickled plain data: the ensembled class map with its classes,
    and the folder's class rules, finish as in one process."""
    import pickle

    from ichseg.segmentation.segmenter import finish_case

    rules = ClassPostprocessing(classes={"IVH": Postprocessing((Rule("keep_largest"),))})
    segmenter = Segmenter(FakeClassModels(SEEDS), EnsembleSpec("uncertainty"), rules)
    image = CTImage(hu, SPACING, direction=RAS)
    canonical = image.reoriented()
    prepared = segmenter.models.prepare(canonical)
    ensembled = pickle.loads(pickle.dumps(segmenter.ensemble_case(image, canonical, prepared)))
    assert ensembled.labels == SUBTYPES
    travelled = finish_case(ensembled, pickle.loads(pickle.dumps(rules)))
    here = segmenter.segment(image)
    np.testing.assert_array_equal(travelled.mask.array, here.mask.array)
    assert travelled.labels == SUBTYPES and travelled.postprocessing == here.postprocessing


def test_a_batch_writes_each_case_of_a_class_model_set(hu, tmp_path):
    save_image(CTImage(hu, SPACING), tmp_path / "in" / "a.nii.gz")
    save_image(CTImage(hu[::-1].copy(), SPACING, direction=RAS), tmp_path / "in" / "b.nii.gz")
    segmenter = Segmenter(FakeClassModels(SEEDS), EnsembleSpec("vote"))
    result = predict_folder(segmenter, tmp_path / "in", tmp_path / "out", OutputOptions(preview=False, html=False),
                            progress=False)
    assert not result.failures and len(result.cases) == 2
    for name in ("a", "b"):
        source = load_image(tmp_path / "in" / f"{name}.nii.gz")
        written = load_image(tmp_path / "out" / f"{name}.nii.gz")
        expected = segmenter.segment(source).mask.array
        assert written.same_geometry(source)
        np.testing.assert_array_equal(written.array != 0, expected != 0)  # any hemorrhage, whatever the writer keeps


# --- out-of-fold files and the model set's outputs ---

def test_out_of_fold_files_keep_each_hemorrhage_class(hu):
    probability = class_probabilities(hu, 9)
    stored = stored_probabilities(probability, SUBTYPES)
    assert stored["probability"].shape == (K - 1, *hu.shape) and stored["probability"].dtype == np.uint8
    assert list(stored["classes"]) == list(SUBTYPES.names)
    one = stored_probabilities(probability[1], ONE_CLASS)
    assert set(one) == {"probability"} and one["probability"].shape == hu.shape
    np.testing.assert_array_equal(one["probability"], np.round(probability[1] * 255).astype(np.uint8))


def test_out_of_fold_files_read_back_within_their_quantisation(hu, tmp_path):
    probability = class_probabilities(hu, 9)
    np.savez_compressed(tmp_path / "case.npz", **stored_probabilities(probability, SUBTYPES), fold=0)
    back, labels = read_out_of_fold(tmp_path / "case.npz")
    assert labels == SUBTYPES and back.shape == probability.shape and back.dtype == np.float32
    assert np.abs(back[1:] - probability[1:]).max() <= 0.5 / 255 + 1e-7
    assert np.abs(back[0] - probability[0]).max() <= (K - 1) * 0.5 / 255 + 1e-6
    np.savez_compressed(tmp_path / "one.npz", **stored_probabilities(probability[1], ONE_CLASS), fold=0)
    back, labels = read_out_of_fold(tmp_path / "one.npz")
    assert labels == ONE_CLASS
    np.testing.assert_array_equal(back, np.round(probability[1] * 255).astype(np.uint8).astype(np.float32) / 255.0)


def test_the_slice_padding_is_removed_from_each_class():
    padded = torch.arange(3 * 6 * 2 * 2, dtype=torch.float32).reshape(3, 6, 2, 2)
    owner = SimpleNamespace(preprocessing=CTPreprocessing(pad_slices=1))
    reverted = ModelSet._revert_classes(owner, padded)
    assert torch.equal(reverted, padded[:, 1:-1])


# --- cross-validation on a folder's out-of-fold files ---

def typed_cases() -> dict[str, tuple[CTImage, np.ndarray]]:
    """Three tiny phantoms with their typed references (several types each)."""
    cases = {}
    for seed in (11, 12, 13):
        case = generate_case(seed, "tiny", hemorrhage=True)
        cases[f"case{seed}"] = (case.image, case.typed_label, case.tissues)
    return cases


def class_probabilities_from(labels: np.ndarray, confusion: float, seed: int) -> np.ndarray:
    """A model's class probabilities that mostly agree with ``labels``: the labelled class gets
    1 - confusion, the rest shared out at random."""
    rng = np.random.default_rng(seed)
    rest = rng.dirichlet(np.ones(K), size=labels.shape).transpose(3, 0, 1, 2) * confusion
    one_hot = np.eye(K, dtype=np.float64)[labels].transpose(3, 0, 1, 2)
    return (one_hot * (1 - confusion) + rest).astype(np.float32)


def oof_folder(root: Path, predictions: dict[str, dict[str, np.ndarray]], cases, images: bool) -> ModelFolder:
    """A workspace with ``cases`` imported (references, and the CTs when ``images``) and a model
    folder whose groups' out-of-fold files hold ``predictions`` (group -> case -> probabilities)."""
    folder = model_folder(root, SUBTYPES, groups=tuple(predictions))
    raw = root / "nnUNet_raw" / "Dataset001_phantoms"
    for name, (image, reference, _) in cases.items():
        if images:
            save_image(image, raw / "imagesTr" / f"{name}_0000.nii.gz")
        save_image(image.with_array(reference), raw / "labelsTr" / f"{name}.nii.gz")
    for group, by_case in predictions.items():
        (folder.oof_dir(group)).mkdir()
        for name, probability in by_case.items():
            np.savez_compressed(folder.oof_dir(group) / f"{name}.npz",
                                **stored_probabilities(probability, SUBTYPES), fold=0)
    return folder


def test_cv_report_scores_every_group_and_ensemble_per_class(tmp_path):
    cases = typed_cases()
    predictions = {group: {name: class_probabilities_from(reference, confusion, seed + index)
                           for index, (name, (_, reference, _)) in enumerate(cases.items())}
                   for group, confusion, seed in (("2d", 0.9, 0), ("3d_fullres", 0.6, 10))}
    folder = oof_folder(tmp_path, predictions, cases, images=False)
    report = cv_report(folder.path, tmp_path, progress=False)
    methods = ["2d", "3d_fullres", "ensemble: mean probability", "ensemble: majority vote",
               "ensemble: uncertainty (printed HR)", "ensemble: uncertainty (majority HR)"]
    assert list(report.results) == methods and set(report.class_results) == set(SUBTYPES.names[1:])
    for index, name in enumerate(cases):  # a group's own map is the argmax of its stored probabilities
        reference = load_image(tmp_path / "nnUNet_raw" / "Dataset001_phantoms" / "labelsTr" / f"{name}.nii.gz")
        stored, _ = read_out_of_fold(folder.oof_dir("3d_fullres") / f"{name}.npz")
        union, by_class = metrics_by_class(stored.argmax(axis=0).astype(np.uint8), reference.array,
                                           reference.spacing, SUBTYPES)
        np.testing.assert_equal(report.results["3d_fullres"][index], union)  # NaN (an undefined RVD) equal
        for class_name, values in by_class.items():
            row = report.class_results[class_name]["3d_fullres"][index]
            assert row["case"] == name and (row["dice"] is None) == (values is None)
            if values is not None:
                np.testing.assert_equal({key: row[key] for key in values}, values)
        groups = [read_out_of_fold(folder.oof_dir(group) / f"{name}.npz")[0] for group in ("2d", "3d_fullres")]
        mean_map = (groups[0] + groups[1]).argmax(axis=0).astype(np.uint8)  # the mean ensemble: argmax of the sums
        np.testing.assert_equal(report.results["ensemble: mean probability"][index],
                                metrics_by_class(mean_map, reference.array, reference.spacing, SUBTYPES)[0])
    present = [n for n in SUBTYPES.names[1:] if any(row["dice"] is not None
                                                   for row in report.class_results[n]["2d"])]
    assert len(present) >= 2
    assert report.markdown.startswith("## Any hemorrhage\n")
    for name in present:
        assert f"\n## {name}\n" in report.markdown
    table = list(csv.DictReader(io.StringIO(report.csv)))
    assert [(row["method"], row["class"]) for row in table][:len(methods)] == [(m, "any") for m in methods]
    assert {row["class"] for row in table} == {"any", *SUBTYPES.names[1:]}
    assert "empty_ref_fp_ml_mean" in table[0] and "fp_ml_mean" in table[0]
    assert (folder.path / "cv_report.md").read_text() == report.markdown


def test_postprocess_select_chooses_per_class(tmp_path):
    """Predictions with the right types, plus scalp marked as SDH beside each bleed and EDH specks
    of one voxel scattered in the brain (no reference has an EDH): the intracranial rule is chosen
    on any hemorrhage and a component rule that drops the specks for EDH, none for the classes
    predicted right; the choice is saved and applies to the folder."""
    cases = typed_cases()
    rng = np.random.default_rng(5)
    predictions: dict[str, dict[str, np.ndarray]] = {"3d_fullres": {}}
    for name, (image, reference, tissues) in cases.items():
        predicted = reference.copy()
        predicted[(tissues == Tissue.SCALP) & (predicted == 0)] = SDH
        brain = np.argwhere((tissues != Tissue.SCALP) & (predicted == 0) & (image.array > 0))
        for z, y, x in brain[rng.choice(len(brain), 6, replace=False)]:
            predicted[z, y, x] = EDH
        predictions["3d_fullres"][name] = class_probabilities_from(predicted, 0.3, 1)
    assert not any((reference == EDH).any() for _, reference, _ in cases.values())
    folder = oof_folder(tmp_path, predictions, cases, images=True)
    selection = select_postprocessing(folder.path, tmp_path, progress=False)
    assert selection.chosen.steps == Postprocessing((Rule("intracranial"),))
    assert selection.classes["EDH"].rows[0].means["dice"] == 0.0  # none: every EDH is false
    assert selection.chosen.classes["EDH"].steps[0].name in ("min_volume", "min_slices")
    assert set(selection.chosen.classes) == {"EDH"} and selection.classes["SDH"] is not None
    saved = json.loads(folder.postprocessing_file.read_text())
    assert saved["steps"] == [{"name": "intracranial", "params": {}}]
    assert saved["classes"] == {name: rules.to_list() for name, rules in selection.chosen.classes.items()}
    assert saved["selection"]["any_hemorrhage"]["chosen"] == saved["steps"]
    assert folder_rule(folder) == selection.chosen


def test_select_class_rules_keeps_a_class_whose_small_parts_are_true():
    """EDH's speck is in the reference too (dropping it costs Dice); SAH's trace is not (dropping
    it gains): each class gets its own rule."""
    reference = blob_map()
    prediction = reference.copy()
    reference[3, 8, 1:3] = 0  # the SAH trace is a false positive
    cases = [ClassCase(prediction, reference, (1.0, 1.0, 1.0))]
    selection = select_class_rules(cases, SUBTYPES)
    assert selection.any_hemorrhage is None  # no CT: the intracranial rule is not compared
    assert selection.chosen.steps == Postprocessing()
    assert "EDH" not in selection.chosen.classes
    assert selection.chosen.classes["SAH"].steps[0].name in ("keep_largest", "min_volume", "min_slices")
    assert selection.classes["IVH"] is None and selection.classes["IPH"] is None
    assert selection.n_cases == 1 and json.dumps(selection.as_dict())


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_models_choice_is_the_first_largest_class(library):
    """The accumulator's per-model choice equals argmax, ties (frequent in uint8-quantised
    out-of-fold probabilities) going to the lower class value."""
    from ichseg.ensemble.accumulator import first_argmax

    quantised = np.random.default_rng(4).integers(0, 4, size=(K, 5, 7, 9)).astype(np.float32) / 4
    given = torch.from_numpy(quantised) if library == "torch" else quantised
    choice = np.asarray(first_argmax(given))
    assert choice.dtype == np.uint8
    np.testing.assert_array_equal(choice, quantised.argmax(axis=0))
    assert (np.sort(quantised, axis=0)[-1] == np.sort(quantised, axis=0)[-2]).sum() > 50  # ties tested
