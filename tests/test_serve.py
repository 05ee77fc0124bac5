"""``ichseg serve`` as a hospital runs it: a real Orthanc sends CT series, the node sends back.

Orthanc (Debian's binary) and the node (``python -m ichseg serve`` with a tiny trained model)
run as subprocesses on free loopback ports. The tests read what arrives in Orthanc through its
REST API and compare it with what ``ichseg predict`` writes for the same series; ``dciodvfy``
checks the DICOM objects. Orthanc and dciodvfy missing: skipped, or failed under CI=true.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc import LOOPBACK, Orthanc, free_port, require_binary, running_orthanc
from pydicom.uid import MRImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ichseg.cli import main
from ichseg.data.synth import generate_case
from ichseg.ensemble.info import EnsembleInfo
from ichseg.errors import InputError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.image import load_image
from ichseg.segmentation.result import Segmentation
from ichseg.serve.config import Retry, parse_listen, parse_peer
from ichseg.serve.log import EventLog, uid_hash
from ichseg.serve.results import write_results
from ichseg.serve.scp import screen
from ichseg.serve.store import Store

NODE_AET = "ICHSEG"
QUIET_S = 1.0
#: Bound on waiting for anything the node or Orthanc does (the CI box is slow and shared).
TIMEOUT_S = 90.0
RESULT_DESCRIPTIONS = {"seg": "ICH segmentation (ichseg)", "sc": "ICH key images (ichseg)",
                       "sr": "ICH measurements (ichseg)"}
IDENTIFIERS = {"InstitutionName": "General Hospital", "PatientBirthDate": "19700101",
               "OperatorsName": "SMITH^TOM", "AccessionNumber": "ACC-99"}


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT_S, every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Node:
    """An ``ichseg serve`` subprocess and its workspace."""

    model: Path
    workspace: Path
    port: int
    send_to: str
    process: subprocess.Popen | None = None
    starts: int = field(default=0)

    @property
    def log_file(self) -> Path:
        return self.workspace / "serve" / "log.jsonl"

    def events(self, name: str | None = None) -> list[dict]:
        if not self.log_file.is_file():
            return []
        lines = self.log_file.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.endswith("}")]
        return [r for r in records if name is None or r["event"] == name]

    def start(self, send_to: str | None = None) -> None:
        self.send_to = send_to or self.send_to
        listening = len(self.events("listening"))
        command = [sys.executable, "-m", "ichseg", "serve", "--model", str(self.model),
                   "--listen", f"{NODE_AET}@{self.port}", "--send-to", self.send_to, "--host", LOOPBACK,
                   "--quiet-seconds", str(QUIET_S), "--workspace", str(self.workspace),
                   "--device", "cpu", "--no-mirroring"]
        self.workspace.mkdir(parents=True, exist_ok=True)
        with (self.workspace / f"node-{self.starts}.err").open("wb") as err:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        self.starts += 1
        wait_until(lambda: len(self.events("listening")) > listening or self.process.poll() is not None,
                   "the node to listen")
        assert self.process.poll() is None, (self.workspace / f"node-{self.starts - 1}.err").read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
        self.process = None

    def status(self, capsys: pytest.CaptureFixture) -> str:
        capsys.readouterr()
        assert main(["serve", "--status", "--workspace", str(self.workspace)]) == 0
        return capsys.readouterr().out


def ct_series(folder: Path, seed: int, **attributes: object) -> tuple[Path, list[Path]]:
    """A tiny phantom with a bleed as a DICOM series carrying identifiers; its sorted files."""
    case = generate_case(seed, "tiny", hemorrhage=True)
    written = write_ct_series(case.image, folder, patient_name="DOE^JANE", patient_id=f"PID-{seed}",
                              attributes={**IDENTIFIERS, **attributes})
    return written, sorted(written.glob("*.dcm"))


def study_results(orthanc: Orthanc, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """The node's results filed in the study, by kind (oldest series first)."""
    found: dict[str, list[pydicom.Dataset]] = {kind: [] for kind in RESULT_DESCRIPTIONS}
    kinds = {description: kind for kind, description in RESULT_DESCRIPTIONS.items()}
    for series in sorted(orthanc.request("GET", "/series?expand"), key=lambda s: s["MainDicomTags"].get("SeriesNumber", "")):
        kind = kinds.get(series["MainDicomTags"].get("SeriesDescription"))
        if kind is None:
            continue
        for blob in orthanc.instance_files(series):
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(blob))
            if ds.StudyInstanceUID == study_uid:
                found[kind].append(ds)
    for datasets in found.values():
        datasets.sort(key=lambda ds: (ds.get("ContentDate", ""), ds.get("ContentTime", "")))
    return found


def wait_for_results(orthanc: Orthanc, study_uid: str, n: int = 1) -> dict[str, list[pydicom.Dataset]]:
    """The study's results once ``n`` of each kind have arrived."""
    def arrived() -> dict[str, list[pydicom.Dataset]] | None:
        results = study_results(orthanc, study_uid)
        return results if all(len(v) >= n for v in results.values()) else None

    return wait_until(arrived, f"{n} SEG, SC and SR in Orthanc", every=0.5)


def seg_volume(seg: pydicom.Dataset, source_uids: list[str]) -> np.ndarray:
    """The SEG's frames put back on the source slices they reference."""
    index = {uid: k for k, uid in enumerate(source_uids)}
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    volume = np.zeros((len(source_uids), seg.Rows, seg.Columns), np.uint8)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        volume[index[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]] = frame
    return volume


def sr_numbers(ds: pydicom.Dataset) -> list[tuple[str, str | None, float]]:
    """Every numeric item of an SR: (concept code, method code or None, value)."""
    found = []
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "NUM":
            methods = [c.ConceptCodeSequence[0].CodeValue for c in item.get("ContentSequence", [])
                       if c.ConceptNameCodeSequence[0].CodeValue == "370129005"]
            value = float(item.MeasuredValueSequence[0].NumericValue)
            found.append((item.ConceptNameCodeSequence[0].CodeValue, methods[0] if methods else None, value))
        found.extend(sr_numbers(item))
    return found


def assert_valid_dicom(datasets: list[pydicom.Dataset], folder: Path) -> None:
    """dciodvfy reports no error for any of ``datasets``."""
    binary = require_binary("dciodvfy")
    folder.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(datasets):
        path = folder / f"{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        run = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (ds.Modality, errors)


def test_addresses_parse_and_a_bad_one_is_one_line_naming_it(tmp_path, capsys):
    assert parse_listen("ICHSEG@11112") == ("ICHSEG", 11112)
    peer = parse_peer("ORTHANC@pacs.local:4242")
    assert (peer.ae_title, peer.host, peer.port) == ("ORTHANC", "pacs.local", 4242)
    for bad in ("ICHSEG", "ICHSEG@port", "ICHSEG@70000", "A\\B@104", "SEVENTEEN_LETTERS@104"):
        with pytest.raises(InputError, match="'"):
            parse_listen(bad)
    with pytest.raises(InputError, match="AE_TITLE@HOST:PORT"):
        parse_peer("ORTHANC@4242")
    capsys.readouterr()
    assert main(["serve", "--model", str(tmp_path), "--listen", "ICHSEG@11112", "--send-to", "ORTHANC@4242",
                 "--workspace", str(tmp_path / "ws")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ichseg: error: 'ORTHANC@4242': expected AE_TITLE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242"]
    assert main(["serve", "--status", "--workspace", str(tmp_path / "ws")]) == 2
    assert "no DICOM node has run" in capsys.readouterr().err


def test_log_lines_carry_no_uid_unless_asked(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.433215848134131859"
    log = EventLog(tmp_path / "log.jsonl", stream=None)
    log.event("case_failed", series=uid, reason=f"series {uid} ('head'): 1 missing slice(s), spacing 5.00 mm")
    assert json.loads(log.path.read_text())["reason"] == f"series {uid_hash(uid)} ('head'): 1 missing slice(s), spacing 5.00 mm"
    assert uid not in log.path.read_text()
    kept = EventLog(tmp_path / "kept.jsonl", keep_identifiers=True, stream=None)
    assert kept.event("case_started", series=uid)["series"] == uid


def test_retries_back_off_doubling_up_to_the_cap():
    assert [Retry(5, 60).delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_only_single_frame_ct_that_is_not_a_localizer_is_kept():
    ds = pydicom.Dataset()
    ds.Modality, ds.SOPClassUID, ds.ImageType = "CT", pydicom.uid.CTImageStorage, ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert screen(ds) is None
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert screen(ds) == "localizer (scout) images"
    ds.SOPClassUID = pydicom.uid.EnhancedCTImageStorage
    assert screen(ds) == "Enhanced CT Image Storage: only single-frame CT Image Storage is segmented"
    ds.Modality, ds.SOPClassUID = "MR", MRImageStorage
    assert screen(ds) == "modality MR: only CT is segmented"


def test_queue_survives_reopening_and_reprocesses_a_series_that_grows(tmp_path):
    store = Store(tmp_path)
    assert store.add_instance("1.2.3", "1.2.3.1", b"one") and not store.add_instance("1.2.3", "1.2.3.1", b"one")
    assert store.claim_due(quiet_seconds=60) is None  # still in its quiet period
    claim = store.claim_due(quiet_seconds=0)
    assert claim is not None and claim.generation == 1 and len(claim.files) == 1
    store.close()

    store = Store(tmp_path)  # as after a kill -9 mid-case
    assert store.recover() == 1
    claim = store.claim_due(quiet_seconds=0)
    store.add_instance("1.2.3", "1.2.3.2", b"two")  # arrives while the series is processed
    assert store.finish(claim, {"seg": tmp_path / "seg.dcm"}) == "waiting"
    again = store.claim_due(quiet_seconds=0)
    assert again.generation == 2 and len(again.files) == 2
    assert store.finish(again, {"seg": tmp_path / "seg2.dcm"}) == "done"
    assert store.claim_due(quiet_seconds=0) is None
    pending = store.due_results()
    assert [p.kind for p in pending] == ["seg", "seg"]
    store.mark_unsent(pending[0], "no association", retry_in=60)
    store.mark_sent(pending[1])
    counts = store.counts()
    assert (counts["received"], counts["done"], counts["instances"], counts["sent"], counts["unsent"]) == (1, 1, 2, 1, 1)
    assert store.due_results() == []  # the failed one waits for its back-off
    assert store.last_errors()[0][1:] == (uid_hash("1.2.3"), "sending seg: no association")


def test_several_models_add_the_half_ratio_and_results_keep_only_filing_identifiers(tmp_path):
    from phantoms import head_phantom

    folder = write_ct_series(head_phantom(), tmp_path / "series", patient_id="PID-7", attributes=IDENTIFIERS)
    image = load_dicom_series(folder)
    mask = image.with_array((image.array > 60).astype(np.uint8) & (image.array < 100))
    ensemble = EnsembleInfo("uncertainty", 3, 0.25)
    paths = write_results(Segmentation(image, mask, mask, ensemble), tmp_path / "out")
    seg, sc, sr = (pydicom.dcmread(paths[kind]) for kind in ("seg", "sc", "sr"))
    measures = Segmentation(image, mask, mask, ensemble).measures()
    numbers = sr_numbers(sr)
    assert ("118586006", None, 0.25) in numbers
    assert ("118565006", "126030", pytest.approx(measures.volume_ml, abs=1e-3)) in numbers
    assert "HR 0.25 (3 models)" in sc.ImageComments
    for ds in (seg, sc, sr):
        assert (ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID) == ("PID-7", "ACC-99", image.metadata["dicom"]["StudyInstanceUID"])
        assert "InstitutionName" not in ds and "OperatorsName" not in ds and ds.PatientBirthDate == ""
    assert_valid_dicom([seg, sc, sr], tmp_path / "dciodvfy")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"ichseg": free_port(), "ichseg-durable": free_port()}


@pytest.fixture(scope="module")
def orthanc(ports, tmp_path_factory):
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), {n: (NODE_AET, p) for n, p in ports.items()}) as server:
        yield server


@pytest.fixture(scope="module")
def node(tiny_model, orthanc, ports, tmp_path_factory):
    running = Node(tiny_model, tmp_path_factory.mktemp("node"), ports["ichseg"], orthanc.peer)
    running.start()
    yield running
    running.stop()


@pytest.mark.slow
def test_ct_series_comes_back_as_seg_sc_and_sr_matching_ichseg_predict(node, orthanc, tiny_model, tmp_path):
    folder, files = ct_series(tmp_path / "series", seed=3)
    orthanc.store_to("ichseg", orthanc.upload(files))
    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    study_uid, series_uid = source[0].StudyInstanceUID, source[0].SeriesInstanceUID
    results = wait_for_results(orthanc, study_uid)
    seg, sc, sr = results["seg"][0], results["sc"][0], results["sr"][0]

    out = tmp_path / "predicted"
    assert main(["predict", "-i", str(folder), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
                 "--no-mirroring", "--no-report"]) == 0
    mask = load_image(out / "series.nii.gz").array
    case = json.loads((out / "series.json").read_text())
    assert mask.any(), "the smoke model should mark something, or the comparison proves little"
    assert np.array_equal(seg_volume(seg, [str(ds.SOPInstanceUID) for ds in source]), mask)

    numbers = sr_numbers(sr)
    volume = [v for code, method, v in numbers if code == "118565006" and method == "126030"]
    abc2 = [v for code, method, v in numbers if code == "118565006" and method == "126029"]
    assert volume == [pytest.approx(case["measures"]["volume_ml"], abs=1e-3)]
    assert abc2 == [pytest.approx(case["measures"]["abc2"]["volume_ml"], abs=1e-3)]
    assert not [n for n in numbers if n[0] == "118586006"]  # one model: no half ratio

    # All three reference the source series and are filed in its study, with no other identifier.
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert series_uid in {item.SeriesInstanceUID for item in evidence}
    assert {item.ReferencedSOPInstanceUID for item in sc.SourceImageSequence} <= {ds.SOPInstanceUID for ds in source}
    for ds in (seg, sc, sr):
        assert (ds.StudyInstanceUID, ds.PatientID, ds.AccessionNumber) == (study_uid, "PID-3", "ACC-99")
        assert "InstitutionName" not in ds and "OperatorsName" not in ds and not ds.PatientBirthDate
    assert_valid_dicom([seg, sc, sr], tmp_path / "dciodvfy")

    log = node.log_file.read_text()
    assert series_uid not in log and study_uid not in log and "DOE" not in log
    done = [e for e in node.events("case_done") if e["series"] == uid_hash(series_uid)]
    assert len(done) == 1 and {"read_s", "segment_s", "results_s", "since_quiet_end_s"} <= set(done[0])


@pytest.mark.slow
def test_unchanged_resend_is_not_processed_again_but_a_new_instance_is(node, orthanc, tmp_path):
    _, files = ct_series(tmp_path / "series", seed=4)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    key = uid_hash(first.SeriesInstanceUID)
    orthanc_series = orthanc.upload(files[:-1])
    orthanc.store_to("ichseg", orthanc_series)
    assert len(wait_for_results(orthanc, first.StudyInstanceUID)["seg"]) == 1

    orthanc.store_to("ichseg", orthanc_series)  # the same instances again
    time.sleep(QUIET_S + 3)
    assert len([e for e in node.events("case_started") if e["series"] == key]) == 1

    orthanc.upload(files[-1:])  # the series gains its last slice
    orthanc.store_to("ichseg", orthanc_series)
    results = wait_for_results(orthanc, first.StudyInstanceUID, n=2)
    started = [e for e in node.events("case_started") if e["series"] == key]
    assert [e["instances"] for e in started] == [len(files) - 1, len(files)]
    added = pydicom.dcmread(files[-1], stop_before_pixels=True).SOPInstanceUID
    evidence = [{item.ReferencedSOPInstanceUID for series in sr.CurrentRequestedProcedureEvidenceSequence
                 for ref in series.ReferencedSeriesSequence for item in ref.ReferencedSOPSequence}
                for sr in results["sr"]]
    assert [len(e) for e in evidence] == [len(files) - 1 + 1, len(files) + 1]  # the slices and the SEG
    assert added not in evidence[0] and added in evidence[1]


@pytest.mark.slow
def test_unknown_calling_ae_is_refused_at_association(node, orthanc):
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(Verification)
    assoc = stranger.associate(LOOPBACK, node.port, ae_title=NODE_AET)
    assert assoc.is_rejected and not assoc.is_established
    wait_until(lambda: [e for e in node.events("association_rejected") if e["calling_ae"] == "STRANGER"],
               "the rejection in the log")
    assert orthanc.request("POST", "/modalities/ichseg/echo", {}) is not None  # Orthanc itself is accepted


@pytest.mark.slow
def test_mr_series_is_skipped_with_its_reason_in_the_log_and_status(node, orthanc, tmp_path, capsys):
    _, files = ct_series(tmp_path / "mr", seed=5, Modality="MR", SOPClassUID=MRImageStorage)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.save_as(path, enforce_file_format=True)
    answer = orthanc.store_to("ichseg", orthanc.upload(files))
    assert answer["FailedInstancesCount"] == 0
    key = uid_hash(str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID))
    skipped = wait_until(lambda: [e for e in node.events("series_skipped") if e["series"] == key], "the skip")
    assert len(skipped) == 1 and "modality MR" in skipped[0]["reason"]
    assert not (node.workspace / "serve" / "instances" / key).exists()
    assert "skipped 1" in node.status(capsys)


@pytest.mark.slow
def test_series_failing_the_input_checks_is_logged_with_its_reason_and_the_node_goes_on(node, orthanc, tmp_path, capsys):
    _, files = ct_series(tmp_path / "gap", seed=7)
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    orthanc.store_to("ichseg", orthanc.upload(files[:5] + files[6:]))  # slice 6 lost on the way
    key = uid_hash(series_uid)
    failed = wait_until(lambda: [e for e in node.events("case_failed") if e["series"] == key], "the failure")
    assert "1 missing slice(s)" in failed[0]["reason"] and series_uid not in failed[0]["reason"]
    status = node.status(capsys)
    assert "failed 1" in status and "missing slice" in status and series_uid not in status
    assert node.process.poll() is None
    assert orthanc.request("POST", "/modalities/ichseg/echo", {}) is not None


@pytest.mark.slow
def test_node_killed_mid_case_resumes_and_unsent_results_are_retried(tiny_model, orthanc, ports, tmp_path, capsys):
    pacs_port = free_port()  # nothing listens there until the second PACS starts
    durable = Node(tiny_model, tmp_path / "ws", ports["ichseg-durable"], f"ORTHANC@{LOOPBACK}:{pacs_port}")
    durable.start()
    try:
        _, files = ct_series(tmp_path / "series", seed=6)
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        orthanc.store_to("ichseg-durable", orthanc.upload(files))
        wait_until(lambda: durable.events("case_started"), "the case to start", every=0.01)
        durable.stop(signal.SIGKILL)
        assert not durable.events("case_done"), "the case finished before the kill: nothing was tested"
        assert "waiting 1" in durable.status(capsys)

        durable.start()
        assert durable.events("node_starting")[-1]["recovered"] == 1
        failed = wait_until(lambda: durable.events("send_failed"), "a failed send")
        assert failed[0]["attempts"] == 1 and failed[0]["retry_in_s"] == 5.0
        status = durable.status(capsys)
        assert "done 1" in status and "unsent 3" in status and "no association" in status

        with running_orthanc(tmp_path / "pacs", {}, dicom_port=pacs_port) as pacs:  # the PACS comes back
            results = wait_for_results(pacs, study_uid)
        assert [len(v) for v in results.values()] == [1, 1, 1]
        wait_until(lambda: "unsent 0" in durable.status(capsys), "the queue to empty")
        assert len(durable.events("case_done")) == 1  # processed once, across the kill
        assert min(e["time"] for e in durable.events("result_sent")) > failed[0]["time"]  # sent on a retry
    finally:
        durable.stop()
