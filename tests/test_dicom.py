"""DICOM series in: round trip against the NIfTI route and SimpleITK, selection, bad series."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import RLELossless

from ichseg.errors import InputError
from ichseg.io import load_image, save_image
from ichseg.io.dicom import list_series, load_dicom_series, write_ct_series
from ichseg.io.image import CTImage
from phantoms import head_phantom


@pytest.fixture
def series(tmp_path):
    image = head_phantom()
    folder = write_ct_series(image, tmp_path / "series", patient_name="DOE^JANE",
                             patient_id="PID-4711")
    return image, folder


def files_of(folder):
    return sorted(folder.glob("*.dcm"))


def test_round_trip_equals_nifti_route_and_simpleitk(series, tmp_path):
    image, folder = series
    nifti = load_image(save_image(image, tmp_path / "phantom.nii.gz"))
    dicom = load_image(folder)
    assert np.array_equal(dicom.array, nifti.array)
    assert dicom.same_geometry(nifti, tol=1e-4)
    assert dicom.orientation == nifti.orientation

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    independent = CTImage.from_sitk(reader.Execute())
    assert np.array_equal(dicom.array, independent.array)
    assert dicom.same_geometry(independent, tol=1e-4)


def test_metadata_separates_identifiers_and_follows_slice_order(series):
    image, folder = series
    loaded = load_dicom_series(folder)
    assert loaded.metadata["identifiers"]["PatientName"] == "DOE^JANE"
    assert loaded.metadata["identifiers"]["PatientID"] == "PID-4711"
    assert "DOE^JANE" not in repr(loaded.metadata["dicom"])
    assert loaded.metadata["dicom"]["Modality"] == "CT"
    # slice k of the array is the file written for z index k, by position
    for k, (path, uid) in enumerate(zip(loaded.metadata["dicom"]["files"],
                                        loaded.metadata["dicom"]["SOPInstanceUIDs"], strict=True)):
        ds = pydicom.dcmread(path)
        assert str(ds.SOPInstanceUID) == uid
        assert int(ds.InstanceNumber) == k + 1


def test_slices_are_ordered_by_position_not_file_name(series, tmp_path):
    image, folder = series
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, path in enumerate(reversed(files_of(folder))):
        shutil.copy(path, shuffled / f"IM{i:03d}")  # reversed names, no extension
    loaded = load_dicom_series(shuffled)
    assert np.array_equal(loaded.array, image.array)


def test_rescale_slope_and_intercept_give_hu_per_slice(tmp_path):
    image = head_phantom()
    halves = image.with_array(image.array + 0.5 * (np.arange(image.array.size) % 2).reshape(
        image.shape).astype(np.float32))
    folder = write_ct_series(halves, tmp_path / "s", rescale_slope=0.5, rescale_intercept=-1000.0)
    third = files_of(folder)[2]
    ds = pydicom.dcmread(third)
    assert ds.pixel_array.dtype == np.int16
    assert np.array_equal(ds.pixel_array * 0.5 - 1000.0, halves.array[2])
    ds.PixelData = (ds.pixel_array + 200).astype("<i2").tobytes()  # this slice: other intercept
    ds.RescaleIntercept = "-1100"
    ds.save_as(third)
    assert np.array_equal(load_dicom_series(folder).array, halves.array)


def test_compressed_pixels_without_pydicom_decoder_go_through_gdcm(series, monkeypatch):
    image, folder = series
    for path in files_of(folder):
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)

    def no_decoder(self):
        raise RuntimeError("no pixel data handler available")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    assert np.array_equal(load_dicom_series(folder).array, image.array)


def edit(folder, index, **attributes):
    path = files_of(folder)[index]
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def shift_position(folder, index, offset):
    ds = pydicom.dcmread(files_of(folder)[index])
    edit(folder, index, ImagePositionPatient=[
        f"{float(v) + d:.4f}" for v, d in zip(ds.ImagePositionPatient, offset, strict=True)])


def remove_middle(folder):
    files_of(folder)[3].unlink()


def duplicate(folder):
    ds = pydicom.dcmread(files_of(folder)[2])
    edit(folder, 3, ImagePositionPatient=ds.ImagePositionPatient)


def reoriented(folder):
    edit(folder, 4, ImageOrientationPatient=["1", "0", "0", "0", "0.9", "0.43589"])


def resized(folder):
    ds = pydicom.dcmread(files_of(folder)[1])
    edit(folder, 1, Rows=ds.Rows // 2, PixelData=ds.PixelData[: len(ds.PixelData) // 2])


def magnetic(folder):
    for k in range(len(files_of(folder))):
        edit(folder, k, Modality="MR")


def truncated(folder):
    path = files_of(folder)[4]
    path.write_bytes(path.read_bytes()[:-500])


def garbage(folder):
    files_of(folder)[2].write_bytes(b"\x00" * 64 + b"not a dicom file at all")


def one_slice(folder):
    for path in files_of(folder)[1:]:
        path.unlink()


@pytest.mark.parametrize(("damage", "problem"), [
    (remove_middle, "1 missing slice(s) between files slice_0003.dcm and slice_0005.dcm"),
    (duplicate, "lie at the same position"),
    (reoriented, "inconsistent orientation"),
    (resized, "inconsistent image size"),
    (magnetic, "modality is MR, expected CT"),
    (truncated, "pixel data of file slice_0005.dcm cannot be decoded"),
    (garbage, "slice_0003.dcm: not a valid DICOM file"),
    (one_slice, "only one slice"),
])
def test_bad_series_fail_with_one_line_naming_series_and_problem(series, damage, problem):
    _, folder = series
    uid = str(pydicom.dcmread(files_of(folder)[0]).SeriesInstanceUID)
    damage(folder)
    with pytest.raises(InputError) as caught:
        load_image(folder)
    message = str(caught.value)
    assert problem in message
    assert "\n" not in message
    assert str(folder) in message
    if damage is not garbage:  # an unreadable file cannot name its series
        assert uid in message
    assert caught.value.exit_code == 2


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM files found"):
        load_image(tmp_path)


def test_several_series_the_rules_choose_and_series_overrides(tmp_path):
    image = head_phantom()
    study = tmp_path / "study"
    axial = write_ct_series(image, study / "axial", series_number=2,
                            series_description="Head 5mm")
    sagittal = image.reoriented("PSR")  # slices along x: a sagittal reformat
    write_ct_series(sagittal, study / "sagittal", series_number=3,
                    series_description="Sagittal MPR")
    found = list_series(study)
    assert [(s.number, s.orientation, s.n_files) for s in found] == [
        (2, "axial", 7), (3, "sagittal", sagittal.shape[0])]
    assert np.array_equal(load_dicom_series(study).array, image.array)

    bone = write_ct_series(image, study / "bone", series_number=4,
                           series_description="Head bone")
    chosen = load_dicom_series(study)
    assert chosen.metadata["dicom"]["SeriesDescription"] == "Head 5mm"
    lines = chosen.metadata["series_selection"]
    assert [line.split("'")[1] for line in lines] == ["Head 5mm", "Sagittal MPR", "Head bone"]
    assert "segmented" in lines[0] and "not axial" in lines[1] and "bone" in lines[2]

    uids = {p.name: str(pydicom.dcmread(next(p.glob("*.dcm"))).SeriesInstanceUID)
            for p in (axial, bone)}
    chosen = load_dicom_series(study, series_uid=uids["bone"])
    assert chosen.metadata["dicom"]["SeriesDescription"] == "Head bone"
    with pytest.raises(InputError, match="no series 1.2.3"):
        load_dicom_series(study, series_uid="1.2.3")
    shutil.rmtree(axial)
    with pytest.raises(InputError) as caught:
        load_dicom_series(study)
    message = str(caught.value)
    assert "none of its 2 series fits" in message and "--series" in message
    assert uids["bone"] in message and "Head bone" in message and "\n" not in message


def test_write_refuses_existing_folder_and_out_of_range_values(series, tmp_path):
    image, folder = series
    with pytest.raises(Exception, match="already exists"):
        write_ct_series(image, folder)
    with pytest.raises(ValueError, match="does not fit in int16"):
        write_ct_series(image.with_array(image.array + 40000), tmp_path / "hot")
    assert not (tmp_path / "hot").exists()
