"""Per-case and batch outputs: files, JSON, HTML report, privacy, refusal and no partial outputs."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import highdicom as hd
import numpy as np
import pytest

from ichseg.clinical import case_measures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.errors import InputError, OutputExistsError
from ichseg.io import load_image
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.report import outputs as outputs_module
from ichseg.report.options import OutputOptions
from ichseg.report.outputs import write_batch_outputs, write_case_outputs
from phantoms import head_phantom

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IDENTIFIERS = {"PatientName": "DOE^JANE", "PatientID": "PID-4711",
               "PatientBirthDate": "19610203", "AccessionNumber": "ACC998877",
               "InstitutionName": "St Example Hospital", "ReferringPhysicianName": "HOUSE^GREGORY"}
UNCERTAINTY = EnsembleInfo("uncertainty", 15, 0.125, "HR<th: n>N2", {"th": 0.5, "n1": 1, "n2": 7})


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """A phantom written as a DICOM series with identifiers, loaded back, and its blood mask."""
    folder = tmp_path_factory.mktemp("input") / "ct"
    image = head_phantom(shape=(6, 48, 48))
    write_ct_series(image, folder, patient_name=IDENTIFIERS["PatientName"],
                    patient_id=IDENTIFIERS["PatientID"],
                    attributes={k: v for k, v in IDENTIFIERS.items()
                                if k not in ("PatientName", "PatientID")})
    loaded = load_dicom_series(folder)
    return loaded, (loaded.array > 60).astype(np.uint8)


def test_case_outputs_of_a_dicom_series(dicom_case, tmp_path):
    image, mask = dicom_case
    votes = (mask * 11).astype(np.uint8)
    written = write_case_outputs(image, mask, tmp_path, vote_map=votes, uncertainty=UNCERTAINTY,
                                 postprocessing={"min_component_ml": 0.1}, reference=mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ct.html", "ct.json", "ct.nii.gz", "ct.png", "ct_seg.dcm", "ct_votes.nii.gz"]
    assert {kind: path.name for kind, path in written.files.items()} == {
        "mask": "ct.nii.gz", "json": "ct.json", "votes": "ct_votes.nii.gz", "preview": "ct.png",
        "html": "ct.html", "dicom_seg": "ct_seg.dcm"}

    saved_mask = load_image(tmp_path / "ct.nii.gz")
    assert saved_mask.same_geometry(image, tol=1e-4)
    assert np.array_equal(saved_mask.array, mask)
    assert np.array_equal(load_image(tmp_path / "ct_votes.nii.gz").array, votes)
    seg = hd.seg.segread(tmp_path / "ct_seg.dcm")
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=image.metadata["dicom"]["SOPInstanceUIDs"], segment_numbers=[1])
    assert np.array_equal(frames[..., 0], mask)
    assert (tmp_path / "ct.png").read_bytes().startswith(PNG_MAGIC)

    summary = json.loads((tmp_path / "ct.json").read_text())
    expected = json.loads(json.dumps(case_measures(mask, image.spacing).to_json()))
    assert summary["measures"] == expected
    assert summary["uncertainty"] == UNCERTAINTY.to_json()
    assert summary["postprocessing"] == {"min_component_ml": 0.1}
    assert summary["reference"] == {"dice": 1.0, "volume_ml": expected["volume_ml"],
                                    "difference_ml": 0.0}
    assert summary["input"]["format"] == "DICOM series"
    assert summary["input"]["dicom"]["Modality"] == "CT"
    assert summary["input"]["shape"] == list(image.shape)
    assert summary["outputs"]["dicom_seg"] == "ct_seg.dcm"


def test_html_report_holds_the_measures_and_embedded_images(dicom_case, tmp_path):
    image, mask = dicom_case
    written = write_case_outputs(image, mask, tmp_path, uncertainty=UNCERTAINTY)
    page = (tmp_path / "ct.html").read_text()
    measures = written.summary.measures.to_json()
    abc = measures["abc2"]
    for text in (f"{measures['volume_ml']:.2f} mL", f"{abc['volume_ml']:.2f} mL",
                 f"{abc['a_mm']:.1f} mm", f"{abc['b_mm']:.1f} mm", f"{abc['c_mm']:.1f} mm",
                 f"z {abc['slice_index']}", "HR 0.125", "HR&lt;th: n&gt;N2",
                 f"{measures['slices']['count']} / {image.shape[0]}",
                 "26-connectivity", "ABC/2 (Kothari)"):
        assert text in page, text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    assert base64.b64decode(images[0]) == (tmp_path / "ct.png").read_bytes()
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_no_identifiers_by_default(dicom_case, tmp_path):
    image, mask = dicom_case
    case = write_case_outputs(image, mask, tmp_path / "out")
    write_batch_outputs([case], [], tmp_path / "out")
    study_uid = image.metadata["dicom"]["StudyInstanceUID"]
    for path in (tmp_path / "out").iterdir():
        if path.suffix == ".dcm":
            continue  # the DICOM-SEG must carry the source's patient module
        content = path.read_bytes()
        for value in [*IDENTIFIERS.values(), study_uid]:
            assert value.encode() not in content, (path.name, value)
    assert case.summary.identifiers is None and "identifiers" not in case.summary.to_json()


def test_identifiers_when_asked(dicom_case, tmp_path):
    image, mask = dicom_case
    case = write_case_outputs(image, mask, tmp_path, OutputOptions(keep_identifiers=True))
    write_batch_outputs([case], [], tmp_path)
    summary = json.loads((tmp_path / "ct.json").read_text())
    assert {k: summary["identifiers"][k] for k in IDENTIFIERS} == IDENTIFIERS
    study_uid = image.metadata["dicom"]["StudyInstanceUID"]
    assert summary["input"]["dicom"]["StudyInstanceUID"] == study_uid
    page = (tmp_path / "ct.html").read_text()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cases.csv").read_text())))
    for value in IDENTIFIERS.values():
        assert value in page
        assert value in rows[0].values()
    assert rows[0]["PatientID"] == "PID-4711"


def test_refuses_before_writing_anything(dicom_case, tmp_path):
    image, mask = dicom_case
    (tmp_path / "ct.png").write_bytes(b"an earlier preview")
    with pytest.raises(OutputExistsError, match="ct.png"):
        write_case_outputs(image, mask, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["ct.png"]
    write_case_outputs(image, mask, tmp_path, OutputOptions(overwrite=True))
    assert (tmp_path / "ct.png").read_bytes().startswith(PNG_MAGIC)


def test_a_failure_midway_leaves_no_partial_outputs(dicom_case, tmp_path, monkeypatch):
    image, mask = dicom_case

    def broken_preview(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(outputs_module, "_pictures", broken_preview)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_case_outputs(image, mask, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no mask, JSON or DICOM-SEG, no temporary files


def test_nifti_input_has_no_dicom_seg(tmp_path):
    image = head_phantom(shape=(5, 32, 32))
    mask = image.array > 60
    case = write_case_outputs(image, mask, tmp_path, OutputOptions(html=False, preview=False), name="scan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.json", "scan.nii.gz"]
    assert case.summary.input["format"] == "image file"
    assert "dicom" not in case.summary.input
    with pytest.raises(InputError, match="needs a DICOM input series"):
        write_case_outputs(image, mask, tmp_path / "other", OutputOptions(dicom_seg=True), name="scan")
    assert not (tmp_path / "other").exists()


def test_empty_mask_and_markup_in_names_are_handled(tmp_path):
    image = head_phantom(shape=(5, 32, 32))
    name = 'a<b>&"c'
    case = write_case_outputs(image, np.zeros(image.shape, bool), tmp_path, name=name,
                              uncertainty=EnsembleInfo("uncertainty", 3, None, "empty"))
    assert case.summary.measures.volume_ml == 0.0
    assert case.summary.measures.abc2.slice_index is None
    page = (tmp_path / f"{name}.html").read_text()
    assert "a&lt;b&gt;&amp;&quot;c" in page and name not in page
    assert "No hemorrhage: nothing to measure." in page


def test_batch_csv_and_report(dicom_case, tmp_path):
    image, mask = dicom_case
    first = write_case_outputs(image, mask, tmp_path / "cases", name="first",
                               uncertainty=UNCERTAINTY)
    second = write_case_outputs(image, np.zeros(image.shape, bool), tmp_path / "cases",
                                name="second")
    failures = [("third", "third: series 1.2.3 ('Head <5mm>'): 1 missing slice(s)")]
    paths = write_batch_outputs([first, second], failures, tmp_path)
    assert paths == {"csv": tmp_path / "cases.csv", "html": tmp_path / "report.html"}

    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [(r["case"], r["status"]) for r in rows] == [("first", "ok"), ("second", "ok"),
                                                        ("third", "failed")]
    measures = first.summary.measures.to_json()
    assert float(rows[0]["volume_ml"]) == pytest.approx(measures["volume_ml"], rel=1e-5)
    assert float(rows[0]["abc2_ml"]) == pytest.approx(measures["abc2"]["volume_ml"], rel=1e-5)
    assert int(rows[0]["components"]) == measures["components"]["count"]
    assert int(rows[0]["slices_involved"]) == measures["slices"]["count"]
    assert rows[0]["hr"] == "0.125" and rows[1]["hr"] == ""
    assert rows[1]["volume_ml"] == "0" and rows[1]["abc2_slice"] == ""
    assert rows[2]["error"] == failures[0][1] and rows[2]["volume_ml"] == ""

    page = paths["html"].read_text()
    assert 'href="cases/first.html"' in page and 'href="cases/second.html"' in page
    assert 'id="case-first"' in page and 'id="case-second"' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2
    assert "Head &lt;5mm&gt;" in page
    with pytest.raises(OutputExistsError):
        write_batch_outputs([first], [], tmp_path)


def test_the_series_the_rules_chose_is_recorded_without_its_uid_unless_asked(tmp_path):
    image = head_phantom(shape=(5, 32, 32))
    lines = ["series #2 'Head 5.0 H30s' (5 mm, 7 images, 1.2.826.0.1.3680043.8.498.1): segmented, the closest",
             "series #4 'Head 1.0 H70h' (1 mm, 33 images, 1.2.826.0.1.3680043.8.498.2): skipped, bone kernel"]
    image.metadata["series_selection"] = lines
    hidden = write_case_outputs(image, np.zeros(image.shape, bool), tmp_path / "a", OutputOptions(preview=False))
    assert hidden.summary.input["series_selection"] == [
        "series #2 'Head 5.0 H30s' (5 mm, 7 images): segmented, the closest",
        "series #4 'Head 1.0 H70h' (1 mm, 33 images): skipped, bone kernel"]
    kept = write_case_outputs(image, np.zeros(image.shape, bool), tmp_path / "b",
                              OutputOptions(preview=False, keep_identifiers=True))
    assert kept.summary.input["series_selection"] == lines
