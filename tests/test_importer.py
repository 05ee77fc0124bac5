"""ichseg import: both source layouts accepted, every kind of bad pair rejected with nothing left behind."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ichseg.cli import main
from ichseg.data import importer
from ichseg.data.importer import import_dataset
from ichseg.errors import InputError, OutputExistsError

SHAPE = (4, 5, 6)  # (z, y, x)
SPACING_XYZ = (0.45, 0.5, 5.0)
ORIGIN = (-12.0, 30.5, 7.25)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # not the canonical LPS
LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def write_volume(path: Path, array: np.ndarray, spacing=SPACING_XYZ, origin=ORIGIN,
                 direction=RAS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def ct_array(seed: int, dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, SHAPE).astype(dtype)


def label_array(seed: int, dtype=np.uint8) -> np.ndarray:
    return (np.random.default_rng(seed + 100).random(SHAPE) < 0.3).astype(dtype)


@pytest.fixture
def instance_source(tmp_path: Path) -> Path:
    """Three INSTANCE-layout cases in RAS orientation; one label stored as float32, one as .nii."""
    source = tmp_path / "instance"
    write_volume(source / "data" / "001.nii.gz", ct_array(1))
    write_volume(source / "label" / "001.nii.gz", label_array(1))
    write_volume(source / "data" / "002.nii.gz", ct_array(2))
    write_volume(source / "label" / "002.nii.gz", label_array(2, np.float32))
    write_volume(source / "data" / "003.nii", ct_array(3))
    write_volume(source / "label" / "003.nii", label_array(3))
    return source


def write_nnunet_source(source: Path, ending: str = ".nii.gz") -> Path:
    """An nnU-Net raw data set of two cases whose CT holds fractional HU."""
    for name in ("a", "b"):
        ct = ct_array(ord(name), np.float32) + 0.25
        write_volume(source / "imagesTr" / f"{name}_0000{ending}", ct, direction=LPS)
        write_volume(source / "labelsTr" / f"{name}{ending}", label_array(ord(name)), direction=LPS)
    (source / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "bleed": 1},
        "numTraining": 2, "file_ending": ending}))
    return source


@pytest.fixture
def nnunet_source(tmp_path: Path) -> Path:
    return write_nnunet_source(tmp_path / "Dataset017_Other")


def assert_same_voxels_in_space(source_file: Path, imported_file: Path) -> None:
    """Every source voxel holds the same value at the same physical point after import."""
    source, imported = sitk.ReadImage(str(source_file)), sitk.ReadImage(str(imported_file))
    source_values, imported_values = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(imported)
    for index in np.ndindex(source.GetSize()):
        point = source.TransformIndexToPhysicalPoint(index)
        target = imported.TransformPhysicalPointToIndex(point)
        assert imported_values[target[::-1]] == source_values[index[::-1]]


def all_entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_imports_instance_layout_in_canonical_orientation(instance_source, tmp_path):
    workspace = tmp_path / "ws"
    imported = import_dataset(instance_source, "ich", workspace, progress=False)

    folder = workspace / "nnUNet_raw" / "Dataset001_ich"
    assert (imported.folder, imported.folder_name) == (folder, "Dataset001_ich")
    assert imported.cases == ["001", "002", "003"] and imported.n_cases == 3
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "dataset.json", "imagesTr/001_0000.nii.gz", "imagesTr/002_0000.nii.gz",
        "imagesTr/003_0000.nii.gz", "labelsTr/001.nii.gz", "labelsTr/002.nii.gz",
        "labelsTr/003.nii.gz"]

    description = json.loads((folder / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "CT"}
    assert description["labels"] == {"background": 0, "hemorrhage": 1}
    assert description["numTraining"] == 3
    assert description["file_ending"] == ".nii.gz"
    assert description["name"] == "ich"
    assert set(description["ichseg"]) == {"source", "layout", "orientation", "imported_at", "version"}
    assert description["ichseg"]["source"] == str(instance_source)
    assert datetime.fromisoformat(description["ichseg"]["imported_at"]).tzinfo is not None

    for case, ending in (("001", ".nii.gz"), ("002", ".nii.gz"), ("003", ".nii")):
        image = folder / "imagesTr" / f"{case}_0000.nii.gz"
        label = folder / "labelsTr" / f"{case}.nii.gz"
        # nibabel reads axis codes independently of SimpleITK: LPS in ITK terms.
        assert nib.aff2axcodes(nib.load(image).affine) == ("L", "P", "S")
        assert nib.aff2axcodes(nib.load(label).affine) == ("L", "P", "S")
        assert nib.load(image).get_data_dtype() == np.int16
        assert nib.load(label).get_data_dtype() == np.uint8
        assert np.allclose(nib.load(image).affine, nib.load(label).affine)
        assert_same_voxels_in_space(instance_source / "data" / f"{case}{ending}", image)
        assert_same_voxels_in_space(instance_source / "label" / f"{case}{ending}", label)


def test_imports_nnunet_raw_layout(nnunet_source, tmp_path):
    workspace = tmp_path / "ws"
    assert main(["import", str(nnunet_source), "--name", "other", "--workspace", str(workspace)]) == 0

    folder = workspace / "nnUNet_raw" / "Dataset001_other"
    description = json.loads((folder / "dataset.json").read_text())
    assert description["labels"] == {"background": 0, "hemorrhage": 1}
    assert description["numTraining"] == 2
    for name in ("a", "b"):
        image = folder / "imagesTr" / f"{name}_0000.nii.gz"
        assert nib.load(image).get_data_dtype() == np.float32  # fractional HU are kept
        assert_same_voxels_in_space(nnunet_source / "imagesTr" / f"{name}_0000.nii.gz", image)
        assert_same_voxels_in_space(nnunet_source / "labelsTr" / f"{name}.nii.gz",
                                    folder / "labelsTr" / f"{name}.nii.gz")


def test_cli_prints_one_line_summary(instance_source, tmp_path, capsys):
    workspace = tmp_path / "ws"
    assert main(["import", str(instance_source), "--name", "ich", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert out == f"imported 3 cases as data set 'ich' into {workspace / 'nnUNet_raw' / 'Dataset001_ich'}\n"


def test_overwrite_replaces_the_data_set(instance_source, tmp_path):
    workspace = tmp_path / "ws"
    import_dataset(instance_source, "ich", workspace, progress=False)
    (instance_source / "data" / "003.nii").unlink()
    (instance_source / "label" / "003.nii").unlink()

    with pytest.raises(OutputExistsError, match="already exists"):
        import_dataset(instance_source, "ich", workspace, progress=False)
    assert (workspace / "nnUNet_raw" / "Dataset001_ich" / "labelsTr" / "003.nii.gz").exists()

    imported = import_dataset(instance_source, "ich", workspace, overwrite=True, progress=False)
    assert imported.cases == ["001", "002"]
    assert [p.name for p in (workspace / "nnUNet_raw").iterdir()] == ["Dataset001_ich"]
    assert not (imported.folder / "labelsTr" / "003.nii.gz").exists()


def test_existing_data_set_is_refused_by_the_cli_before_reading(instance_source, tmp_path, capsys):
    workspace = tmp_path / "ws"
    import_dataset(instance_source, "ich", workspace, progress=False)
    (instance_source / "data" / "001.nii.gz").write_text("broken")  # never read: refused first
    before = all_entries(workspace)

    assert main(["import", str(instance_source), "--name", "ich", "--workspace", str(workspace)]) == 2
    folder = workspace / "nnUNet_raw" / "Dataset001_ich"
    assert capsys.readouterr().err == (
        f"ichseg: error: {folder}: already exists (use --overwrite to replace it)\n")
    assert all_entries(workspace) == before


# --- rejections: each breaks one pair of a valid INSTANCE source -----------------------------

def missing_label(source: Path) -> None:
    (source / "label" / "002.nii.gz").unlink()


def extra_label(source: Path) -> None:
    write_volume(source / "label" / "009.nii.gz", label_array(9))


def label_of_other_shape(source: Path) -> None:
    write_volume(source / "label" / "002.nii.gz", np.zeros((4, 5, 7), np.uint8))


def label_of_other_spacing(source: Path) -> None:
    write_volume(source / "label" / "002.nii.gz", label_array(2), spacing=(0.45, 0.5, 2.5))


def label_of_other_orientation(source: Path) -> None:
    write_volume(source / "label" / "002.nii.gz", label_array(2), direction=LPS)


def label_of_other_origin(source: Path) -> None:
    write_volume(source / "label" / "002.nii.gz", label_array(2), origin=(-12.0, 30.5, 9.75))


def label_values_0_and_2(source: Path) -> None:
    write_volume(source / "label" / "002.nii.gz", label_array(2) * 2)


def image_2d(source: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.int16)), str(source / "data" / "002.nii.gz"))


def image_4d(source: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 2), np.int16), np.eye(4)), source / "data" / "002.nii.gz")


def truncated_in_header(source: Path) -> None:
    path = source / "data" / "002.nii.gz"
    path.write_bytes(path.read_bytes()[:200])


def truncated_in_data(source: Path) -> None:
    shape = (8, 64, 64)  # large enough for the header to survive the cut
    ct = np.random.default_rng(2).integers(-1000, 1500, shape).astype(np.int16)
    path = write_volume(source / "data" / "002.nii.gz", ct)
    write_volume(source / "label" / "002.nii.gz", np.zeros(shape, np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def text_named_nifti(source: Path) -> None:
    (source / "data" / "002.nii.gz").write_text("not an image\n")


def header_spacing(value: float):
    def write(source: Path) -> None:
        header = nib.Nifti1Header()
        header.set_data_dtype(np.int16)
        image = nib.Nifti1Image(ct_array(2).T, np.diag([0.45, 0.5, 5.0, 1.0]), header=header)
        image.header["pixdim"][3] = value  # nibabel keeps a header value it is handed
        image.to_filename(source / "data" / "002.nii.gz")
    return write


#: Each way of breaking case 002 and what the one problem line says (read failures are worded
#: by ichseg.io.image, so only the file is asserted for those).
REJECTIONS = {
    "missing label": (missing_label, "data/002.nii.gz: no label for case '002'"),
    "extra label": (extra_label, "label/009.nii.gz: no image for case '009'"),
    "other shape": (label_of_other_shape, "label/002.nii.gz: shape (4, 5, 7) (z, y, x) differs "
                                          "from the image's (4, 5, 6)"),
    "other spacing": (label_of_other_spacing, "label/002.nii.gz: spacing (2.5, 0.5, 0.45) mm"),
    "other orientation": (label_of_other_orientation, "label/002.nii.gz: orientation LPS"),
    "other origin": (label_of_other_origin, "label/002.nii.gz: origin (-12, 30.5, 9.75) mm"),
    "label values 0 and 2": (label_values_0_and_2, "label/002.nii.gz: label values other than 0 "
                                                   "and 1 (2 in"),
    "2D image": (image_2d, "data/002.nii.gz: expected a 3D image, found 2 dimensions"),
    "4D image": (image_4d, "data/002.nii.gz: expected a 3D image, found 4 dimensions"),
    "truncated in header": (truncated_in_header, "data/002.nii.gz: "),
    "truncated in data": (truncated_in_data, "data/002.nii.gz: "),
    "not an image": (text_named_nifti, "data/002.nii.gz: "),
    "zero spacing": (header_spacing(0.0), "data/002.nii.gz: invalid voxel spacing"),
    "NaN spacing": (header_spacing(float("nan")), "data/002.nii.gz: invalid voxel spacing"),
}
#: Bad files that ichseg.io.image.load_image does not catch yet.
LOAD_IMAGE_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=LOAD_IMAGE_GAPS[name]))
    if name in LOAD_IMAGE_GAPS else name for name in REJECTIONS])
def test_rejects_bad_pair_through_api_and_cli(name, instance_source, tmp_path, capsys):
    break_source, expected = REJECTIONS[name]
    break_source(instance_source)
    workspace = tmp_path / "ws"

    with pytest.raises(InputError) as raised:
        import_dataset(instance_source, "ich", workspace, progress=False)
    message = str(raised.value)
    lines = message.splitlines()
    assert lines[0] == "1 file failed the import checks; nothing was imported:"
    assert len(lines) == 2
    assert lines[1].startswith(f"  {instance_source}/") and expected in lines[1]
    assert all_entries(workspace / "nnUNet_raw") == []
    capsys.readouterr()

    assert main(["import", str(instance_source), "--name", "ich", "--workspace", str(workspace)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"ichseg: error: {message}\n"
    assert captured.out == ""
    assert all_entries(workspace / "nnUNet_raw") == []


def test_reports_every_problem_at_once(instance_source, tmp_path):
    missing_label(instance_source)
    extra_label(instance_source)
    write_volume(instance_source / "label" / "003.nii", label_array(3) * 3, origin=(0.0, 0.0, 0.0))

    with pytest.raises(InputError) as raised:
        import_dataset(instance_source, "ich", tmp_path / "ws", progress=False)
    lines = str(raised.value).splitlines()
    assert lines[0] == "3 files failed the import checks; nothing was imported:"
    assert [line.split(": ", 1)[0].removeprefix(f"  {instance_source}/") for line in lines[1:]] == [
        "data/002.nii.gz", "label/003.nii", "label/003.nii", "label/009.nii.gz"]
    assert "label values other than 0 and 1 (3 in" in lines[2]
    assert "origin (0, 0, 0) mm differs from the image's (-12, 30.5, 7.25)" in lines[3]
    assert all_entries(tmp_path / "ws" / "nnUNet_raw") == []


def test_failure_while_writing_leaves_nothing(instance_source, tmp_path, monkeypatch):
    written = []

    def failing_save_mask(reference, mask, path, overwrite=False):
        written.append(path)
        raise OSError("disk full")

    monkeypatch.setattr(importer, "save_mask", failing_save_mask)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(instance_source, "ich", tmp_path / "ws", progress=False)
    assert written  # the images of some cases had been written by then
    assert all_entries(tmp_path / "ws" / "nnUNet_raw") == []


@pytest.mark.parametrize("layout", ["empty folder", "empty INSTANCE folders", "missing folder"])
def test_rejects_source_without_cases(layout, tmp_path, capsys):
    source = tmp_path / "source"
    if layout != "missing folder":
        source.mkdir()
    if layout == "empty INSTANCE folders":
        (source / "data").mkdir()
        (source / "label").mkdir()
    expected = {
        "empty folder": f"{source}: not a data set folder: expected data/ and label/ (INSTANCE "
                        f"layout), dataset.json, imagesTr/ and labelsTr/ (nnU-Net raw layout) or "
                        f"images/ and 'ground truths'/ (BHSD layout)",
        "empty INSTANCE folders": f"{source}: no cases found (INSTANCE layout)",
        "missing folder": f"{source}: no such file or folder",
    }[layout]
    workspace = tmp_path / "ws"
    assert main(["import", str(source), "--name", "ich", "--workspace", str(workspace)]) == 2
    assert capsys.readouterr().err == f"ichseg: error: {expected}\n"
    assert all_entries(workspace) == []


def test_rejects_non_finite_ct_values(tmp_path):
    # SimpleITK's NIfTI reader turns NaN into 0; MetaImage keeps it, so the importer must look.
    source = write_nnunet_source(tmp_path / "source", ending=".mha")
    ct = ct_array(7, np.float32)
    ct[1, 2, 3] = np.nan
    write_volume(source / "imagesTr" / "b_0000.mha", ct, direction=LPS)

    with pytest.raises(InputError) as raised:
        import_dataset(source, "other", tmp_path / "ws", progress=False)
    assert str(raised.value).splitlines()[1:] == [
        f"  {source / 'imagesTr' / 'b_0000.mha'}: 1 of 120 voxels are NaN or infinite; expected a CT "
        f"in Hounsfield units (air -1000, brain 20 to 45, blood 50 to 90, bone above 300) (use "
        f"--accept-intensities to accept it)"]
    assert all_entries(tmp_path / "ws" / "nnUNet_raw") == []


def test_imports_nnunet_raw_in_another_format(tmp_path):
    source = write_nnunet_source(tmp_path / "source", ending=".mha")
    imported = import_dataset(source, "other", tmp_path / "ws", progress=False)
    assert sorted(p.name for p in (imported.folder / "imagesTr").iterdir()) == [
        "a_0000.nii.gz", "b_0000.nii.gz"]
    assert_same_voxels_in_space(source / "labelsTr" / "b.mha", imported.folder / "labelsTr" / "b.nii.gz")


def test_rejects_nnunet_data_set_of_unknown_classes_or_several_channels(nnunet_source, tmp_path):
    description = json.loads((nnunet_source / "dataset.json").read_text())
    description["labels"] = {"background": 0, "edema": 1, "bleed": 2}
    (nnunet_source / "dataset.json").write_text(json.dumps(description))
    write_volume(nnunet_source / "imagesTr" / "a_0001.nii.gz", ct_array(5), direction=LPS)
    write_volume(nnunet_source / "labelsTr" / "b.nii.gz", label_array(6) * 2, direction=LPS)

    with pytest.raises(InputError) as raised:
        import_dataset(nnunet_source, "other", tmp_path / "ws", progress=False)
    lines = str(raised.value).splitlines()
    assert lines[0] == "3 files failed the import checks; nothing was imported:"
    assert lines[1] == (f"  {nnunet_source / 'dataset.json'}: labels: unknown class 'edema'; ichseg "
                        f"knows EDH, IPH, IVH, SAH, SDH (or their full names), hemorrhage (one class) "
                        f"and background (or give each value's class with --labels)")
    assert lines[2] == (f"  {nnunet_source / 'imagesTr' / 'a_0001.nii.gz'}: channel 0001; ichseg "
                        f"imports single-channel CT (CASE_0000.nii.gz) only")
    assert lines[3].startswith(f"  {nnunet_source / 'labelsTr' / 'b.nii.gz'}: label values other "
                               f"than 0 and 1 (2 in ")
    assert all_entries(tmp_path / "ws" / "nnUNet_raw") == []


# --- multi-class labels: the five subtypes, from each layout, and other conventions mapped ------

SUBTYPE_LABELS = {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}


def typed_label_array(seed: int, n_values: int = 6) -> np.ndarray:
    """Every value 0..n_values-1 present, the rest random."""
    values = np.random.default_rng(seed + 200).integers(0, n_values, SHAPE).astype(np.uint8)
    values.flat[:n_values] = np.arange(n_values)
    return values


def write_typed_source(source: Path, image_folder: str, label_folder: str, n_values: int = 6) -> Path:
    for case in ("001", "002"):
        write_volume(source / image_folder / f"{case}.nii.gz", ct_array(int(case)))
        write_volume(source / label_folder / f"{case}.nii.gz", typed_label_array(int(case), n_values))
    return source


def assert_labels_mapped(source_file: Path, imported_file: Path, mapping: dict[int, int]) -> None:
    """Each source voxel's value, mapped, is the imported value at the same physical point."""
    source, imported = sitk.ReadImage(str(source_file)), sitk.ReadImage(str(imported_file))
    source_values, imported_values = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(imported)
    for index in np.ndindex(source.GetSize()):
        target = imported.TransformPhysicalPointToIndex(source.TransformIndexToPhysicalPoint(index))
        assert imported_values[target[::-1]] == mapping[int(source_values[index[::-1]])]


def test_instance_layout_with_labels_json_imports_the_subtypes(tmp_path, capsys):
    source = write_typed_source(tmp_path / "typed", "data", "label")
    (source / "labels.json").write_text(json.dumps(SUBTYPE_LABELS))
    workspace = tmp_path / "ws"
    assert main(["import", str(source), "--name", "typed", "--workspace", str(workspace)]) == 0
    folder = workspace / "nnUNet_raw" / "Dataset001_typed"
    assert capsys.readouterr().out == (f"imported 2 cases as data set 'typed' into {folder} "
                                       f"(classes EDH, IPH, IVH, SAH, SDH)\n")
    description = json.loads((folder / "dataset.json").read_text())
    assert description["labels"] == SUBTYPE_LABELS
    assert description["ichseg"]["source_labels"] == "EDH=1,IPH=2,IVH=3,SAH=4,SDH=5"
    for case in ("001", "002"):
        assert nib.load(folder / "labelsTr" / f"{case}.nii.gz").get_data_dtype() == np.uint8
        assert_same_voxels_in_space(source / "label" / f"{case}.nii.gz", folder / "labelsTr" / f"{case}.nii.gz")


@pytest.mark.parametrize("label_folder", ["ground truths", "ground_truths"])
def test_bhsd_layout_imports_its_five_classes(label_folder, tmp_path):
    source = write_typed_source(tmp_path / "label_192", "images", label_folder)
    imported = import_dataset(source, "bhsd", tmp_path / "ws", progress=False)
    description = json.loads((imported.folder / "dataset.json").read_text())
    assert imported.labels.names[1:] == ("EDH", "IPH", "IVH", "SAH", "SDH")
    assert description["labels"] == SUBTYPE_LABELS and description["ichseg"]["layout"] == "BHSD"
    for case in ("001", "002"):
        assert_same_voxels_in_space(source / label_folder / f"{case}.nii.gz",
                                    imported.folder / "labelsTr" / f"{case}.nii.gz")


def test_another_convention_is_mapped_with_labels(tmp_path):
    # a source numbering 1 IPH, 2 SDH, 3 IVH (not BHSD's order)
    source = write_typed_source(tmp_path / "label_192", "images", "ground truths", n_values=4)
    workspace = tmp_path / "ws"
    assert main(["import", str(source), "--name", "other", "--workspace", str(workspace),
                 "--labels", "IPH=1,SDH=2,IVH=3"]) == 0
    folder = workspace / "nnUNet_raw" / "Dataset001_other"
    description = json.loads((folder / "dataset.json").read_text())
    assert description["labels"] == SUBTYPE_LABELS
    assert description["ichseg"]["source_labels"] == "IPH=1,IVH=3,SDH=2"
    for case in ("001", "002"):
        assert_labels_mapped(source / "ground truths" / f"{case}.nii.gz", folder / "labelsTr" / f"{case}.nii.gz",
                             {0: 0, 1: 2, 2: 5, 3: 3})


def test_a_one_class_source_of_other_values_and_subtypes_as_one_class(tmp_path):
    source = tmp_path / "marked255"
    for case in ("001", "002"):
        write_volume(source / "data" / f"{case}.nii.gz", ct_array(int(case)))
        write_volume(source / "label" / f"{case}.nii.gz", label_array(int(case)) * 255)
    imported = import_dataset(source, "ich", tmp_path / "ws", progress=False, labels="hemorrhage=255")
    description = json.loads((imported.folder / "dataset.json").read_text())
    assert description["labels"] == {"background": 0, "hemorrhage": 1}
    assert description["ichseg"]["source_labels"] == "hemorrhage=255"
    assert_labels_mapped(source / "label" / "001.nii.gz", imported.folder / "labelsTr" / "001.nii.gz",
                         {0: 0, 255: 1})

    typed = write_typed_source(tmp_path / "typed", "images", "ground truths")
    merged = import_dataset(typed, "any", tmp_path / "ws", progress=False, labels="hemorrhage=1+2+3+4+5")
    assert json.loads((merged.folder / "dataset.json").read_text())["labels"] == {"background": 0, "hemorrhage": 1}
    assert_labels_mapped(typed / "ground truths" / "002.nii.gz", merged.folder / "labelsTr" / "002.nii.gz",
                         {0: 0, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1})


def test_nnunet_raw_multiclass_in_v2_and_bhsds_v1_dataset_json(nnunet_source, tmp_path):
    for name in ("a", "b"):
        write_volume(nnunet_source / "labelsTr" / f"{name}.nii.gz", typed_label_array(ord(name), 3), direction=LPS)
    description = json.loads((nnunet_source / "dataset.json").read_text())
    (nnunet_source / "dataset.json").write_text(json.dumps(
        dict(description, labels={"background": 0, "intraparenchymal": 1, "subdural": 2})))
    imported = import_dataset(nnunet_source, "v2", tmp_path / "ws", progress=False)
    assert json.loads((imported.folder / "dataset.json").read_text())["labels"] == SUBTYPE_LABELS
    assert_labels_mapped(nnunet_source / "labelsTr" / "a.nii.gz", imported.folder / "labelsTr" / "a.nii.gz",
                         {0: 0, 1: 2, 2: 5})

    # nnU-Net v1's description, as BHSD's repository has it: value -> name, "modality"
    del description["channel_names"]
    (nnunet_source / "dataset.json").write_text(json.dumps(dict(
        description, modality={"0": "CT"}, labels={"0": "background", "1": "epidural", "2": "intraparenchymal"})))
    imported = import_dataset(nnunet_source, "v1", tmp_path / "ws", progress=False)
    assert_labels_mapped(nnunet_source / "labelsTr" / "b.nii.gz", imported.folder / "labelsTr" / "b.nii.gz",
                         {0: 0, 1: 1, 2: 2})


def test_values_outside_the_declared_classes_are_one_line_naming_file_and_values(tmp_path, capsys):
    source = write_typed_source(tmp_path / "typed", "data", "label")
    (source / "labels.json").write_text(json.dumps({"background": 0, "IPH": 1, "SDH": 2}))
    workspace = tmp_path / "ws"
    assert main(["import", str(source), "--name", "typed", "--workspace", str(workspace)]) == 2
    lines = capsys.readouterr().err.splitlines()
    label_file = source / "label" / "001.nii.gz"
    outside = int(np.isin(typed_label_array(1), [3, 4, 5]).sum())
    assert lines[0] == "ichseg: error: 2 files failed the import checks; nothing was imported:"
    assert lines[1] == f"  {label_file}: label values other than 0, 1 and 2 (3, 4, 5 in {outside} voxels)"
    assert all_entries(workspace / "nnUNet_raw") == []


@pytest.mark.parametrize("labels_json, message", [
    ("{", "cannot read labels"),
    ('["IPH"]', "expected nnU-Net's labels"),
    ('{"background": 0, "edema": 1, "IPH": 2}', "unknown class 'edema'"),
])
def test_an_unusable_labels_json_is_refused_before_reading(labels_json, message, instance_source, tmp_path, capsys):
    (instance_source / "labels.json").write_text(labels_json)
    assert main(["import", str(instance_source), "--name", "ich", "--workspace", str(tmp_path / "ws")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"ichseg: error: {instance_source / 'labels.json'}") and message in error
    assert len(error.splitlines()) == 1


def test_unusable_labels_option_is_a_one_line_error(instance_source, tmp_path, capsys):
    assert main(["import", str(instance_source), "--name", "ich", "--workspace", str(tmp_path / "ws"),
                 "--labels", "IPH=1,bleed=2"]) == 2
    assert capsys.readouterr().err == (
        "ichseg: error: --labels 'IPH=1,bleed=2': unknown class 'bleed'; ichseg knows EDH, IPH, IVH, SAH, "
        "SDH (or their full names), hemorrhage (one class) and background\n")
    assert all_entries(tmp_path / "ws") == []
