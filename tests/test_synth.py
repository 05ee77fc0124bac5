"""Synthetic head CTs: determinism, anatomy in HU, labels, the written data set and ``ichseg synth``."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ichseg.cli import main
from ichseg.cli.synth import SIZE_CHOICES
from ichseg.data.synth import (
    HEMORRHAGE_TYPES,
    INTRACRANIAL_TISSUES,
    SIZES,
    Tissue,
    case_seed,
    generate_case,
    synthesize,
)
from ichseg.errors import InputError, OutputExistsError

# HU ranges of DESIGN.md §7 (acute blood up to about 100 when clotted).
DESIGN_HU = {
    Tissue.SCALP: (-100, 40), Tissue.BONE: (300, 1900), Tissue.CSF: (0, 15),
    Tissue.GREY: (35, 45), Tissue.WHITE: (20, 30), Tissue.BLOOD: (50, 100),
}


@pytest.fixture(scope="module")
def tiny_cases():
    """The first 20 cases of the data set seeded 0, as ``synthesize`` would draw them."""
    return [generate_case(case_seed(0, i), "tiny") for i in range(20)]


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Array (z, y, x) and voxel size (z, y, x) as nibabel reads them (independently of SimpleITK)."""
    image = nib.load(str(path))
    return np.asarray(image.dataobj).transpose(2, 1, 0), tuple(float(s) for s in image.header.get_zooms()[::-1])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def skull_interior(tissues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the region the bone encloses (bone included), and whether that region holds
    all the slice's brain and CSF (at the skull base thick slices may show the ring open)."""
    interior = np.stack([ndimage.binary_fill_holes(plane == Tissue.BONE) for plane in tissues])
    brain = np.isin(tissues, list(INTRACRANIAL_TISSUES - {Tissue.BLOOD}))
    closed = np.array([np.all(inside[plane]) for inside, plane in zip(interior, brain, strict=True)])
    return interior, closed


def outside_air(tissues: np.ndarray) -> np.ndarray:
    """The air around the head (not the sinuses' or the mastoid cells'), reaching the field's edge."""
    components, _ = ndimage.label(tissues == Tissue.AIR)
    border = np.unique(np.concatenate([components[:, 0].ravel(), components[:, -1].ravel(),
                                       components[:, :, 0].ravel(), components[:, :, -1].ravel()]))
    return np.isin(components, border[border > 0])


# ---- generate_case ---------------------------------------------------------------------------


def test_same_seed_gives_the_same_case_and_another_seed_does_not():
    first, again, other = generate_case(11, "tiny"), generate_case(11, "tiny"), generate_case(12, "tiny")
    np.testing.assert_array_equal(first.image.array, again.image.array)
    np.testing.assert_array_equal(first.label, again.label)
    np.testing.assert_array_equal(first.tissues, again.tissues)
    assert (first.types, first.volume_ml, first.image.spacing) == (again.types, again.volume_ml,
                                                                   again.image.spacing)
    assert first.image.shape != other.image.shape or not np.array_equal(first.image.array, other.image.array)


def test_arrays_have_the_documented_types_and_shapes(tiny_cases):
    case = tiny_cases[0]
    assert case.image.array.dtype == np.int16
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) <= {0, 1}
    assert case.tissues.dtype == np.uint8 and case.tissues.max() < len(Tissue)
    assert case.label.shape == case.tissues.shape == case.pure.shape == case.image.shape


@pytest.mark.parametrize("size, slices, matrix", [("tiny", (16, 16), 64), ("small", (24, 32), 128)])
def test_small_sizes_keep_a_head_sized_field_of_view_and_cover_the_brain(size, slices, matrix):
    case = generate_case(5, size)
    n, ny, nx = case.image.shape
    dz, dy, dx = case.image.spacing
    assert slices[0] <= n <= slices[1] and ny == nx == matrix
    assert dy == dx and 215 <= dx * matrix <= 240
    assert 144 <= dz * n <= 161  # 145-160 mm, slice spacing rounded to 0.1 mm


def test_full_size_uses_instance_spacing():
    case = generate_case(3, "full", hemorrhage=True)
    n, ny, nx = case.image.shape
    dz, dy, dx = case.image.spacing
    assert ny == nx == 512 and 20 <= n <= 40
    assert dy == dx and 0.40 <= dx <= 0.50
    assert 4.3 <= dz <= 5.4
    assert case.label.any() and case.types


def test_unknown_size_and_negative_seed_are_refused():
    with pytest.raises(InputError, match="unknown size 'huge'"):
        generate_case(0, "huge")
    with pytest.raises(InputError, match="seed -1"):
        generate_case(-1, "tiny")


def test_each_tissue_has_its_design_hu(tiny_cases):
    """Median HU of voxels made of one tissue only (no partial volume) in DESIGN's range."""
    for tissue, (low, high) in DESIGN_HU.items():
        medians = [np.median(c.image.array[(c.tissues == tissue) & c.pure]) for c in tiny_cases
                   if np.any((c.tissues == tissue) & c.pure)]
        assert len(medians) >= 10, tissue
        assert low <= np.median(medians) <= high, (tissue, medians)
        assert all(low - 5 <= m <= high + 5 for m in medians), (tissue, medians)
    for case in tiny_cases:
        air = case.image.array[(case.tissues == Tissue.AIR) & case.pure]
        assert abs(np.median(air) + 1000) <= 2
        grey = np.median(case.image.array[(case.tissues == Tissue.GREY) & case.pure])
        white = case.image.array[(case.tissues == Tissue.WHITE) & case.pure]
        assert grey - np.median(white) >= 8  # grey/white contrast
        assert 2.0 <= np.std(white) <= 8.0  # CT noise of a few HU


def test_label_is_blood_inside_the_skull(tiny_cases):
    bleeding = [c for c in tiny_cases if c.label.any()]
    assert len(bleeding) >= 15
    checked = total = 0
    for case in bleeding:
        label = case.label.astype(bool)
        assert np.all(case.tissues[label] == Tissue.BLOOD)
        assert not np.any((case.tissues == Tissue.BLOOD) & ~label)
        interior, closed = skull_interior(case.tissues)
        assert np.all(interior[closed][label[closed]])
        checked += np.count_nonzero(label[closed])
        total += np.count_nonzero(label)
        assert not np.any(label & ndimage.binary_dilation(outside_air(case.tissues)))
        values = case.image.array[label]
        assert np.all((values > 0) & (values < 150)), (values.min(), values.max())
        assert 50 <= np.median(values) <= 90
    assert checked >= 0.9 * total  # the ring is open on few of the slices with blood


def test_volume_is_label_count_times_voxel_volume(tiny_cases):
    for case in tiny_cases:
        dz, dy, dx = case.image.spacing
        assert case.volume_ml == pytest.approx(case.label.sum() * dz * dy * dx / 1000.0, rel=1e-12)


def test_every_hemorrhage_type_appears_and_some_cases_have_none(tiny_cases):
    seen = {kind for case in tiny_cases for kind in case.types}
    assert seen == set(HEMORRHAGE_TYPES)
    without = [case for case in tiny_cases if not case.types]
    assert 1 <= len(without) <= 6
    for case in tiny_cases:
        assert bool(case.types) == bool(case.label.any())
        assert 1 <= len(case.types) <= 3 or not case.types
        assert list(case.types) == sorted(case.types, key=HEMORRHAGE_TYPES.index)


def test_hemorrhage_can_be_forced_either_way(tiny_cases):
    without = next(i for i, case in enumerate(tiny_cases) if not case.types)
    forced = generate_case(case_seed(0, without), "tiny", hemorrhage=True)
    assert forced.label.any() and forced.types and forced.volume_ml > 0
    with_bleed = next(i for i, case in enumerate(tiny_cases) if case.types)
    clean = generate_case(case_seed(0, with_bleed), "tiny", hemorrhage=False)
    assert not clean.label.any() and clean.types == () and clean.volume_ml == 0.0
    assert not np.any(clean.tissues == Tissue.BLOOD)


# ---- synthesize ------------------------------------------------------------------------------


def test_synthesize_writes_the_instance_layout_with_a_consistent_table(tmp_path):
    out = tmp_path / "set"
    records = synthesize(out, 3, seed=4, size="tiny", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # nothing half-written beside it
    assert sorted(p.name for p in (out / "data").iterdir()) == ["ich_000.nii.gz", "ich_001.nii.gz",
                                                                 "ich_002.nii.gz"]
    rows = read_csv(out / "cases.csv")
    assert list(rows[0]) == ["name", "types", "volume_ml", "spacing_z", "spacing_y", "spacing_x",
                             "shape_z", "shape_y", "shape_x"]
    for record, row in zip(records, rows, strict=True):
        image, image_spacing = read_nifti(out / "data" / f"{row['name']}.nii.gz")
        label, label_spacing = read_nifti(out / "label" / f"{row['name']}.nii.gz")
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert image_spacing == pytest.approx(label_spacing)
        voxel_ml = float(np.prod(label_spacing)) / 1000.0
        assert float(row["volume_ml"]) == pytest.approx(np.count_nonzero(label) * voxel_ml, rel=1e-6)
        assert row["types"] == ";".join(record.types)
        assert (row["types"] == "") == (np.count_nonzero(label) == 0)
        assert tuple(float(row[f"spacing_{a}"]) for a in "zyx") == pytest.approx(image_spacing, rel=1e-6)
        assert tuple(int(row[f"shape_{a}"]) for a in "zyx") == image.shape == record.shape
        assert record.image_path == out / "data" / f"{row['name']}.nii.gz" and record.image_path.exists()
        np.testing.assert_array_equal(image, generate_case(case_seed(4, records.index(record)), "tiny").image.array)


def test_case_i_does_not_depend_on_how_many_cases_are_asked_for(tmp_path):
    synthesize(tmp_path / "two", 2, seed=9, size="tiny", progress=False)
    synthesize(tmp_path / "three", 3, seed=9, size="tiny", progress=False)
    synthesize(tmp_path / "again", 2, seed=9, size="tiny", progress=False)
    two = (tmp_path / "two" / "cases.csv").read_text()
    three = (tmp_path / "three" / "cases.csv").read_text()
    assert three.startswith(two) and len(three.splitlines()) == 4
    assert (tmp_path / "again" / "cases.csv").read_text() == two
    for name in ("ich_000", "ich_001"):
        for folder in ("data", "label"):
            a, _ = read_nifti(tmp_path / "two" / folder / f"{name}.nii.gz")
            b, _ = read_nifti(tmp_path / "three" / folder / f"{name}.nii.gz")
            np.testing.assert_array_equal(a, b)


def test_existing_output_is_refused_before_any_work_and_replaced_with_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    import ichseg.data.synth.dataset as synth

    def no_work(*args, **kwargs):
        raise AssertionError("a case was generated")

    monkeypatch.setattr(synth, "generate_case", no_work)
    with pytest.raises(OutputExistsError, match="already exists"):
        synthesize(out, 2, size="tiny", progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    monkeypatch.undo()
    synthesize(out, 1, size="tiny", overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "data", "label"]


@pytest.mark.parametrize("n_cases, size, message", [(0, "tiny", "at least 1"), (2, "huge", "unknown size")])
def test_bad_arguments_are_refused_with_nothing_written(tmp_path, n_cases, size, message):
    with pytest.raises(InputError, match=message):
        synthesize(tmp_path / "set", n_cases, size=size, progress=False)
    assert list(tmp_path.iterdir()) == []


# ---- ichseg synth ----------------------------------------------------------------------------


def test_cli_writes_cases_and_a_preview(tmp_path, capsys):
    out, png = tmp_path / "set", tmp_path / "preview.png"
    assert main(["synth", str(out), "-n", "3", "--seed", "2", "--size", "tiny", "--preview", str(png)]) == 0
    rows = read_csv(out / "cases.csv")
    bleeding = sum(1 for row in rows if row["types"])
    assert capsys.readouterr().out.strip() == (f"wrote 3 tiny cases ({bleeding} with hemorrhage) to {out}; "
                                               f"preview {png}")
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.width >= 3 * 300 and picture.height >= 300
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.any() == (bleeding > 0)


def test_cli_refuses_an_existing_folder_in_one_line(tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    assert main(["synth", str(out), "-n", "1", "--size", "tiny"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ichseg: error: ") and "already exists" in error
    assert len(error.strip().splitlines()) == 1
    assert list(out.iterdir()) == []


def test_cli_refuses_zero_cases_in_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "set"), "-n", "0", "--size", "tiny"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == "ichseg: error: number of cases must be at least 1, got 0"
    assert list(tmp_path.iterdir()) == []


def test_cli_size_choices_are_the_generator_sizes():
    assert SIZE_CHOICES == tuple(SIZES)
