"""DICOM-SEG out: written with highdicom, read back with highdicom and with plain pydicom."""

from __future__ import annotations

import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest

from ichseg.errors import InputError, OutputExistsError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.dicom_seg import write_dicom_seg
from ichseg.io.image import CTImage
from scanner_series import BLEED_RADIUS_MM, Acquisition, dciodvfy_errors, voxel_centres


def phantom(shape=(6, 24, 28)) -> CTImage:
    rng = np.random.default_rng(1)
    hu = rng.integers(-50, 90, size=shape).astype(np.float32)
    tilt = np.radians(-15)  # a rotated axial stack, so that positions are not trivial
    direction = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), -np.sin(tilt), 0.0, np.sin(tilt), np.cos(tilt))
    return CTImage(hu, spacing=(4.0, 0.5, 0.6), origin=(3.0, -7.0, 12.0), direction=direction)


def slice_coded_mask(shape) -> np.ndarray:
    """A different rectangle on each slice (slice k: k+1 rows), slices 0 and 4 empty."""
    mask = np.zeros(shape, np.uint8)
    for k in (1, 2, 3, 5):
        mask[k, 2:3 + k, 5 + 2 * k:9 + 2 * k] = 1
    return mask


@pytest.fixture
def loaded(tmp_path):
    write_ct_series(phantom(), tmp_path / "ct", patient_id="PID-77")
    # file names in the opposite order of the positions: the loader's order must win
    reversed_folder = tmp_path / "reversed"
    reversed_folder.mkdir()
    files = sorted((tmp_path / "ct").glob("*.dcm"))
    for i, path in enumerate(reversed(files)):
        shutil.copy(path, reversed_folder / f"{i:02d}.dcm")
    return load_dicom_series(reversed_folder)


def test_frames_reference_the_right_source_slices(loaded, tmp_path):
    mask = slice_coded_mask(loaded.shape)
    path = write_dicom_seg(mask, loaded, tmp_path / "seg.dcm")
    uids = loaded.metadata["dicom"]["SOPInstanceUIDs"]

    seg = hd.seg.segread(path)
    assert seg.number_of_frames == 4  # empty slices get no frame
    by_source = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                                  segment_numbers=[1])
    assert np.array_equal(by_source[..., 0], mask)

    ds = pydicom.dcmread(path)  # the same, read without highdicom
    frames = ds.pixel_array
    seen = set()
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(source_uid)
        seen.add(k)
        assert np.array_equal(frame, mask[k])
        source = pydicom.dcmread(loaded.metadata["dicom"]["files"][k])
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in source.ImagePositionPatient], atol=1e-3)
    assert seen == {1, 2, 3, 5}


def test_segment_is_coded_and_series_is_referenced(loaded, tmp_path):
    path = write_dicom_seg(slice_coded_mask(loaded.shape), loaded, tmp_path / "seg.dcm",
                           algorithm_name="ichseg-test")
    ds = pydicom.dcmread(path)
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "Intracranial hemorrhage"
    kind = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (kind.CodeValue, kind.CodingSchemeDesignator) == ("1386000", "SCT")
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "ichseg-test"
    assert ds.SegmentationType == "BINARY"
    info = loaded.metadata["dicom"]
    assert ds.StudyInstanceUID == info["StudyInstanceUID"]
    assert ds.FrameOfReferenceUID == info["FrameOfReferenceUID"]
    assert ds.PatientID == "PID-77"  # the standard requires the source's patient module
    referenced = ds.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == info["SeriesInstanceUID"]
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(
        info["SOPInstanceUIDs"])


def test_empty_mask_still_gives_a_readable_segmentation(loaded, tmp_path):
    path = write_dicom_seg(np.zeros(loaded.shape, bool), loaded, tmp_path / "empty.dcm")
    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=loaded.metadata["dicom"]["SOPInstanceUIDs"], segment_numbers=[1])
    assert pixels.shape[:3] == loaded.shape and not pixels.any()


def test_a_reoriented_mask_gives_the_same_frames(loaded, tmp_path):
    mask = slice_coded_mask(loaded.shape)
    turned = loaded.reoriented("RAS")
    assert turned.orientation != loaded.orientation
    uids = loaded.metadata["dicom"]["SOPInstanceUIDs"]
    frames = [hd.seg.segread(write_dicom_seg(m, image, tmp_path / f"{name}.dcm"))
              .get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
              for name, image, m in (("loaded", loaded, mask),
                                     ("turned", turned, loaded.with_array(mask).reoriented("RAS").array))]
    assert np.array_equal(frames[0], frames[1])
    assert np.array_equal(frames[0][..., 0], mask)


def test_refuses_non_dicom_or_existing(loaded, tmp_path):
    mask = slice_coded_mask(loaded.shape)
    with pytest.raises(InputError, match="needs a DICOM input series"):
        write_dicom_seg(mask, phantom(), tmp_path / "a.dcm")
    write_dicom_seg(mask, loaded, tmp_path / "c.dcm")
    with pytest.raises(OutputExistsError):
        write_dicom_seg(mask, loaded, tmp_path / "c.dcm")
    write_dicom_seg(mask, loaded, tmp_path / "c.dcm", overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("*.dcm")) == ["c.dcm"]


SCANNER_SERIES = {
    "tilted orientation -18°": Acquisition(tilt_deg=-18.0),
    "tilted orientation +16.5°": Acquisition(tilt_deg=16.5),
    "sheared axial +18°": Acquisition(tilt_deg=18.0, sheared_axial=True),
    "4 mm then 7 mm": Acquisition(steps_mm=(4.0,) * 10 + (7.0,) * 8),
    "tilted -16° and 4 mm then 7 mm": Acquisition(tilt_deg=-16.0, steps_mm=(4.0,) * 10 + (7.0,) * 8),
}


def frame_references(ds: pydicom.Dataset) -> list[tuple[np.ndarray, pydicom.Dataset, str]]:
    """Each frame of a SEG: its pixels, its functional groups (per frame, else shared) and the
    SOP instance it names."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    found = []
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        groups = pydicom.Dataset()
        groups.update(shared)
        groups.update(item)
        found.append((frame, groups, item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID))
    return found


@pytest.mark.parametrize("name", SCANNER_SERIES)
def test_on_scanner_geometry_every_frame_lies_on_its_source_slice(name, tmp_path):
    acquisition = SCANNER_SERIES[name]
    folder = acquisition.write(tmp_path / "ct")
    image = load_dicom_series(folder)
    assert image.metadata["dicom"]["geometry"]["correction"]  # a corrected grid, not the slices
    path = write_dicom_seg(acquisition.in_bleed(voxel_centres(image)), image, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    sources = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in folder.glob("*.dcm"))}
    # a source pixel takes the grid voxel nearest it: within half a voxel diagonal of the pixel
    reach = 0.5 * float(np.linalg.norm(image.spacing))
    framed = set()
    for frame, groups, uid in frame_references(seg):
        source = sources[uid]
        position = np.array(groups.PlanePositionSequence[0].ImagePositionPatient, float)
        assert np.linalg.norm(position - np.array(source.ImagePositionPatient, float)) < 0.01
        assert np.allclose(np.array(groups.PlaneOrientationSequence[0].ImageOrientationPatient, float),
                           np.array(source.ImageOrientationPatient, float), atol=1e-4)
        distance = np.linalg.norm(acquisition.pixel_centres(position) - acquisition.bleed_centre, axis=-1)
        assert np.all(frame[distance < BLEED_RADIUS_MM - reach] == 1)
        assert np.all(frame[distance > BLEED_RADIUS_MM + reach] == 0)
        framed.add(uid)
    bleeding = {uid for uid, ds in sources.items() if np.linalg.norm(
        acquisition.pixel_centres(np.array(ds.ImagePositionPatient, float)) - acquisition.bleed_centre,
        axis=-1).min() < BLEED_RADIUS_MM - reach}
    assert bleeding and bleeding <= framed
    assert dciodvfy_errors(path) == []


def test_results_for_the_pacs_refer_to_the_source_slices_of_a_tilted_series(tmp_path):
    from ichseg.ensemble.info import EnsembleInfo
    from ichseg.segmentation.result import Segmentation
    from ichseg.serve.results import write_results

    acquisition = SCANNER_SERIES["tilted -16° and 4 mm then 7 mm"]
    image = load_dicom_series(acquisition.write(tmp_path / "ct"))
    mask = image.with_array(acquisition.in_bleed(voxel_centres(image)).astype(np.uint8))
    paths = write_results(Segmentation(image, mask, mask, EnsembleInfo.single_model()), tmp_path / "out")
    for path in paths.values():
        assert dciodvfy_errors(path) == []
    slices = image.metadata["dicom"]["source_slices"]
    depth = {s["SOPInstanceUID"]: np.dot(s["position"], np.asarray(image.direction).reshape(3, 3)[:, 2])
             for s in slices}
    sc = pydicom.dcmread(paths["sc"])
    shown = [k for k in range(image.shape[0]) if mask.array[k].any()]
    referenced = [item.ReferencedSOPInstanceUID for item in sc.SourceImageSequence]
    assert len(referenced) == len(shown)
    origin_depth = np.dot(image.origin, np.asarray(image.direction).reshape(3, 3)[:, 2])
    for k, uid in zip(shown, referenced, strict=True):  # the source slice nearest the plane the panel shows
        plane = origin_depth + k * image.spacing[0]
        assert abs(depth[uid] - plane) == pytest.approx(min(abs(d - plane) for d in depth.values()))
    seg = pydicom.dcmread(paths["seg"])
    assert {uid for _, _, uid in frame_references(seg)} <= set(depth)
