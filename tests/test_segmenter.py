"""Segmenter.segment and predict_folder with a fake model set: the steps around the networks
(orientation, ensemble rules, postprocessing, writing) in milliseconds, without torch.

Each fake model marks the voxels above its own HU threshold, with a probability that grows with
the HU, so that every strategy's mask can be computed here from the image alone, with the
papers' formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ichseg.batch.runner import predict_folder
from ichseg.ensemble.info import SINGLE_MODEL
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import InputError
from ichseg.io.image import CTImage, load_image
from ichseg.io.nifti import save_image
from ichseg.postprocessing.rules import Rule
from ichseg.report.options import OutputOptions
from ichseg.segmentation.segmenter import Segmenter

#: RAS: x to the patient's right, y anterior (the first two axes flipped from LPS).
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SPACING = (5.0, 0.8, 0.6)


@dataclass
class FakeOutput:
    probability: np.ndarray


class FakeModels:
    """Model k: P = clip(0.5 + (HU - threshold_k) / 100, 0, 1), so it votes where HU > threshold_k."""

    def __init__(self, thresholds: tuple[float, ...]) -> None:
        self.thresholds = thresholds
        self.orientations: list[str] = []

    def __len__(self) -> int:
        return len(self.thresholds)

    def prepare(self, image: CTImage) -> np.ndarray:
        self.orientations.append(image.orientation)
        return image.array.astype(np.float32)

    def probabilities(self, prepared: np.ndarray):
        for threshold in self.thresholds:
            yield FakeOutput(np.clip(0.5 + (prepared - threshold) / 100, 0, 1).astype(np.float32))


def probabilities(hu: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    return np.stack([np.clip(0.5 + (hu.astype(np.float32) - t) / 100, 0, 1) for t in thresholds])


def uncertainty_mask(votes: np.ndarray, n_models: int, th: float = 0.5, n1: int = 1) -> np.ndarray:
    """Li & Chen's eq. 4-5 with N2 = floor(C/2), the printed reading of HR."""
    n2 = n_models // 2
    hr = np.count_nonzero(votes == n_models // 2) / np.count_nonzero(votes)
    return ((hr < th) | (votes > n1)) & ((hr > th) | (votes > n2))


@pytest.fixture
def hu() -> np.ndarray:
    return np.random.default_rng(3).uniform(-100, 150, size=(6, 9, 11)).astype(np.float32)


#: Five models: the mean, the vote (n > 2) and the uncertainty ensemble (HR > th here, so n > N1 = 1)
#: all give different masks.
FIVE = (0.0, 10.0, 100.0, 110.0, 120.0)


@pytest.mark.parametrize("spec", [EnsembleSpec("mean"), EnsembleSpec("vote"), EnsembleSpec("uncertainty")])
def test_each_strategy_gives_its_formula_on_a_bare_array(hu, spec):
    result = Segmenter(FakeModels(FIVE), spec).segment(hu, SPACING)
    p = probabilities(hu, FIVE)
    votes = (p > 0.5).sum(axis=0)
    expected = {"mean": p.mean(axis=0) > 0.5, "vote": votes > 2,
                "uncertainty": uncertainty_mask(votes, 5)}[spec.strategy]
    assert result.mask.array.dtype == np.uint8
    np.testing.assert_array_equal(result.mask.array, expected)
    np.testing.assert_array_equal(result.votes.array, votes)
    assert result.mask.spacing == SPACING and result.mask.shape == hu.shape
    assert result.ensemble.strategy == spec.strategy and result.ensemble.n_models == 5
    assert result.volume_ml == pytest.approx(np.count_nonzero(expected) * 5.0 * 0.8 * 0.6 / 1000)


def test_the_strategies_differ_on_this_case(hu):
    """Guards the test above: with masks all alike it would not tell the strategies apart."""
    masks = [Segmenter(FakeModels(FIVE), EnsembleSpec(s)).segment(hu, SPACING).mask.array
             for s in ("mean", "vote", "uncertainty")]
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])
    assert not np.array_equal(masks[0], masks[2])


def test_a_ct_image_in_another_orientation_comes_back_in_its_own(hu):
    image = CTImage(hu, SPACING, origin=(10.0, -4.0, 2.0), direction=RAS)
    models = FakeModels(FIVE)
    result = Segmenter(models, EnsembleSpec("vote")).segment(image)
    assert models.orientations == ["LPS"]  # the models see the canonical orientation
    assert result.mask.orientation == "RAS" and result.mask.same_geometry(image)
    np.testing.assert_array_equal(result.mask.array, (probabilities(hu, FIVE) > 0.5).sum(axis=0) > 2)
    assert result.image is image


def test_a_single_model_is_described_as_such(hu):
    result = Segmenter(FakeModels((40.0,))).segment(hu, SPACING)
    assert result.ensemble.strategy == SINGLE_MODEL and not result.ensemble.is_ensemble
    np.testing.assert_array_equal(result.mask.array, hu > 40.0)


def test_the_postprocessing_rule_is_applied(hu):
    blobs = np.full((6, 20, 20), -50.0, np.float32)
    blobs[1:5, 2:8, 2:8] = 100.0  # 144 voxels
    blobs[2, 15, 15] = 100.0      # one stray voxel
    plain = Segmenter(FakeModels((40.0,))).segment(blobs, SPACING)
    kept = Segmenter(FakeModels((40.0,)), rule=Rule("keep_largest")).segment(blobs, SPACING)
    assert np.count_nonzero(plain.mask.array) == 145 and plain.postprocessing is None
    expected = blobs > 40.0
    expected[2, 15, 15] = False
    np.testing.assert_array_equal(kept.mask.array, expected)
    assert kept.postprocessing is not None


@pytest.mark.parametrize("array, spacing, message", [
    (np.zeros((4, 4)), SPACING, "must be 3D"),
    (np.zeros((2, 4, 4)), None, "needs its spacing"),
    (np.zeros((2, 4, 4)), (1.0, 1.0), "needs its spacing"),
    (np.zeros((2, 4, 4)), (1.0, 0.0, 1.0), "needs its spacing"),
    (np.zeros((2, 4, 4)), (1.0, float("nan"), 1.0), "needs its spacing"),
])
def test_a_bad_array_or_spacing_is_refused_in_one_line(array, spacing, message):
    with pytest.raises(InputError, match=message) as raised:
        Segmenter(FakeModels(FIVE)).segment(array, spacing)
    assert "\n" not in str(raised.value)


def test_predict_folder_writes_what_segment_returns(hu, tmp_path: Path):
    inputs = tmp_path / "in"
    images = {"a": CTImage(hu, SPACING), "b": CTImage(hu[:, ::-1, :].copy(), SPACING, direction=RAS)}
    for name, image in images.items():
        save_image(image, inputs / f"{name}.nii.gz")
    segmenter = Segmenter(FakeModels(FIVE), EnsembleSpec("uncertainty"))
    options = OutputOptions(preview=False, html=False)
    result = predict_folder(segmenter, inputs, tmp_path / "out", options, progress=False)
    assert sorted(case.name for case in result.cases) == ["a", "b"] and not result.failures
    for name in images:
        expected = segmenter.segment(inputs / f"{name}.nii.gz")
        written = load_image(tmp_path / "out" / f"{name}.nii.gz")
        np.testing.assert_array_equal(written.array, expected.mask.array)
        assert written.same_geometry(expected.mask)
        votes = load_image(tmp_path / "out" / f"{name}_votes.nii.gz")
        np.testing.assert_array_equal(votes.array, expected.votes.array)


def test_segment_refuses_a_ct_that_is_not_in_hounsfield_units_unless_accepted():
    from ichseg.errors import IntensityError

    segmenter = Segmenter(FakeModels((40.0,)))
    array = np.full((4, 8, 8), -1000.0, dtype=np.float32)
    array[1, 2, 2] = np.nan
    with pytest.raises(IntensityError, match="NaN"):
        segmenter.segment(array, (5.0, 1.0, 1.0))
    accepted = segmenter.segment(array, (5.0, 1.0, 1.0), accept_intensities=True)
    assert accepted.warnings and "NaN" in accepted.warnings[0]
