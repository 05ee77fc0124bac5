"""Phantom look-alikes, the intracranial tissue set, skull defects and subtype labels.

Anatomy is checked on the render samples themselves (a 2.5 mm grid over the whole head, where
each sample has its head coordinates and its tissue code), and on the voxels of generated cases.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ichseg.cli import main
from ichseg.data.synth import (
    BLOOD_LIKE_TISSUES,
    HEMORRHAGE_TYPES,
    INTRACRANIAL_TISSUES,
    Tissue,
    case_seed,
    generate_case,
    synthesize,
)
from ichseg.data.synth.anatomy import PETROUS_RIDGES, Head, tentorium_height
from ichseg.data.synth.artifacts import add_beam_hardening
from ichseg.data.synth.case import draw_head
from ichseg.data.synth.lookalikes import LookAlikes
from ichseg.data.synth.showcase import lookalike_caption, lookalike_slice
from ichseg.data.synth.tissues import anatomy_slab
from ichseg.errors import InputError
from ichseg.labels import SUBTYPE_NAMES, SUBTYPES
from ichseg.report.preview import DPI, PANEL_INCHES

#: Acute blood on CT (DESIGN.md section 7).
BLOOD_HU = (50.0, 90.0)

#: Published HU of each look-alike (see ichseg.data.synth.lookalikes), noise-free samples.
PUBLISHED_HU = {
    Tissue.MUSCLE: (40, 60), Tissue.SCALP_VESSEL: (40, 60), Tissue.DURAL_SINUS: (40, 70),
    Tissue.DURA: (40, 65), Tissue.CHOROID_PLEXUS: (35, 55), Tissue.OLD_INFARCT: (5, 20),
    Tissue.GLOBE: (5, 15), Tissue.LENS: (100, 130), Tissue.ORBIT: (-100, -75),
    Tissue.OPTIC_NERVE: (28, 40),
}

SAMPLE_FIELDS = ("codes", "hu", "cavity", "u", "v", "w", "un", "vn", "depth_skin", "bone_depth",
                 "depth_inner", "above_floor", "ventricle", "scalp", "deep_soft")


def first_seed_with_old_infarct() -> int:
    """The first seed whose head has an old infarct (drawn with probability 0.15)."""
    return next(seed for seed in range(200) if draw_head(seed)[0].lookalikes.infarct is not None)


def head_samples(head: Head, spacing: float = 2.5) -> dict[str, np.ndarray]:
    """Every render sample of the head on a regular grid, flattened: its noise-free HU before
    beam hardening (``hu``) and what beam hardening adds (``beam``)."""
    half = head.world_half_extent()
    z, y, x = (np.arange(c - h, c + h, spacing, dtype=np.float32)
               for c, h in zip(head.center[::-1], half[::-1], strict=True))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*SAMPLE_FIELDS, "beam")}
    for k in range(0, len(z), 10):
        slab = anatomy_slab(head, z[k:k + 10], y, x, np.zeros((len(y), len(x)), np.float32))
        before = slab.hu.copy()
        add_beam_hardening(slab)
        parts["beam"].append((slab.hu - before).ravel())
        slab.hu = before
        for name in SAMPLE_FIELDS:
            parts[name].append(np.broadcast_to(getattr(slab, name), slab.codes.shape).ravel())
    return {name: np.concatenate(values) for name, values in parts.items()}


@pytest.fixture(scope="module")
def heads() -> dict[str, tuple[Head, dict[str, np.ndarray]]]:
    infarct = first_seed_with_old_infarct()
    cases = {"plain": (0, None), "infarct": (infarct, None), "craniectomy": (1, "craniectomy"),
             "burr_hole": (2, "burr_hole")}
    out = {}
    for name, (seed, defect) in cases.items():
        head = draw_head(seed, defect)[0]
        out[name] = (head, head_samples(head))
    return out


# ---- the intracranial set ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", "infarct", "craniectomy", "burr_hole"])
def test_intracranial_codes_are_exactly_the_cranial_cavity(heads, name):
    """Inside the cavity every sample has an intracranial code but the petrous ridges' bone;
    outside it, none has."""
    _, s = heads[name]
    intracranial = np.isin(s["codes"], list(INTRACRANIAL_TISSUES))
    assert not np.any(intracranial & ~s["cavity"])
    assert set(np.unique(s["codes"][s["cavity"] & ~intracranial])) <= {Tissue.BONE}
    assert np.count_nonzero(s["cavity"] & ~intracranial) < 0.01 * np.count_nonzero(s["cavity"])


def test_intracranial_set_is_what_the_vocabulary_documents():
    inside = {Tissue.CSF, Tissue.GREY, Tissue.WHITE, Tissue.BLOOD, Tissue.EDEMA, Tissue.CALCIFICATION,
              Tissue.DURAL_SINUS, Tissue.DURA, Tissue.CHOROID_PLEXUS, Tissue.OLD_INFARCT}
    assert INTRACRANIAL_TISSUES == inside
    assert isinstance(INTRACRANIAL_TISSUES, frozenset)
    assert [t.value for t in Tissue][:9] == list(range(9))  # the codes that existed keep their values
    assert [t.name for t in Tissue][:9] == ["AIR", "SCALP", "BONE", "CSF", "GREY", "WHITE", "BLOOD",
                                            "EDEMA", "CALCIFICATION"]


# ---- where each look-alike is ------------------------------------------------------------------


def test_every_lookalike_is_present(heads):
    plain = heads["plain"][1]["codes"]
    expected = set(Tissue) - {Tissue.BLOOD, Tissue.EDEMA, Tissue.OLD_INFARCT, Tissue.CALCIFICATION}
    assert expected <= set(np.unique(plain).tolist())
    assert Tissue.OLD_INFARCT in np.unique(heads["infarct"][1]["codes"])


def test_dura_and_sinuses_lie_in_the_cavity_along_the_midline_and_the_bone(heads):
    head, s = heads["plain"]
    folds = head.lookalikes
    dura = s["codes"] == Tissue.DURA
    tentorium = np.abs(s["w"] - tentorium_height(s["un"], s["vn"]) * np.float32(head.scale[2]))
    assert np.all((np.abs(s["u"][dura]) < folds.falx_mm) | (tentorium[dura] < folds.tentorium_mm))
    sinus = s["codes"] == Tissue.DURAL_SINUS
    midline = np.abs(s["u"]) < max(folds.sagittal_sinus_mm[0], folds.straight_mm) + 0.01
    next_to_bone = s["depth_inner"] < 1.8 * max(max(folds.transverse_mm), folds.sagittal_sinus_mm[1])
    assert np.all(midline[sinus] | next_to_bone[sinus])
    # the superior sagittal sinus runs under the vertex and the transverse sinuses at the back
    top = sinus & (s["w"] > 0.8 * s["w"][s["cavity"]].max())
    assert np.count_nonzero(top) > 0 and np.all(np.abs(s["u"][top]) < folds.sagittal_sinus_mm[0])
    back_sides = sinus & (np.abs(s["u"]) > 25) & (s["v"] > 0)
    assert np.count_nonzero(back_sides & (s["u"] > 0)) > 0 and np.count_nonzero(back_sides & (s["u"] < 0)) > 0


def test_extracranial_lookalikes_lie_outside_the_skull(heads):
    _, s = heads["plain"]
    codes = s["codes"]
    muscle = codes == Tissue.MUSCLE
    in_scalp = s["scalp"] & (s["depth_skin"] > 0)
    orbit_or_face = s["v"] < 0
    assert np.all(in_scalp[muscle] | s["deep_soft"][muscle] | orbit_or_face[muscle])
    temporalis = muscle & in_scalp & (np.abs(s["u"]) > 50) & (s["w"] < 20)
    assert np.count_nonzero(temporalis) * 2.5**3 / 1000 > 5.0  # mL on the sides of the head
    vessel = codes == Tissue.SCALP_VESSEL
    assert np.count_nonzero(vessel) > 0 and np.all(s["scalp"][vessel])
    for code in (Tissue.GLOBE, Tissue.LENS, Tissue.ORBIT, Tissue.OPTIC_NERVE):
        where = codes == code
        assert np.all(s["v"][where] < -15) and np.all(s["above_floor"][where] < 0), code
    assert np.all(s["above_floor"][codes == Tissue.SPINAL_CANAL] <= 0)
    air_in_head = (codes == Tissue.AIR) & (s["depth_skin"] > 0)
    assert np.count_nonzero(air_in_head) > 0 and not np.any(s["cavity"][air_in_head])


def test_choroid_plexus_sits_in_the_ventricles_and_the_infarct_in_the_brain(heads):
    _, s = heads["plain"]
    choroid = s["codes"] == Tissue.CHOROID_PLEXUS
    assert np.count_nonzero(choroid) > 0 and np.all(s["ventricle"][choroid])
    head, s = heads["infarct"]
    infarct = s["codes"] == Tissue.OLD_INFARCT
    depth = head.lookalikes.infarct.depth_mm
    assert np.all(s["cavity"][infarct]) and np.all(s["depth_inner"][infarct] < depth)


def test_lookalike_hu_fall_in_their_published_ranges(heads):
    for name in ("plain", "infarct"):
        _, s = heads[name]
        for code, (low, high) in PUBLISHED_HU.items():
            values = s["hu"][s["codes"] == code]
            if values.size:
                assert low <= values.min() and values.max() <= high, (name, code, values.min(), values.max())
    for code in BLOOD_LIKE_TISSUES:  # each reaches into or near the blood range
        assert PUBLISHED_HU[code][1] >= BLOOD_HU[0]


def test_lookalike_draws_cover_the_published_ranges():
    """Over many heads the drawn HU of sinus and muscle reach the blood range's low end."""
    draws = [LookAlikes.draw(np.random.default_rng(seed)).hu for seed in range(200)]
    sinus = np.array([d["sinus"] for d in draws])
    assert sinus.min() < 50 and sinus.max() > 62
    muscle = np.array([draw_head(seed)[0].hu["muscle"] for seed in range(50)])
    assert 40 <= muscle.min() and muscle.max() <= 60 and muscle.max() > 52


# ---- beam hardening ----------------------------------------------------------------------------


def test_beam_hardening_raises_the_brain_next_to_the_skull_base_smoothly(heads):
    head, s = heads["plain"]
    beam, cavity = head.lookalikes.beam, s["cavity"]
    assert np.all(s["beam"][~cavity] == 0)
    near_floor = cavity & (s["above_floor"] < 1.5) & (s["vn"] > 20) & (np.abs(s["u"]) > 30)
    far = cavity & (s["depth_inner"] > 25)
    assert np.median(s["beam"][near_floor]) > 0.5 * beam.base_hu
    assert np.all(s["beam"][far] < 1.0)  # far from bone nothing is added (the band subtracts)
    assert s["beam"].max() <= beam.vault_hu + beam.base_hu + 1e-3
    # the interpetrous band: darkest across the pons, between the petrous ridges
    ridge = head.to_local(PETROUS_RIDGES[0].center)
    darkest = np.argmin(s["beam"])
    assert s["beam"][darkest] < -0.5 * beam.bar_hu
    assert abs(s["u"][darkest]) < abs(ridge[0]) and abs(s["v"][darkest] - ridge[1]) < 3 * beam.bar_mm


def test_beam_hardening_is_a_smooth_field_not_noise():
    """Between neighbouring samples 0.25 mm apart the added HU changes by a fraction of a HU."""
    head = draw_head(0)[0]
    z = np.arange(-60, -30, 0.25, dtype=np.float32) + np.float32(head.center[2])
    y = np.arange(-20, 60, 0.25, dtype=np.float32) + np.float32(head.center[1])
    x = np.array([head.center[0] + 30.0], np.float32)
    slab = anatomy_slab(head, z, y, x, np.zeros((len(y), 1), np.float32))
    before = slab.hu.copy()
    add_beam_hardening(slab)
    delta, cavity = (slab.hu - before)[..., 0], slab.cavity[..., 0]
    beam = head.lookalikes.beam
    steepest = beam.vault_hu / beam.vault_mm + beam.base_hu / beam.base_mm + beam.bar_hu / beam.bar_mm
    for axis in (0, 1):
        step = np.abs(np.diff(delta, axis=axis))
        both = cavity[1:] & cavity[:-1] if axis == 0 else cavity[:, 1:] & cavity[:, :-1]
        assert step[both].max() <= steepest * 0.25 * 1.01


# ---- in the generated images --------------------------------------------------------------------


@pytest.fixture(scope="module")
def negative_case():
    return generate_case(4, "small", hemorrhage=False)


def test_a_case_without_hemorrhage_has_blood_like_voxels_none_labelled(negative_case):
    case = negative_case
    image, tissues = case.image.array, case.tissues
    assert not case.label.any() and not case.typed_label.any()
    blood_range = (image >= BLOOD_HU[0]) & (image <= BLOOD_HU[1])
    assert np.count_nonzero(blood_range) * case.image.voxel_volume_ml > 10.0
    for code in (Tissue.MUSCLE, Tissue.DURAL_SINUS, Tissue.DURA):
        assert np.count_nonzero(blood_range & (tissues == code)) > 10, code
    sinus = image[(tissues == Tissue.DURAL_SINUS) & case.pure]
    assert BLOOD_HU[0] <= np.median(sinus) <= BLOOD_HU[1]


def test_inner_table_partial_volume_gives_blood_like_voxels(negative_case):
    """Voxels shared by bone and brain or CSF pass through 50-90 HU along the inner table."""
    case = negative_case
    bone = case.tissues == Tissue.BONE
    mixed = ~case.pure & ndimage.binary_dilation(bone) & np.isin(
        case.tissues, [Tissue.BONE, Tissue.CSF, Tissue.GREY, Tissue.WHITE])
    values = case.image.array[mixed]
    assert np.count_nonzero((values >= BLOOD_HU[0]) & (values <= BLOOD_HU[1])) >= 20


def test_preview_slice_shows_the_lookalikes(negative_case):
    z = lookalike_slice(negative_case.tissues)
    caption = lookalike_caption(negative_case.tissues[z])
    assert len(caption.split(", ")) >= 3 and "sinus" in caption and "muscle" in caption
    assert lookalike_caption(np.zeros((4, 4), np.uint8)) == "no look-alikes"


# ---- subtype labels ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cases():
    return [generate_case(case_seed(5, i), "tiny") for i in range(12)]


def test_typed_label_is_the_subtype_of_each_bleed_and_its_support_the_binary_label(tiny_cases):
    abbreviation = {name: short for short, name in SUBTYPE_NAMES.items()}
    seen = set()
    for case in tiny_cases:
        assert case.typed_label.dtype == np.uint8
        np.testing.assert_array_equal(case.label, (case.typed_label > 0).astype(np.uint8))
        values = set(np.unique(case.typed_label).tolist()) - {0}
        assert values == {SUBTYPES.value(abbreviation[kind]) for kind in case.types}
        seen |= values
    assert seen == set(SUBTYPES.hemorrhage_values)  # 1 EDH ... 5 SDH all appear
    assert {SUBTYPES.name(v) for v in seen} == set(SUBTYPE_NAMES)
    assert set(HEMORRHAGE_TYPES) == set(SUBTYPE_NAMES.values())


def test_synthesize_writes_typed_labels_and_names_them(tmp_path):
    synthesize(tmp_path / "typed", 3, seed=5, size="tiny", progress=False, subtypes=True)
    synthesize(tmp_path / "binary", 3, seed=5, size="tiny", progress=False)
    names = json.loads((tmp_path / "typed" / "labels.json").read_text())
    assert names == {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}
    assert not (tmp_path / "binary" / "labels.json").exists()
    for i in range(3):
        typed = np.asarray(nib.load(str(tmp_path / "typed" / "label" / f"ich_00{i}.nii.gz")).dataobj)
        binary = np.asarray(nib.load(str(tmp_path / "binary" / "label" / f"ich_00{i}.nii.gz")).dataobj)
        assert typed.dtype == binary.dtype == np.uint8 and set(np.unique(binary)) <= {0, 1}
        np.testing.assert_array_equal(binary, (typed > 0).astype(np.uint8))
        np.testing.assert_array_equal(np.moveaxis(typed, (0, 1, 2), (2, 1, 0)),
                                      generate_case(case_seed(5, i), "tiny").typed_label)
    assert (tmp_path / "typed" / "cases.csv").read_text() == (tmp_path / "binary" / "cases.csv").read_text()


def test_preview_shows_each_case_twice(tmp_path):
    png = tmp_path / "preview.png"
    synthesize(tmp_path / "set", 1, seed=5, size="tiny", progress=False, preview=png)
    with Image.open(png) as picture:
        assert picture.width == 2 * round(PANEL_INCHES * DPI)  # the bleed and the look-alikes


def test_cli_subtypes_writes_labels_json(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["synth", str(out), "-n", "1", "--size", "tiny", "--subtypes"]) == 0
    assert json.loads((out / "labels.json").read_text()) == SUBTYPES.to_dataset_json()
    assert capsys.readouterr().out.startswith("wrote 1 tiny cases")


# ---- skull defects -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defect_cases():
    return {defect: generate_case(7, "small", skull_defect=defect)
            for defect in (None, "craniectomy", "burr_hole")}


def changed_region(case, base) -> tuple[np.ndarray, float]:
    """Voxels (mm, z y x) where the image changed, and the radius of the ball around them."""
    changed = np.argwhere(case.image.array != base.image.array) * np.asarray(case.image.spacing)
    return changed, float(np.sqrt(((changed - changed.mean(axis=0)) ** 2).sum(axis=1)).max())


def test_a_defect_leaves_the_rest_of_the_case_as_the_seed_draws_it(defect_cases):
    base = defect_cases[None]
    np.testing.assert_array_equal(base.image.array, generate_case(7, "small").image.array)
    for defect in ("craniectomy", "burr_hole"):
        case = defect_cases[defect]
        assert case.image.shape == base.image.shape and case.image.spacing == base.image.spacing
        assert case.types == base.types
        again = generate_case(7, "small", skull_defect=defect)
        np.testing.assert_array_equal(case.image.array, again.image.array)
    np.testing.assert_array_equal(defect_cases["burr_hole"].label, base.label)  # same bleeds


def test_burr_hole_removes_a_small_disc_of_bone_and_keeps_the_cavity(defect_cases):
    base, case = defect_cases[None], defect_cases["burr_hole"]
    voxel_ml = base.image.voxel_volume_ml
    removed = (np.count_nonzero(base.tissues == Tissue.BONE) - np.count_nonzero(case.tissues == Tissue.BONE))
    assert 0.2 < removed * voxel_ml < 2.5  # a hole 11-14 mm across through 5-11 mm of bone
    _, radius = changed_region(case, base)
    assert radius < 7.0 + 2 * max(case.image.spacing)  # the hole's radius and a voxel either side
    intracranial = list(INTRACRANIAL_TISSUES)
    flips = np.isin(case.tissues, intracranial) != np.isin(base.tissues, intracranial)
    assert np.count_nonzero(flips) <= 5  # partial voxels on the rim only


def test_craniectomy_removes_a_flap_on_one_side_and_the_brain_fills_it(defect_cases):
    base, case = defect_cases[None], defect_cases["craniectomy"]
    voxel_ml = base.image.voxel_volume_ml
    removed = (np.count_nonzero(base.tissues == Tissue.BONE) - np.count_nonzero(case.tissues == Tissue.BONE))
    assert 25 < removed * voxel_ml < 150  # a flap 100-130 mm across of 5-11 mm bone
    changed, radius = changed_region(case, base)
    assert radius < 75
    head_x = np.argwhere(base.tissues != Tissue.AIR)[:, 2].mean() * case.image.spacing[2]
    side = np.sign(changed[:, 2] - head_x)
    assert abs(side.mean()) > 0.98  # one side of the head
    intracranial = list(INTRACRANIAL_TISSUES)
    gained = np.isin(case.tissues, intracranial) & ~np.isin(base.tissues, intracranial)
    lost = ~np.isin(case.tissues, intracranial) & np.isin(base.tissues, intracranial)
    assert np.count_nonzero(gained) * voxel_ml > 0.3 * removed * voxel_ml
    assert np.count_nonzero(lost) < 0.01 * np.count_nonzero(gained)
    assert scalp_on_brain(case) > scalp_on_brain(base) + 50  # no bone between scalp and brain


def scalp_on_brain(case) -> int:
    """Scalp and muscle voxels that touch an intracranial voxel."""
    brain = ndimage.binary_dilation(np.isin(case.tissues, list(INTRACRANIAL_TISSUES)))
    return int(np.count_nonzero(brain & np.isin(case.tissues, [Tissue.SCALP, Tissue.MUSCLE])))


def test_unknown_defect_is_refused():
    with pytest.raises(InputError, match="unknown skull defect 'hole'"):
        generate_case(0, "tiny", skull_defect="hole")
