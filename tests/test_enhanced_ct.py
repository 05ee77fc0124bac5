"""Enhanced CT: one multi-frame file per series (made with highdicom's legacy conversion from
single-frame phantom series) reads like the single-frame series, tilt correction included, and
its DICOM-SEG references the frames."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from ichseg.errors import InputError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.dicom_seg import write_dicom_seg
from ichseg.io.enhanced_ct import ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE
from phantoms import head_phantom
from scanner_series import Acquisition, dciodvfy_errors, voxel_centres


def convert(single_frame: Path, folder: Path, sop_class: str = LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE) -> Path:
    """The series as one Legacy Converted Enhanced CT file in ``folder`` (frames in highdicom's
    order, not by position); ``sop_class`` relabels it (Enhanced CT keeps the same groups)."""
    datasets = [pydicom.dcmread(path) for path in sorted(single_frame.glob("*.dcm"))]
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(), instance_number=1)
    converted.SOPClassUID = converted.file_meta.MediaStorageSOPClassUID = sop_class
    folder.mkdir(parents=True)
    converted.save_as(folder / "enhanced.dcm", enforce_file_format=True)
    return folder


@pytest.mark.parametrize("sop_class", [LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE])
def test_an_enhanced_ct_reads_like_its_single_frame_series(sop_class, tmp_path):
    single = write_ct_series(head_phantom(), tmp_path / "single")
    reference = load_dicom_series(single)
    image = load_dicom_series(convert(single, tmp_path / "enhanced", sop_class))
    assert np.array_equal(image.array, reference.array) and image.same_geometry(reference, tol=1e-6)
    info = image.metadata["dicom"]
    assert info["files"] == [str(tmp_path / "enhanced" / "enhanced.dcm")] and len(info["SOPInstanceUIDs"]) == 1
    frames = [s["frame"] for s in info["source_slices"]]
    assert sorted(frames) == list(range(1, 8)) and frames != sorted(frames)  # by position, not frame order
    enhanced = pydicom.dcmread(info["files"][0])
    for record in info["source_slices"]:  # each record is where its frame lies
        item = enhanced.PerFrameFunctionalGroupsSequence[record["frame"] - 1]
        assert np.allclose(record["position"], [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])


def test_a_tilted_enhanced_ct_is_corrected_like_its_single_frame_series(tmp_path):
    single = Acquisition(tilt_deg=-18.0).write(tmp_path / "single")
    reference = load_dicom_series(single)
    image = load_dicom_series(convert(single, tmp_path / "enhanced"))
    assert image.metadata["dicom"]["geometry"] == reference.metadata["dicom"]["geometry"]
    assert image.same_geometry(reference, tol=1e-6) and np.allclose(image.array, reference.array, atol=1e-3)


def test_each_frame_has_its_own_rescale(tmp_path):
    single = write_ct_series(head_phantom(), tmp_path / "single")
    reference = load_dicom_series(single)
    third = sorted(single.glob("*.dcm"))[2]
    ds = pydicom.dcmread(third)
    ds.PixelData = (ds.pixel_array + 200).astype("<i2").tobytes()
    ds.RescaleIntercept = "-1224"
    ds.save_as(third)
    folder = convert(single, tmp_path / "enhanced")
    groups = pydicom.dcmread(folder / "enhanced.dcm").PerFrameFunctionalGroupsSequence
    assert len({item.PixelValueTransformationSequence[0].RescaleIntercept for item in groups}) == 2
    assert np.array_equal(load_dicom_series(folder).array, reference.array)


def test_the_seg_of_an_enhanced_ct_references_its_frames(tmp_path):
    acquisition = Acquisition(tilt_deg=-18.0)
    folder = convert(acquisition.write(tmp_path / "single"), tmp_path / "enhanced")
    image = load_dicom_series(folder)
    path = write_dicom_seg(acquisition.in_bleed(voxel_centres(image)), image, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(path)
    enhanced = pydicom.dcmread(folder / "enhanced.dcm")
    assert seg.NumberOfFrames > 1
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID
        frame = enhanced.PerFrameFunctionalGroupsSequence[int(source.ReferencedFrameNumber) - 1]
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], atol=0.01)
    assert dciodvfy_errors(path) == []


def test_a_frame_without_position_and_missing_frames_are_refused_naming_the_frame(tmp_path):
    folder = convert(write_ct_series(head_phantom(), tmp_path / "single"), tmp_path / "enhanced")
    path = folder / "enhanced.dcm"
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(InputError, match="enhanced.dcm frame 4 has no ImagePositionPatient"):
        load_dicom_series(folder)

    single = write_ct_series(head_phantom(), tmp_path / "gap")
    sorted(single.glob("*.dcm"))[3].unlink()
    with pytest.raises(InputError,
                       match=r"1 missing slice\(s\) between files enhanced.dcm frame \d and enhanced.dcm frame \d"):
        load_dicom_series(convert(single, tmp_path / "gap_enhanced"))


def test_the_results_for_the_pacs_of_an_enhanced_ct_reference_its_frames(tmp_path):
    from ichseg.ensemble.info import EnsembleInfo
    from ichseg.segmentation.result import Segmentation
    from ichseg.serve.results import write_results

    acquisition = Acquisition(tilt_deg=-18.0)
    folder = convert(acquisition.write(tmp_path / "single"), tmp_path / "enhanced")
    image = load_dicom_series(folder)
    mask = image.with_array(acquisition.in_bleed(voxel_centres(image)).astype(np.uint8))
    paths = write_results(Segmentation(image, mask, mask, EnsembleInfo.single_model()), tmp_path / "out")
    for path in paths.values():
        assert dciodvfy_errors(path) == []
    enhanced = pydicom.dcmread(folder / "enhanced.dcm", stop_before_pixels=True)
    shown = pydicom.dcmread(paths["sc"]).SourceImageSequence
    assert shown and all(item.ReferencedSOPInstanceUID == enhanced.SOPInstanceUID for item in shown)
    assert {int(item.ReferencedFrameNumber) for item in shown} <= set(range(1, int(enhanced.NumberOfFrames) + 1))
