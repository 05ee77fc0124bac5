"""Whole studies: the series rules choose what to segment, and say why of every other series.

A study is built as a scanner sends one: a 5 mm and a 1 mm soft-tissue reconstruction, a 1 mm
bone-kernel reconstruction, a localizer, a dose report (a structured report) and a dose sheet
(a secondary capture), all in one StudyInstanceUID. The README's table of what is picked from such
a study is the expectation here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    XRayRadiationDoseSRStorage,
    generate_uid,
)

from ichseg.cli import main
from ichseg.errors import InputError
from ichseg.io.dicom import SeriesInfo, list_series, load_dicom_series, write_ct_series
from ichseg.io.image import CTImage, load_image
from ichseg.io.inputs import CaseInput, ReadOptions, scan_inputs, series_case_names
from ichseg.io.series_selection import (
    SeriesRules,
    SeriesRulesError,
    SeriesSelection,
    choose_series,
    default_rules,
)
from phantoms import head_phantom

#: Coronal slices (row along x, column down z): how a localizer's projection lies.
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)


def ct_series(image: CTImage, folder: Path, study_uid: str, number: int, description: str,
              kernel: str, thickness: float, image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")) -> str:
    """Write ``image`` as one series of the study; its SeriesInstanceUID."""
    write_ct_series(image, folder, series_number=number, series_description=description, attributes={
        "StudyInstanceUID": study_uid, "StudyID": "1", "ConvolutionKernel": kernel, "SliceThickness": f"{thickness:g}",
        "Manufacturer": "SIEMENS", "ImageType": list(image_type)})
    return str(pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID)


def non_image(path: Path, study_uid: str, sop_class: str, modality: str, number: int, description: str) -> str:
    """A one-file series that holds no CT slices: a dose report (SR) or a dose sheet (SC)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.update({"Modality": modality, "StudyInstanceUID": study_uid, "SeriesInstanceUID": generate_uid(),
               "SeriesNumber": number, "SeriesDescription": description, "PatientID": "ICHSEG-PHANTOM",
               "PatientName": "PHANTOM^ICHSEG", "StudyID": "1", "StudyDate": "20250101", "StudyTime": "120000",
               "InstanceNumber": 1, "ContentDate": "20250101", "ContentTime": "120000"})
    if sop_class == XRayRadiationDoseSRStorage:
        concept = Dataset()
        concept.update({"CodeValue": "113701", "CodingSchemeDesignator": "DCM",
                        "CodeMeaning": "X-Ray Radiation Dose Report"})
        ds.update({"CompletionFlag": "COMPLETE", "VerificationFlag": "UNVERIFIED", "ValueType": "CONTAINER",
                   "ConceptNameCodeSequence": [concept]})
    if sop_class == SecondaryCaptureImageStorage:
        ds.update({"ImageType": ["DERIVED", "SECONDARY", "OTHER"], "Rows": 8, "Columns": 8,
                   "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "BitsAllocated": 8,
                   "BitsStored": 8, "HighBit": 7, "PixelRepresentation": 0, "PixelData": bytes(64)})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SeriesInstanceUID)


def thin(image: CTImage, thickness: float) -> CTImage:
    """The same head cut in thinner slices: each slice repeated, the spacing divided."""
    factor = round(image.spacing[0] / thickness)
    return CTImage(np.repeat(image.array, factor, axis=0), (thickness, *image.spacing[1:]), image.origin,
                   image.direction)


def write_study(root: Path, image: CTImage | None = None) -> dict[str, str]:
    """The README's typical study, one sub-folder per series; SeriesInstanceUIDs by role."""
    image = image if image is not None else head_phantom()
    study = generate_uid()
    uids = {
        "soft 5 mm": ct_series(image, root / "s2", study, 2, "Head 5.0 H30s", "H30s", 5.0),
        "soft 1 mm": ct_series(thin(image, 1.0), root / "s3", study, 3, "Head 1.0 H30s", "H30s", 1.0),
        "bone 1 mm": ct_series(thin(image, 1.0), root / "s4", study, 4, "Head 1.0 H70h", "H70h", 1.0),
        "localizer": ct_series(head_phantom(shape=(1, 40, 48), direction=CORONAL), root / "s1", study, 1,
                               "Topogram 0.6 T20s", "T20s", 0.6, ("ORIGINAL", "PRIMARY", "LOCALIZER")),
        "dose report": non_image(root / "sr" / "dose.dcm", study, XRayRadiationDoseSRStorage, "SR", 501,
                                 "Dose Report"),
        "dose sheet": non_image(root / "sc" / "protocol.dcm", study, SecondaryCaptureImageStorage, "CT", 502,
                                "Patient Protocol"),
    }
    return uids


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("studies") / "study"
    return root, write_study(root)


def role_of(uids: dict[str, str], uid: str) -> str:
    return next(role for role, known in uids.items() if known == uid)


@pytest.mark.parametrize(("target", "picked"), [
    (5.0, "soft 5 mm"),    # the model's thickness exactly
    (10.0, "soft 5 mm"),   # the closest
    (1.0, "soft 1 mm"),    # the bone series is as thin, but not soft tissue
    (3.0, "soft 1 mm"),    # 2 mm from either: the one with more slices
    (None, "soft 1 mm"),   # thickness unknown: the most slices
])
def test_the_rules_pick_the_soft_tissue_series_the_readme_names(study, target, picked):
    root, uids = study
    choice = choose_series(list_series(root), default_rules(), target)
    assert [role_of(uids, uid) for uid in choice.chosen] == [picked]
    chosen = [verdict for verdict in choice.verdicts if verdict.chosen]
    assert len(chosen) == 1 and chosen[0].series.uid == uids[picked] and chosen[0].eligible


def test_every_other_series_has_its_reason(study):
    root, uids = study
    choice = choose_series(list_series(root), default_rules(), 5.0)
    reasons = {role_of(uids, v.series.uid): v.reason for v in choice.verdicts}
    assert reasons["soft 5 mm"] == "it fits the rules and its slice thickness (5 mm) is the closest to the model's 5 mm"
    assert reasons["soft 1 mm"] == ("it fits the rules, but its slice thickness (1 mm) is further from the model's "
                                    "5 mm than that of the chosen series (5 mm)")
    assert reasons["bone 1 mm"].startswith("a bone or lung reconstruction (kernel H70h")
    assert reasons["localizer"] == "a localizer (scout / topogram) for planning the scan, not a volume"
    assert reasons["dose report"] == ("not CT slices but a 'X-Ray Radiation Dose SR Storage' object "
                                      "(e.g. a dose report or a screen capture)")
    assert reasons["dose sheet"].startswith("not CT slices but a 'Secondary Capture Image Storage'")
    lines = choice.lines()
    assert len(lines) == 6 and all("\n" not in line for line in lines)
    assert sum(" segmented, " in line for line in lines) == 1 and sum(" skipped, " in line for line in lines) == 5
    assert all(uid in "".join(lines) for uid in uids.values())  # each line names its series for --series


def test_a_study_folder_is_one_case_whose_series_the_rules_choose_on_reading(study):
    root, uids = study
    scan = scan_inputs(root)
    assert [(case.path, case.series_uid, case.case_name) for case in scan.cases] == [(root, None, "study")]
    image, notes = scan.cases[0].load(ReadOptions(SeriesSelection(target_thickness_mm=5.0)))
    assert image.metadata["dicom"]["SeriesInstanceUID"] == uids["soft 5 mm"]
    assert image.name == "study" and image.shape[0] == 7
    assert len(notes) == 6 and all(note.startswith("study: series #") for note in notes)


def test_series_overrides_the_rules(study):
    root, uids = study
    for case in (CaseInput(root, uids["bone 1 mm"]), *scan_inputs(root, series=uids["bone 1 mm"]).cases):
        image, notes = case.load(ReadOptions(SeriesSelection(target_thickness_mm=5.0)))
        assert image.metadata["dicom"]["SeriesInstanceUID"] == uids["bone 1 mm"] and notes == []
    assert load_dicom_series(root, uids["bone 1 mm"]).metadata["dicom"]["ConvolutionKernel"] == "H70h"


def test_all_series_gives_one_named_case_per_eligible_series(study):
    root, uids = study
    scan = scan_inputs(root, all_series=True)
    assert [(case.series_uid, case.case_name) for case in scan.cases] == [
        (uids["soft 5 mm"], "study_s2"), (uids["soft 1 mm"], "study_s3")] and not scan.problems
    assert len(scan.cases[0].notes) == 6 and scan.cases[1].notes == ()  # the study's lines, once
    image, _ = scan.cases[1].load()
    assert image.name == "study_s3" and image.metadata["dicom"]["SeriesInstanceUID"] == uids["soft 1 mm"]


def test_all_series_cases_are_written_under_their_names_and_a_resumed_batch_skips_them(study, tmp_path):
    from ichseg.batch.manifest import open_run
    from ichseg.batch.runner import BatchModels, predict_folder, segment_batch
    from ichseg.ensemble.spec import EnsembleSpec
    from ichseg.io.inputs import ReadOptions
    from ichseg.report.options import OutputOptions
    from ichseg.segmentation.segmenter import Segmenter
    from test_segmenter import FakeModels

    root, uids = study
    segmenter = Segmenter(FakeModels((50.0,)), EnsembleSpec("mean"))
    options = OutputOptions(preview=False, html=False)
    result = predict_folder(segmenter, scan_inputs(root, all_series=True), tmp_path / "out", options, progress=False)
    assert [case.name for case in result.cases] == ["study_s2", "study_s3"] and not result.failures
    assert sum("study: series #" in line for line in result.warnings) == 6
    for name, role in (("study_s2", "soft 5 mm"), ("study_s3", "soft 1 mm")):
        assert load_image(tmp_path / "out" / f"{name}.nii.gz").same_geometry(load_dicom_series(root, uids[role]), 1e-4)
    manifest = json.loads((tmp_path / "out" / "ichseg_run.json").read_text())
    run = open_run(tmp_path / "out", manifest, resume=True)
    again = segment_batch(BatchModels(lambda: segmenter, segmenter.models.prepare), scan_inputs(root, all_series=True),
                          run, options, ReadOptions(), progress=False)
    assert not again.cases and sorted(case.name for case in again.skipped) == ["study_s2", "study_s3"]


def test_a_folder_of_studies_gives_a_case_per_study_and_of_series_folders_of_one_study_one_case(tmp_path):
    batch = tmp_path / "batch"
    for name in ("anna", "ben"):
        study = generate_uid()
        ct_series(head_phantom(), batch / name / "head", study, 2, "Head 5.0 H30s", "H30s", 5.0)
        ct_series(thin(head_phantom(), 1.0), batch / name / "bone", study, 4, "Head 1.0 H70h", "H70h", 1.0)
    assert [case.path.name for case in scan_inputs(batch).cases] == ["anna", "ben"]
    assert [case.path.name for case in scan_inputs(batch / "anna").cases] == ["anna"]
    image, notes = scan_inputs(batch / "ben").cases[0].load()
    assert image.metadata["dicom"]["SeriesDescription"] == "Head 5.0 H30s" and len(notes) == 2


def test_a_dicomdir_study_reads(study, tmp_path):
    root, uids = study
    fileset = FileSet()
    for path in sorted(root.rglob("*.dcm")):
        fileset.add(pydicom.dcmread(path))
    medium = tmp_path / "cdrom"
    fileset.write(medium)
    dicomdir = medium / "DICOMDIR"
    assert {s.uid for s in list_series(dicomdir)} == set(uids.values())
    assert [case.case_name for case in scan_inputs(medium).cases] == ["cdrom"]
    assert [case.case_name for case in scan_inputs(dicomdir).cases] == ["cdrom"]
    for source in (dicomdir, medium):
        image = load_dicom_series(source, selection=SeriesSelection(target_thickness_mm=5.0))
        assert image.metadata["dicom"]["SeriesInstanceUID"] == uids["soft 5 mm"] and image.name == "cdrom"
        reference = load_dicom_series(root / "s2")
        assert np.array_equal(image.array, reference.array) and image.same_geometry(reference, tol=1e-4)
    assert load_image(dicomdir).metadata["dicom"]["SeriesInstanceUID"] == uids["soft 1 mm"]  # thickness unknown
    victim = next(p for p in medium.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    victim.unlink()
    with pytest.raises(InputError, match="lists .* which does not exist"):
        list_series(dicomdir)


def test_an_enhanced_ct_series_is_described_from_its_functional_groups(tmp_path):
    """Enhanced CT keeps orientation, thickness and kernel in the functional groups (shared here,
    per frame for the orientation); the rules see them as in a single-frame series."""
    def item(**attributes) -> Dataset:
        ds = Dataset()
        ds.update(attributes)
        return ds

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.update({"Modality": "CT", "StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(),
               "SeriesNumber": 7, "SeriesDescription": "Head 1.0 Hr68", "Manufacturer": "SIEMENS",
               "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"], "NumberOfFrames": 120})
    tilt = np.radians(18)
    ds.SharedFunctionalGroupsSequence = [item(
        PixelMeasuresSequence=[item(SliceThickness="1.0", PixelSpacing=["0.5", "0.5"])],
        CTReconstructionSequence=[item(ConvolutionKernel=["Hr68", "3"], ConvolutionKernelGroup="BONE")])]
    ds.PerFrameFunctionalGroupsSequence = [item(PlaneOrientationSequence=[item(
        ImageOrientationPatient=["1", "0", "0", "0", f"{np.cos(tilt):.6f}", f"{-np.sin(tilt):.6f}"])])]
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    (info,) = list_series(tmp_path)
    assert (info.kernel, info.kernel_group, info.thickness_mm, info.n_slices, info.n_files) == (
        ("Hr68", "3"), "BONE", 1.0, 120, 1)
    assert info.orientation == "axial" and abs(np.degrees(np.arccos(info.normal[2])) - 18) < 1e-3
    failed = default_rules().failed_rule(info)
    assert failed.name == "soft tissue" and "kernel Hr68\\3" in failed.why_not(info)


def series(**fields) -> SeriesInfo:
    """A soft-tissue axial CT series as headers give it, with ``fields`` changed."""
    defaults = {"uid": generate_uid(), "number": 2, "description": "Head", "modality": "CT", "files": (),
                "sop_class": "1.2.840.10008.5.1.4.1.1.2", "image_type": ("ORIGINAL", "PRIMARY", "AXIAL"),
                "thickness_mm": 5.0, "n_slices": 30, "normal": (0.0, 0.0, 1.0)}
    return SeriesInfo(**{**defaults, **fields})


@pytest.mark.parametrize(("manufacturer", "kernel", "soft"), [
    ("SIEMENS", ("H30s",), True), ("SIEMENS", ("H70h",), False), ("SIEMENS", ("Hr38", "3"), True),
    ("Siemens Healthineers", ("Br64", "3"), False), ("SIEMENS", ("J70h",), False), ("SIEMENS", ("Hr40",), True),
    ("GE MEDICAL SYSTEMS", ("STANDARD",), True), ("GE MEDICAL SYSTEMS", ("SOFT",), True),
    ("GE MEDICAL SYSTEMS", ("BONE",), False), ("GE MEDICAL SYSTEMS", ("BONEPLUS",), False),
    ("GE MEDICAL SYSTEMS", ("LUNG",), False), ("Philips", ("UB",), True), ("Philips", ("B",), True),
    ("Philips", ("YC",), False), ("Philips", ("D",), False), ("CANON_MEC", ("FC26",), True),
    ("TOSHIBA", ("FC30",), False), ("Canon Medical Systems", ("FC52",), False), ("ACME", ("D",), True),
])
def test_kernels(manufacturer, kernel, soft):
    info = series(manufacturer=manufacturer, kernel=kernel)
    failed = default_rules().failed_rule(info)
    assert (failed is None) == soft
    if not soft:
        assert failed.name == "soft tissue" and "\\".join(kernel) in failed.why_not(info)


@pytest.mark.parametrize(("fields", "rule"), [
    ({"description": "HEAD BONE 1.25"}, "soft tissue"),
    ({"kernel_group": "BONE", "sop_class": "1.2.840.10008.5.1.4.1.1.2.1"}, "soft tissue"),
    ({"kernel_group": "BRAIN", "sop_class": "1.2.840.10008.5.1.4.1.1.2.1"}, None),
    ({"image_type": ("DERIVED", "SECONDARY", "MPR")}, "original images"),
    ({"normal": (0.0, np.sin(np.radians(20)), np.cos(np.radians(20)))}, None),  # gantry tilt
    ({"normal": (0.0, np.sin(np.radians(40)), np.cos(np.radians(40)))}, "axial"),
    ({"normal": (1.0, 0.0, 0.0)}, "axial"),
    ({"description": "Scout"}, "not a localizer"),
    ({"n_slices": 1}, "a volume"),
    ({"modality": "MR"}, "CT modality"),
])
def test_each_rule(fields, rule):
    info = series(**fields)
    failed = default_rules().failed_rule(info)
    assert (failed.name if failed else None) == rule


def test_reasons_read_as_words():
    assert default_rules().failed_rule(series(normal=(1.0, 0.0, 0.0))).why_not(series(normal=(1.0, 0.0, 0.0))) == (
        "not axial: the slices lie 90 degrees from the axial plane (sagittal)")
    info = series(n_slices=1)
    assert default_rules().failed_rule(info).why_not(info) == "1 image only, not a volume"


def test_ties_go_to_more_slices_then_the_lower_series_number():
    a, b, c = series(number=5, n_slices=30), series(number=3, n_slices=30), series(number=4, n_slices=40)
    rules = default_rules()
    assert choose_series([a, b, c], rules, 5.0).chosen == (c.uid,)
    choice = choose_series([a, b], rules, 5.0)
    assert choice.chosen == (b.uid,)
    assert choice.verdicts[0].reason == ("it fits the rules, but a higher series number than the chosen series, "
                                         "which is alike otherwise")
    assert choose_series([a, b, c], rules, 5.0, all_series=True).chosen == (c.uid, b.uid, a.uid)
    assert choose_series([series(modality="MR")], rules, 5.0).chosen == ()


def test_case_names_are_stable_and_distinct():
    s2, s2_again, unnumbered = series(number=2), series(number=2), series(number=None, description="Head 1.0 / H30s")
    names = series_case_names("study", [s2, s2_again, unnumbered])
    assert names[unnumbered.uid] == "study_Head-1-0-H30s"
    assert names[s2.uid].startswith("study_s2_") and names[s2_again.uid].startswith("study_s2_")
    assert len(set(names.values())) == 3 and names == series_case_names("study", [s2, s2_again, unnumbered])


def test_a_rules_file_replaces_the_default(study, tmp_path):
    root, uids = study
    bone = {"name": "bone", "require": {"ConvolutionKernel": "^H70h$"}, "reason": "kernel {ConvolutionKernel}"}
    (tmp_path / "bone.json").write_text(json.dumps({"rules": [bone], "prefer": ["closest_thickness"]}))
    selection = SeriesSelection(SeriesRules.load(tmp_path / "bone.json"), 5.0)
    image = load_dicom_series(root, selection=selection)
    assert image.metadata["dicom"]["SeriesInstanceUID"] == uids["bone 1 mm"]
    assert any("skipped, kernel H30s" in line for line in image.metadata["series_selection"])


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "cannot read series rules"),
    ('{"rules": []}', "'rules' must be a non-empty list"),
    ('{"rules": [{"name": "x", "require": {"Kernel": "B"}, "reason": "r"}]}',
     "rule 1 ('x'): unknown attribute 'Kernel'"),
    ('{"rules": [{"name": "x", "require": {"SeriesDescription": "(bone"}, "reason": "r"}]}', "bad regular expression"),
    ('{"rules": [{"name": "x", "require": {"SliceThickness": [1, 2, 3]}, "reason": "r"}]}', "is not a condition"),
    ('{"rules": [{"name": "x", "require": {"Modality": "CT"}, "reason": "{Kernel}"}]}', "bad placeholder"),
    ('{"rules": [{"name": "x", "require": {"Modality": "CT"}}]}', "needs a 'reason'"),
    ('{"rules": [{"name": "x", "require": {"Modality": "CT"}, "reason": "r"}], "prefer": ["thinnest"]}',
     "'prefer' must list"),
    ('{"rule": []}', "unexpected entry 'rule'"),
])
def test_a_rules_file_with_an_error_is_one_line_naming_the_file(tmp_path, text, problem, capsys):
    path = tmp_path / "my_rules.json"
    path.write_text(text)
    with pytest.raises(SeriesRulesError) as caught:
        SeriesRules.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    code = main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "no-model"),
                 "--series-rules", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"ichseg: error: {message}"


def test_series_and_all_series_exclude_each_other(study, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--series", "1.2.3", "--all-series"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(InputError, match="not both"):
        scan_inputs(study[0], series="1.2.3", all_series=True)


@pytest.mark.slow
def test_predict_segments_the_chosen_series_and_every_eligible_one(tiny_model, tmp_path, capsys):
    from ichseg.data.synth import generate_case
    from ichseg.model.folder import ModelFolder, training_slice_thickness

    folder = ModelFolder.open(tiny_model)
    target = training_slice_thickness(folder.select())
    assert target is not None and target > 2.0  # tiny phantoms are cut in slices of about 10 mm
    root = tmp_path / "study"
    image = generate_case(3, "tiny", hemorrhage=True).image
    image = image.with_array(image.array.astype(np.float32))
    study = generate_uid()
    uids = {"thick": ct_series(image, root / "thick", study, 2, "Head 10 H30s", "H30s", image.spacing[0]),
            "thin": ct_series(thin(image, image.spacing[0] / 2), root / "thin", study, 3, "Head 5 H30s", "H30s",
                              image.spacing[0] / 2),
            "bone": ct_series(thin(image, image.spacing[0] / 2), root / "bone", study, 4, "Head 5 H70h", "H70h",
                              image.spacing[0] / 2),
            "dose": non_image(root / "sr" / "dose.dcm", study, XRayRadiationDoseSRStorage, "SR", 501, "Dose")}
    closest = "thick" if abs(image.spacing[0] - target) <= abs(image.spacing[0] / 2 - target) else "thin"
    base = ["predict", "-i", str(root), "--model", str(tiny_model), "--device", "cpu", "--no-mirroring", "--no-report"]

    assert main([*base, "-o", str(tmp_path / "chosen")]) == 0
    err = capsys.readouterr().err
    record = json.loads((tmp_path / "chosen" / "study.json").read_text())
    chosen = {"thick": "Head 10 H30s", "thin": "Head 5 H30s"}[closest]
    assert record["input"]["dicom"]["SeriesDescription"] == chosen
    lines = [line for line in err.splitlines() if "study: series #" in line]
    assert len(lines) == 4 and sum("segmented" in line for line in lines) == 1
    assert all(uid in err for uid in uids.values())

    assert main([*base, "-o", str(tmp_path / "bone"), "--series", uids["bone"]]) == 0
    record = json.loads((tmp_path / "bone" / "study.json").read_text())
    assert record["input"]["dicom"]["ConvolutionKernel"] == "H70h"

    assert main([*base, "-o", str(tmp_path / "all"), "--all-series"]) == 0
    written = sorted(p.name for p in (tmp_path / "all").glob("study_s*.json"))
    assert written == ["study_s2.json", "study_s3.json"]
    for name, role in (("study_s2", "thick"), ("study_s3", "thin")):
        mask = load_image(tmp_path / "all" / f"{name}.nii.gz")
        assert mask.same_geometry(load_dicom_series(root, uids[role]), tol=1e-4)
