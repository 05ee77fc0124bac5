"""The intracranial space against the phantoms' own tissue maps, and the intracranial rule.

A phantom's tissue map says which voxels lie inside the skull. The space found from the CT must
lose none of them and keep nothing else, leaving out the edges: voxels of mixed tissue (partial
volume) and voxels within one voxel of the other side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from ichseg.data.synth import Tissue, generate_case
from ichseg.data.synth.vocabulary import INTRACRANIAL_TISSUES
from ichseg.io.ctimage import CTImage
from ichseg.metrics import case_metrics
from ichseg.postprocessing import (
    Postprocessing,
    Rule,
    RuleError,
    apply_rule,
    candidate_grid,
    find_intracranial_space,
    postprocess,
    select_rule,
)
from ichseg.postprocessing.intracranial import bone_threshold
from ichseg.postprocessing.sequence import CaseSteps

SCALP_HU = 40.0
_CUBE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Part:
    """The tissue map of part of a phantom (cropped, sheared)."""

    tissues: np.ndarray
    pure: np.ndarray


def intracranial(case) -> np.ndarray:
    return np.isin(case.tissues, list(INTRACRANIAL_TISSUES))


def errors(found: np.ndarray, case, either: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The phantom's intracranial voxels the space lost and the others it kept, edges left out
    (``either``: voxels that may go either way, such as a removed bone flap)."""
    inside = intracranial(case)
    counted = case.pure & ~(either if either is not None else np.zeros_like(inside))
    lost = inside & ~found & counted & ~ndimage.binary_dilation(~inside, _CUBE)
    kept = ~inside & found & counted & ~ndimage.binary_dilation(inside, _CUBE)
    return lost, kept


def direction_from_centre(case, direction: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Per voxel: the cosine of its angle to ``direction`` (z, y, x) seen from the phantom's
    intracranial centroid, and its distance from there in mm."""
    spacing = np.asarray(case.image.spacing)
    centre = np.argwhere(intracranial(case)).mean(axis=0) * spacing
    offsets = [np.arange(n) * s - c for n, s, c in zip(case.tissues.shape, spacing, centre, strict=True)]
    z, y, x = np.meshgrid(*offsets, indexing="ij", sparse=True)
    distance = np.sqrt(z * z + y * y + x * x) + 1e-6
    unit = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    return (z * unit[0] + y * unit[1] + x * unit[2]) / distance, distance


def without_bone(case, direction: tuple[float, float, float], width_mm: float,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The phantom's CT with the skull in a cone around ``direction`` (``width_mm`` across at
    80 mm) replaced by soft tissue of scalp HU, and the voxels replaced (the flap)."""
    cosine, _ = direction_from_centre(case, direction)
    bone = case.tissues == Tissue.BONE
    skull = bone | ((case.image.array >= 100) & ndimage.binary_dilation(bone, _CUBE))
    flap = skull & (cosine > np.cos(width_mm / 2 / 80.0))
    hu = case.image.array.copy()
    noise = np.random.default_rng(seed).normal(0.0, 4.0, int(flap.sum()))
    hu[flap] = np.rint(SCALP_HU + noise).astype(hu.dtype)
    return hu, flap


@pytest.fixture(scope="module", params=[("tiny", 0), ("tiny", 1), ("tiny", 2), ("tiny", 3),
                                        ("small", 0), ("small", 1)], ids=str)
def phantom(request):
    size, seed = request.param
    return generate_case(seed, size)


def test_the_space_is_the_phantoms_intracranial_tissue(phantom):
    space = find_intracranial_space(phantom.image)
    assert space.found and space.reason is None and space.capped_share < 0.01
    lost, kept = errors(space.mask, phantom)
    assert lost.sum() == 0 and kept.sum() == 0
    # Bleeds lie against the inner table: every labelled voxel is inside.
    assert not (phantom.label.astype(bool) & ~space.mask).any()
    # Nothing of the bone, scalp or air outside it.
    assert not (space.mask & np.isin(phantom.tissues, (Tissue.AIR, Tissue.SCALP))
                & phantom.pure).any()
    assert space.volume_ml == pytest.approx(space.mask.sum() * phantom.image.voxel_volume_ml)


def test_the_room_for_a_bleed_is_the_space_less_its_dense_rim(phantom):
    """The bone rim is the space's boundary where the CT reads as bone; no labelled bleed lies
    there (blood never reaches the bone threshold), and a voxel the tissue map calls bone that
    touches the cavity is left out of the room unless it reads below the threshold."""
    space = find_intracranial_space(phantom.image)
    hu, threshold = phantom.image.array, bone_threshold(phantom.image.spacing[0])
    boundary = space.mask & ~ndimage.binary_erosion(space.mask, ndimage.generate_binary_structure(3, 1),
                                                    border_value=1)
    assert np.array_equal(space.bone_rim, boundary & (hu >= threshold))
    assert np.array_equal(space.room, space.mask & ~space.bone_rim)
    assert not (phantom.label.astype(bool) & ~space.room).any()
    inner_table = space.mask & (phantom.tissues == Tissue.BONE) & boundary
    assert inner_table.any() and not (inner_table & space.room & (hu >= threshold)).any()


def test_a_bare_array_is_read_as_canonical(phantom):
    image = phantom.image
    from_array = find_intracranial_space(image.array, image.spacing)
    assert np.array_equal(from_array.mask, find_intracranial_space(image).mask)


@pytest.mark.parametrize("flips, order", [
    ((0,), (0, 1, 2)), ((1, 2), (0, 1, 2)), ((), (1, 0, 2)), ((2,), (2, 1, 0)), ((0, 1), (1, 2, 0)),
])
def test_the_mask_follows_the_image_in_every_orientation(flips, order):
    """Flip and permute a phantom's axes, with a direction that says so: the space is the same
    voxels, in the turned image's layout."""
    case = generate_case(4, "tiny")
    canonical = case.image
    array = np.transpose(np.flip(canonical.array, flips), order)
    # Array axis a of the turned image is canonical axis order[a] (z, y, x), flipped if listed.
    columns = np.zeros((3, 3))  # columns: physical (x, y, z) direction of image axes (x, y, z)
    for image_axis, canonical_axis in enumerate(order):
        sign = -1.0 if canonical_axis in flips else 1.0
        columns[2 - canonical_axis, 2 - image_axis] = sign
    turned = CTImage(array, tuple(canonical.spacing[a] for a in order),
                     direction=tuple(columns.ravel()))
    assert turned.reoriented().orientation == "LPS"
    expected = np.transpose(np.flip(find_intracranial_space(canonical).mask, flips), order)
    assert np.array_equal(find_intracranial_space(turned).mask, expected)


def test_a_craniectomy_keeps_the_brain_under_the_missing_flap():
    """A flap 110 mm across gone (its HU now soft tissue): the brain under it stays; the scalp
    over it goes, but for the few millimetres the interpolated surface can be off."""
    for size, seed in (("tiny", 1), ("small", 2)):
        case = generate_case(seed, size)
        hu, flap = without_bone(case, (0.5, 0.1, 1.0), 110.0)
        space = find_intracranial_space(case.image.with_array(hu))
        assert space.found and space.capped_share > 0.05
        near_flap = ndimage.distance_transform_edt(~flap, sampling=case.image.spacing) <= 10.0
        lost, kept = errors(space.mask, case, either=flap)
        assert not (lost & ~near_flap).any() and not (kept & ~near_flap).any()
        assert lost.sum() * case.image.voxel_volume_ml < 0.5   # mL, right at the defect's edge
        assert kept.sum() * case.image.voxel_volume_ml < 2.0


def test_a_burr_hole_leaves_the_space_as_it_was():
    case = generate_case(0, "small")
    hu, hole = without_bone(case, (0.8, -0.4, 0.4), 13.0)
    assert 0 < hole.sum() * case.image.voxel_volume_ml < 2.0
    space = find_intracranial_space(case.image.with_array(hu))
    lost, kept = errors(space.mask, case, either=hole)
    assert lost.sum() == 0 and kept.sum() == 0
    assert space.capped_share < 0.01


@pytest.mark.parametrize("end", ["vertex", "base"])
def test_a_scan_cropped_at_either_end(end):
    case = generate_case(1, "small")
    third = case.image.shape[0] // 3
    keep = slice(0, -third) if end == "vertex" else slice(third, None)  # axis 0 runs upwards
    space = find_intracranial_space(CTImage(case.image.array[keep], case.image.spacing))
    lost, kept = errors(space.mask, Part(case.tissues[keep], case.pure[keep]))
    assert space.found and lost.sum() == 0 and kept.sum() == 0


def test_a_tilt_corrected_scan_with_padding_in_its_corners():
    """Slices shifted against each other (a 15° gantry tilt undone) and the field of view
    outside a circle filled with padding (-3024 HU)."""
    case = generate_case(2, "small")
    spacing = case.image.spacing
    shift = np.rint(np.arange(case.image.shape[0]) * spacing[0] * np.tan(np.radians(15))
                    / spacing[1]).astype(int)
    shift -= shift[len(shift) // 2]
    hu = np.stack([np.roll(s, k, axis=0) for s, k in zip(case.image.array, shift, strict=True)])
    tissues = np.stack([np.roll(s, k, axis=0) for s, k in zip(case.tissues, shift, strict=True)])
    pure = np.stack([np.roll(s, k, axis=0) for s, k in zip(case.pure, shift, strict=True)])
    n = hu.shape[1]
    y, x = np.ogrid[:n, :n]
    outside = (y - n / 2 + 0.5) ** 2 + (x - n / 2 + 0.5) ** 2 > (n / 2) ** 2
    hu[:, outside] = -3024
    space = find_intracranial_space(hu, spacing)
    lost, kept = errors(space.mask, Part(tissues, pure))
    assert space.found and lost.sum() == 0 and kept.sum() == 0


@pytest.mark.parametrize("background", [-1024, 0])
def test_a_skull_stripped_image_is_declined(background):
    case = generate_case(3, "small")
    brain = np.where(intracranial(case), case.image.array, background).astype(np.int16)
    space = find_intracranial_space(brain, case.image.spacing)
    assert not space.found and space.mask is None
    assert space.reason.startswith("no skull:")


def test_no_bone_at_all_is_declined():
    space = find_intracranial_space(np.full((8, 32, 32), 30, np.int16), (5.0, 1.0, 1.0))
    assert not space.found and "no skull" in space.reason and "mL of bone" in space.reason


def test_the_bone_threshold_follows_the_slice_thickness():
    # A 1 mm plate of 1000 HU bone across two slices of soft tissue (40 HU).
    assert bone_threshold(5.0) == pytest.approx(40 + 960 * 0.1)
    assert bone_threshold(10.0) == 100.0   # never below the densest acute blood
    assert bone_threshold(0.625) == 180.0  # thin slices resolve the plate


# --- the rule ---

@pytest.fixture(scope="module")
def bleed_and_outside():
    """A tiny phantom with a bleed, and a prediction: the bleed, a blob of soft tissue beside the
    skull (scalp or temporal muscle), and a component that reaches from the cavity into the bone."""
    case = generate_case(5, "tiny", hemorrhage=True)
    bleed = case.label.astype(bool)
    soft = np.isin(case.tissues, [Tissue.SCALP, Tissue.MUSCLE]) & case.pure
    z, y, x = np.argwhere(soft & (np.arange(soft.shape[0]) == soft.shape[0] // 2)[:, None, None])[0]
    blob = np.zeros_like(bleed)
    blob[z - 1:z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = True
    blob &= ~intracranial(case) & ~ndimage.binary_dilation(intracranial(case), _CUBE)
    space = find_intracranial_space(case.image).mask
    edge = space & ~np.roll(space, -1, axis=2)   # inside, with the next voxel along x outside
    edge &= ~ndimage.binary_dilation(bleed | blob, _CUBE, iterations=3)
    z, y, x = np.argwhere(edge)[len(np.argwhere(edge)) // 2]
    straddling = np.zeros_like(bleed)
    straddling[z, y, x - 1:x + 3] = True         # two voxels inside, two outside
    return case, bleed, blob, straddling, space


def test_the_rule_removes_what_lies_outside_and_reports_it(bleed_and_outside):
    case, bleed, blob, straddling, space = bleed_and_outside
    prediction = bleed | blob | straddling
    assert blob.any() and (straddling & space).any() and (straddling & ~space).any()
    result, report = apply_rule(prediction, case.image.spacing, Rule("intracranial"), case.image)
    assert np.array_equal(result, prediction & space)
    removed = int(blob.sum() + (straddling & ~space).sum())
    n_bleeds = ndimage.label(bleed, _CUBE)[1]
    assert report == {
        "rule": "intracranial", "params": {}, "removed_voxels": removed,
        "removed_ml": pytest.approx(removed * case.image.voxel_volume_ml),
        "removed_components": 1, "trimmed_components": 1, "kept_components": n_bleeds + 1,
        "intracranial_ml": pytest.approx(space.sum() * case.image.voxel_volume_ml, abs=0.05),
        "declined": None}
    json.dumps(report)


def test_intracranial_then_a_component_rule(bleed_and_outside):
    case, bleed, blob, straddling, space = bleed_and_outside
    prediction = bleed | blob | straddling
    steps = Postprocessing((Rule("intracranial"), Rule("keep_largest")))
    done = postprocess(prediction, case.image.spacing, steps, case.image)
    labels, count = ndimage.label(bleed | (straddling & space), _CUBE)
    largest = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
    assert np.array_equal(done.mask, largest)
    assert np.array_equal(done.intracranial.mask, space)
    report = done.report
    assert report["rule"] == "intracranial then keep_largest"
    assert [step["rule"] for step in report["steps"]] == ["intracranial", "keep_largest"]
    assert report["removed_voxels"] == int(prediction.sum() - largest.sum())
    assert report["removed_voxels"] == sum(step["removed_voxels"] for step in report["steps"])
    assert report["removed_components"] == count + 1 - 1   # the blob, and every bleed but one
    assert report["kept_components"] == 1


def test_the_rule_declines_without_a_skull_and_removes_nothing():
    case = generate_case(3, "tiny")
    brain = np.where(intracranial(case), case.image.array, -1024).astype(np.int16)
    prediction = intracranial(case) & (case.tissues == Tissue.GREY)
    result, report = apply_rule(prediction, case.image.spacing, Rule("intracranial"),
                                case.image.with_array(brain))
    assert np.array_equal(result, prediction)
    assert report["removed_voxels"] == 0 and report["declined"].startswith("no skull:")


def test_the_rule_needs_the_ct():
    mask = np.zeros((4, 8, 8), dtype=bool)
    mask[1, 2, 2] = True
    with pytest.raises(RuleError, match="needs the CT"):
        apply_rule(mask, (5.0, 1.0, 1.0), Rule("intracranial"))
    # An empty mask has nothing to remove: the CT is not needed.
    assert apply_rule(~mask & False, (5.0, 1.0, 1.0), Rule("intracranial"))[1]["removed_voxels"] == 0


def test_the_space_is_found_once_per_case_and_loaded_lazily(bleed_and_outside):
    case, bleed, blob, _, _ = bleed_and_outside
    loads = []
    steps = CaseSteps(bleed | blob, case.image.spacing,
                      lambda: loads.append(1) or case.image)
    for candidate in candidate_grid():
        steps.run(candidate.steps)
    assert loads == [1]


# --- the rule in the cross-validated selection ---

def selection_cases(with_outside: bool) -> list[tuple]:
    """Tiny phantoms with bleeds; the predictions mark each bleed (one voxel too wide inside the
    skull) and, ``with_outside``, a blob of scalp or temporal muscle beside the skull."""
    cases = []
    for seed in range(6, 10):
        case = generate_case(seed, "tiny", hemorrhage=True)
        inside = intracranial(case)
        reference = case.label.astype(bool)
        prediction = ndimage.binary_dilation(reference, iterations=1) & inside
        if with_outside:
            cosine, _ = direction_from_centre(case, (0.2, 0.3, 1.0))
            soft = (case.tissues == Tissue.SCALP) & ~ndimage.binary_dilation(inside, _CUBE)
            prediction |= soft & (cosine > 0.9)
        cases.append((prediction, reference, case.image.spacing, case.image))
    return cases


def test_selection_chooses_the_intracranial_rule_where_it_removes_false_positives():
    cases = selection_cases(with_outside=True)
    selection = select_rule(cases)
    assert selection.chosen.steps[0] == Rule("intracranial")
    rows = {str(row.rule): row for row in selection.rows}
    assert rows["intracranial"].means["dice"] > rows["none"].means["dice"] + 0.05
    without = np.mean([case_metrics(p & find_intracranial_space(ct).room, r, s)["dice"]
                       for p, r, s, ct in cases])
    assert rows["intracranial"].means["dice"] == pytest.approx(without)


def test_selection_loses_no_dice_where_nothing_lies_outside():
    """Without extracranial false positives the rule removes at most the partial-volume voxels
    at the inner table (in the tissue map, majority brain; in HU, bone): Dice does not drop."""
    cases = selection_cases(with_outside=False)
    selection = select_rule(cases)
    rows = {str(row.rule): row for row in selection.rows}
    assert rows["intracranial"].means["dice"] >= rows["none"].means["dice"]
    assert not rows["intracranial"].worse
    voxels = sum(int(p.sum()) for p, *_ in cases)
    assert rows["intracranial"].removed_voxels < 0.05 * voxels
    assert rows["intracranial"].removed_components == 0
