"""Real scanner geometry: gantry-tilted and unevenly spaced series read onto an orthogonal,
equidistant grid, checked in world coordinates against the analytic head they were sampled from
and against dcm2niix run on the same files; missing slices refused unless allowed; tidy series
read as they always were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ichseg.errors import InputError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.dicom_geometry import AIR_HU
from ichseg.io.image import load_image
from ichseg.report.options import OutputOptions
from ichseg.report.outputs import write_case_outputs
from phantoms import head_phantom
from scanner_series import Acquisition, covered, dcm2niix, sample_nifti, voxel_centres

#: Linear interpolation of the analytic head's smooth edges (1.5 mm wide, pixels of 1.3-1.4 mm)
#: stays within this mean |HU| of the head inside it; a slice moved by one pixel too many or the
#: wrong way misses it by far more (tens to hundreds of HU).
INTERPOLATION_HU = 8.0
#: dcm2niix interpolates the same samples with the same weights and rounds to whole HU after each
#: correction (twice for a tilted, unevenly spaced series).
DCM2NIIX_MEAN_HU = 0.5
DCM2NIIX_MAX_HU = 1.05

TILTED = {
    "tilted orientation -18°": Acquisition(tilt_deg=-18.0),
    "tilted orientation +16.5°": Acquisition(tilt_deg=16.5),
    "sheared axial +18°": Acquisition(tilt_deg=18.0, sheared_axial=True),
    "sheared axial -18.5°": Acquisition(tilt_deg=-18.5, sheared_axial=True),
}
UNEVEN = Acquisition(steps_mm=(4.0,) * 10 + (7.0,) * 8)  # posterior fossa at 4 mm, then 7 mm


def head_and_reached(acquisition: Acquisition, image):
    """The analytic head at the grid's voxels, and the voxels inside it that a slice reached."""
    truth = acquisition.head_hu(voxel_centres(image))
    return truth, (truth > -500) & covered(acquisition, image)


@pytest.mark.parametrize("name", TILTED)
def test_tilted_series_is_read_onto_an_orthogonal_grid_that_keeps_every_slice(name, tmp_path):
    acquisition = TILTED[name]
    image = load_dicom_series(acquisition.write(tmp_path / "ct"))
    geometry = image.metadata["dicom"]["geometry"]
    assert geometry["correction"] == ["gantry tilt"]
    assert geometry["tilt_deg"] == pytest.approx(abs(acquisition.tilt_deg), abs=0.05)
    row, column = acquisition.axes()
    axes = np.asarray(image.direction).reshape(3, 3)
    assert np.allclose(axes, np.column_stack([row, column, np.cross(row, column)]), atol=1e-6)
    step = 5.0 if acquisition.sheared_axial else 5.0 * np.cos(np.radians(acquisition.tilt_deg))
    assert image.spacing == pytest.approx((step, *acquisition.pixel_mm), abs=1e-3)
    assert geometry["grid"] == {"spacing": list(np.round(image.spacing, 4)), "shape": list(image.shape)}

    truth, reached = head_and_reached(acquisition, image)
    assert np.abs(image.array - truth)[reached].mean() < INTERPOLATION_HU
    # widened, not cropped: every source pixel lies on the grid, which is no wider than needed
    shift_px = 90.0 * np.tan(np.radians(abs(acquisition.tilt_deg))) / acquisition.pixel_mm[0]
    assert image.shape[1] - acquisition.rows in (int(np.ceil(shift_px)), int(np.ceil(shift_px)) - 1)
    to_index = np.linalg.inv(np.asarray(image.direction).reshape(3, 3) * image.spacing[::-1])
    for position in acquisition.positions():
        corners = acquisition.pixel_centres(position)[[0, 0, -1, -1], [0, -1, 0, -1]]
        index = (corners - image.origin) @ to_index.T
        assert np.all((index > -0.01) & (index < np.array(image.shape[::-1]) - 1 + 0.01))
    # where no slice reached (a pixel's interpolation apart), the grid holds air
    near = ndimage.binary_dilation(covered(acquisition, image), structure=np.ones((1, 3, 3), bool))
    assert np.all(image.array[~near] == AIR_HU)


#: Each test series, and the dcm2niix output that corrects it (this dcm2niix's gantry-tilt
#: correction shears one way only; for the other way its plain output, whose affine carries the
#: shear, is the reference where the images are axial).
AGAINST_DCM2NIIX = {
    "tilted orientation -18°": (TILTED["tilted orientation -18°"], "_Tilt"),
    "sheared axial -18.5°": (TILTED["sheared axial -18.5°"], "_Tilt"),
    "sheared axial +18°, its shear in the affine": (TILTED["sheared axial +18°"], ""),
    "4 mm then 7 mm": (UNEVEN, "_Eq"),
    "5 mm with one step of 7.5 mm": (Acquisition(steps_mm=(5.0,) * 8 + (7.5,) + (5.0,) * 8), "_Eq"),
    "tilted -16° and 4 mm then 7 mm": (Acquisition(tilt_deg=-16.0, steps_mm=UNEVEN.steps_mm), "_Tilt_Eq"),
}


@pytest.mark.parametrize("name", AGAINST_DCM2NIIX)
def test_the_volume_agrees_with_dcm2niix_in_world_coordinates(name, tmp_path):
    acquisition, suffix = AGAINST_DCM2NIIX[name]
    folder = acquisition.write(tmp_path / "ct")
    image = load_dicom_series(folder)
    reference = dcm2niix(folder, tmp_path / "nii")[suffix]
    world = voxel_centres(image)
    values, inside, index = sample_nifti(reference, world)
    head = acquisition.head_hu(world) > -500
    compared = head & inside
    assert compared.sum() > 0.85 * head.sum()  # dcm2niix's equidistant grid stops short of the top
    difference = np.abs(image.array - values)[compared]
    assert difference.mean() < DCM2NIIX_MEAN_HU and difference.max() < DCM2NIIX_MAX_HU
    if suffix:  # a corrected output: its voxel centres are ours
        assert np.abs(index - np.round(index))[compared].max() < 0.01


def test_uneven_steps_give_planes_at_the_smallest_step_through_the_source_slices(tmp_path):
    folder = UNEVEN.write(tmp_path / "ct")
    image = load_dicom_series(folder)
    geometry = image.metadata["dicom"]["geometry"]
    assert geometry["correction"] == ["equidistant slices"]
    assert geometry["source_steps_mm"] == [4.0, 7.0]
    depths = UNEVEN.table_mm
    assert image.spacing[0] == pytest.approx(4.0)
    assert image.shape[0] == round(depths[-1] / 4.0) + 1  # the last slice within half a step
    sources = np.stack([pydicom.dcmread(path).pixel_array - 1024.0 for path in sorted(folder.glob("*.dcm"))])
    for j, depth in enumerate(np.arange(image.shape[0]) * 4.0):
        hi = int(np.clip(np.searchsorted(depths, depth), 1, len(depths) - 1))
        weight = min((depth - depths[hi - 1]) / (depths[hi] - depths[hi - 1]), 1.0)
        assert np.allclose(image.array[j], (1 - weight) * sources[hi - 1] + weight * sources[hi], atol=1e-3)
    assert np.array_equal(image.array[:11], sources[:11])  # the 4 mm slices are grid planes


def test_missing_files_are_refused_naming_them_unless_gaps_are_allowed(tmp_path):
    acquisition = Acquisition(steps_mm=(5.0,) * 12)
    folder = acquisition.write(tmp_path / "ct")
    files = sorted(folder.glob("*.dcm"))
    full = load_dicom_series(folder)
    files[5].unlink()
    files[9].unlink()
    files[10].unlink()
    with pytest.raises(InputError) as caught:
        load_image(folder)
    message = str(caught.value)
    assert "1 missing slice(s) between files slice_0005.dcm and slice_0007.dcm (gap 10.00 mm" in message
    assert "2 such gaps in all" in message and "--allow-gaps" in message and "\n" not in message

    filled = load_image(folder, allow_gaps=True)
    assert filled.metadata["dicom"]["geometry"]["missing_slices"] == 3
    assert filled.metadata["dicom"]["geometry"]["correction"] == ["equidistant slices"]
    assert filled.same_geometry(full)
    kept = [k for k in range(full.shape[0]) if k not in (5, 9, 10)]
    assert np.array_equal(filled.array[kept], full.array[kept])
    assert np.allclose(filled.array[5], (full.array[4] + full.array[6]) / 2)
    assert np.allclose(filled.array[9], (2 * full.array[8] + full.array[11]) / 3, atol=1e-3)


def test_one_step_that_is_not_a_multiple_is_resampled_not_refused(tmp_path):
    image = load_dicom_series(Acquisition(steps_mm=(5.0,) * 6 + (7.5,) + (5.0,) * 6).write(tmp_path / "ct"))
    geometry = image.metadata["dicom"]["geometry"]
    assert geometry["correction"] == ["equidistant slices"]
    assert geometry["source_steps_mm"] == [5.0, 7.5]
    assert image.spacing[0] == pytest.approx(5.0) and image.shape[0] == 15


def test_a_tidy_series_is_read_as_stacked_with_its_source_slices(tmp_path):
    phantom = head_phantom()
    folder = write_ct_series(phantom, tmp_path / "ct")
    image = load_dicom_series(folder)
    assert np.array_equal(image.array, phantom.array) and image.same_geometry(phantom, tol=1e-4)
    info = image.metadata["dicom"]
    assert info["geometry"]["correction"] == [] and "tilt_deg" not in info["geometry"]
    assert [s["file"] for s in info["source_slices"]] == info["files"] == [str(p) for p in sorted(folder.glob("*.dcm"))]
    assert [s["SOPInstanceUID"] for s in info["source_slices"]] == info["SOPInstanceUIDs"]
    assert all(s["frame"] is None for s in info["source_slices"])
    json.dumps(info)  # plain JSON types


def test_a_corrected_series_writes_its_ct_and_says_what_was_done(tmp_path):
    acquisition = TILTED["tilted orientation -18°"]
    image = load_dicom_series(acquisition.write(tmp_path / "ct"))
    mask = acquisition.in_bleed(voxel_centres(image))
    written = write_case_outputs(image, mask, tmp_path / "out", OutputOptions(preview=False, html=False,
                                                                              dicom_seg=False))
    assert written.files["ct"].name == "ct_ct.nii.gz"
    ct = load_image(written.files["ct"])
    assert ct.same_geometry(load_image(written.files["mask"])) and np.allclose(ct.array, image.array)
    geometry = json.loads(written.files["json"].read_text())["input"]["dicom"]["geometry"]
    assert geometry["correction"] == ["gantry tilt"] and geometry["measured_on"] == "orthogonal grid"
    assert geometry["tilt_deg"] == pytest.approx(18.0, abs=0.05)

    tidy = load_dicom_series(write_ct_series(head_phantom(), tmp_path / "tidy"))
    options = OutputOptions(preview=False, html=False, dicom_seg=False)
    plain = write_case_outputs(tidy, tidy.array > 60, tmp_path / "plain", options)
    assert "ct" not in plain.files and "geometry" not in plain.summary.input["dicom"]
    asked = write_case_outputs(tidy, tidy.array > 60, tmp_path / "asked", OutputOptions(
        preview=False, html=False, dicom_seg=False, write_ct=True))
    assert np.array_equal(load_image(asked.files["ct"]).array, tidy.array)


def test_predict_passes_allow_gaps_and_write_ct_on_and_reading_honours_them(tmp_path, monkeypatch):
    from ichseg import commands
    from ichseg.batch.runner import PredictionResult
    from ichseg.cli import main
    from ichseg.io.inputs import CaseInput, ReadOptions
    from ichseg.segmentation.segmenter import read_case

    asked = {}

    def record(inputs, output_dir, model=None, **options):
        asked.update(options)
        return PredictionResult(Path(output_dir), failures=[("ct", "recorded")])

    monkeypatch.setattr(commands, "predict", record)
    assert main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--allow-gaps", "--write-ct"]) == 2
    assert asked["allow_gaps"] is True and asked["options"].write_ct is True
    main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out")])
    assert asked["allow_gaps"] is False and asked["options"].write_ct is False

    folder = Acquisition(steps_mm=(5.0,) * 8).write(tmp_path / "ct")
    sorted(folder.glob("*.dcm"))[4].unlink()
    with pytest.raises(InputError, match="missing slice"):
        read_case(CaseInput(folder), prepare=lambda canonical: None)
    _, (image, _, _) = read_case(CaseInput(folder), prepare=lambda canonical: None, read=ReadOptions(allow_gaps=True))
    assert image.shape[0] == 9 and image.metadata["dicom"]["geometry"]["missing_slices"] == 1


@pytest.mark.slow
def test_ichseg_predict_segments_tilted_and_gapped_series_on_their_corrected_grids(tiny_model, tmp_path):
    from ichseg.cli import main

    inputs, out = tmp_path / "in", tmp_path / "out"
    TILTED["tilted orientation -18°"].write(inputs / "tilted")
    gapped = Acquisition(steps_mm=(5.0,) * 10).write(inputs / "gapped")
    sorted(gapped.glob("*.dcm"))[4].unlink()
    assert main(["predict", "-i", str(inputs), "-o", str(out), "--model", str(tiny_model), "--allow-gaps",
                 "--device", "cpu", "--no-mirroring", "--no-report"]) == 0
    for name, correction in (("tilted", ["gantry tilt"]), ("gapped", ["equidistant slices"])):
        image = load_dicom_series(inputs / name, allow_gaps=True)
        assert load_image(out / f"{name}.nii.gz").same_geometry(image)
        assert np.allclose(load_image(out / f"{name}_ct.nii.gz").array, image.array)
        geometry = json.loads((out / f"{name}.json").read_text())["input"]["dicom"]["geometry"]
        assert geometry["correction"] == correction and geometry["measured_on"] == "orthogonal grid"
        seg = pydicom.dcmread(out / f"{name}_seg.dcm")
        sources = set(image.metadata["dicom"]["SOPInstanceUIDs"])
        assert {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                for item in seg.PerFrameFunctionalGroupsSequence} <= sources
