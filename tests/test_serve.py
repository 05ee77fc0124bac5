"""``ichseg serve`` as a hospital runs it: a real Orthanc sends CT series, the node sends back.

Orthanc (Debian's binary) and the node (``python -m ichseg serve`` with a tiny trained model)
run as subprocesses on free loopback ports. The tests read what arrives in Orthanc through its
REST API and compare it with what ``ichseg predict`` writes for the same series; ``dciodvfy``
checks the DICOM objects. Orthanc and dciodvfy missing: skipped, or failed under CI=true.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from faulty_pacs import RecordingSCP, SilentListener, full_backlog
from ichseg.cli import main
from ichseg.data.synth import generate_case
from ichseg.ensemble.info import EnsembleInfo
from ichseg.errors import InputError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from ichseg.io.image import load_image
from ichseg.io.series_selection import SeriesSelection
from ichseg.segmentation.result import Segmentation
from ichseg.serve import format_status, queue_status
from ichseg.serve.config import (
    Peer,
    Retry,
    ServeOptions,
    Timeouts,
    parse_listen,
    parse_peer,
)
from ichseg.serve.identifiers import KEY_FILE, UidHasher, plain_uid_hash
from ichseg.serve.log import EventLog
from ichseg.serve.results import write_results
from ichseg.serve.scp import StorageServer, screen
from ichseg.serve.sender import Sender, read_result
from ichseg.serve.store import Store
from ichseg.serve.worker import Worker
from orthanc import LOOPBACK, Orthanc, free_port, require_binary, running_orthanc

NODE_AET = "ICHSEG"
QUIET_S = 1.0
#: The association timeout facing a silent PACS that a test hangs up: beyond every wait, so the
#: hang-up, not the machine's speed, ends the wait.
SILENT_ACSE_S = 3600.0
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
    options: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    starts: int = field(default=0)

    def key(self, uid: str) -> str:
        """How the node names ``uid`` in its log and status."""
        return UidHasher.open(self.workspace / "serve")(str(uid))

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
                   "--device", "cpu", "--no-mirroring", *self.options]
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
    listed = orthanc.request("GET", "/series?expand")
    for series in sorted(listed, key=lambda s: s["MainDicomTags"].get("SeriesNumber", "")):
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
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
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
        run = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120, check=False)
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
    assert main(["serve", "--model", str(tmp_path), "--listen", "ICHSEG@11112", "--send-to", "ORTHANC@pacs:4242",
                 "--series-rules", str(tmp_path / "rules.json"), "--workspace", str(tmp_path / "ws")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ichseg: error: {tmp_path / 'rules.json'}: no such series rules file"]


def test_log_lines_carry_no_uid_unless_asked(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.433215848134131859"
    hasher = UidHasher.open(tmp_path)
    log = EventLog(tmp_path / "log.jsonl", hasher, stream=None)
    log.event("case_failed", series=uid, reason=f"series {uid} ('head'): 1 missing slice(s), spacing 5.00 mm")
    assert json.loads(log.path.read_text())["reason"] == \
        f"series {hasher(uid)} ('head'): 1 missing slice(s), spacing 5.00 mm"
    assert uid not in log.path.read_text()
    kept = EventLog(tmp_path / "kept.jsonl", hasher, keep_identifiers=True, stream=None)
    assert kept.event("case_started", series=uid)["series"] == uid


def test_log_hashes_are_keyed_by_a_secret_of_the_workspace(tmp_path):
    uid = "1.2.826.0.1.3680043.8.498.433215848134131859"
    first = EventLog(tmp_path / "a" / "log.jsonl", UidHasher.open(tmp_path / "a"), stream=None)
    logged = first.event("case_started", series=uid)["series"]
    expected = hmac.new((tmp_path / "a" / KEY_FILE).read_bytes(), uid.encode(), hashlib.sha256).hexdigest()[:16]
    assert logged == expected != hashlib.sha256(uid.encode()).hexdigest()[:16] == plain_uid_hash(uid)
    assert stat.S_IMODE((tmp_path / "a" / KEY_FILE).stat().st_mode) == 0o600
    assert UidHasher.open(tmp_path / "a")(uid) == logged  # the node restarted on the same workspace
    assert UidHasher.open(tmp_path / "b")(uid) != logged  # another workspace


def test_retries_back_off_doubling_up_to_the_cap():
    assert [Retry(5, 60).delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_only_ct_images_that_are_not_localizers_are_kept():
    ds = pydicom.Dataset()
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    for sop_class in (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage):
        ds.SOPClassUID = sop_class
        assert screen(ds) is None
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert screen(ds) == "localizer (scout) images"
    ds.ImageType, ds.SOPClassUID = ["DERIVED", "SECONDARY"], SecondaryCaptureImageStorage
    assert screen(ds) == ("Secondary Capture Image Storage: only CT Image Storage and (Legacy Converted) "
                          "Enhanced CT are segmented")
    ds.Modality, ds.SOPClassUID = "MR", MRImageStorage
    assert screen(ds) == "modality MR: only CT is segmented"


def test_queue_survives_reopening_and_reprocesses_a_series_that_grows(tmp_path):
    store = Store(tmp_path)
    assert store.add_instance("1.2", "1.2.3", "1.2.3.1", b"one")
    assert not store.add_instance("1.2", "1.2.3", "1.2.3.1", b"one")
    assert store.claim_due(quiet_seconds=60) is None  # still in its quiet period
    (claim,) = store.claim_due(quiet_seconds=0).claims
    assert claim.generation == 1 and len(claim.files) == 1
    store.close()

    store = Store(tmp_path)  # as after a kill -9 mid-case
    assert store.recover() == 1
    (claim,) = store.claim_due(quiet_seconds=0).claims
    store.add_instance("1.2", "1.2.3", "1.2.3.2", b"two")  # arrives while the series is processed
    assert store.finish(claim, {"seg": sc_file(tmp_path / "seg.dcm")}) == "waiting"
    (again,) = store.claim_due(quiet_seconds=0).claims
    assert again.generation == 2 and len(again.files) == 2
    assert store.finish(again, {"seg": sc_file(tmp_path / "seg2.dcm")}) == "done"
    assert store.claim_due(quiet_seconds=0) is None
    pending = store.due_results()
    assert [p.kind for p in pending] == ["seg", "seg"]
    store.mark_unsent(pending[0], "no association", retry_in=60)
    store.mark_sent(pending[1])
    counts = store.counts()
    assert (counts["received"], counts["done"], counts["instances"]) == (1, 1, 2)
    assert (counts["sent"], counts["unsent"]) == (1, 1)
    assert store.due_results() == []  # the failed one waits for its back-off
    assert store.last_errors()[0][1:] == (store.hash_uid("1.2.3"), "sending seg: no association")


#: The queue's schema as the first node wrote it: results without digests or given-up times.
FIRST_SCHEMA = """
CREATE TABLE series (uid TEXT PRIMARY KEY, state TEXT NOT NULL, instances INTEGER NOT NULL DEFAULT 0,
    last_received REAL NOT NULL, claimed_instances INTEGER, generation INTEGER NOT NULL DEFAULT 0,
    reason TEXT, updated REAL NOT NULL);
CREATE TABLE instances (sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, path TEXT NOT NULL, received REAL NOT NULL);
CREATE TABLE results (id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL, generation INTEGER NOT NULL,
    kind TEXT NOT NULL, path TEXT NOT NULL, sent REAL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL, last_error TEXT, ready REAL NOT NULL);
CREATE TABLE errors (id INTEGER PRIMARY KEY, time REAL NOT NULL, series TEXT, message TEXT NOT NULL);
"""


def _age(store: Store, series_uid: str, seconds: float) -> None:
    """Move a series' last reception ``seconds`` into the past (instead of waiting)."""
    with sqlite3.connect(store.root / "queue.sqlite") as db:
        db.execute("UPDATE series SET last_received = last_received - ? WHERE uid = ?", (seconds, series_uid))
    db.close()


def test_a_study_is_due_once_none_of_its_series_received_anything_for_the_quiet_period(tmp_path):
    store = Store(tmp_path)
    store.add_instance("1.9", "1.9.1", "1.9.1.1", b"a")
    store.add_instance("1.9", "1.9.2", "1.9.2.1", b"b")
    store.add_instance("1.8", "1.8.1", "1.8.1.1", b"c")
    store.skip_series("1.9", "1.9.3", "modality SR: only CT is segmented")  # a dose report
    for uid in ("1.9.1", "1.9.2"):
        _age(store, uid, 100)
    assert store.claim_due(quiet_seconds=50) is None  # the dose report came in just now; 1.8 too
    _age(store, "1.9.3", 100)
    assert not store.skip_series("1.9", "1.9.3", "modality SR: only CT is segmented")  # its next instance
    assert store.claim_due(quiet_seconds=50) is None
    _age(store, "1.9.3", 100)
    study = store.claim_due(quiet_seconds=50)
    assert study.study_uid == "1.9" and [c.series_uid for c in study.claims] == ["1.9.1", "1.9.2"]
    assert store.claim_due(quiet_seconds=50) is None and store.claim_due(quiet_seconds=0).study_uid == "1.8"
    assert set(study.held) == {"1.9.1", "1.9.2"}  # the skipped report holds no file
    assert store.pass_over(study.claims[1], "another series was chosen") == "skipped"
    assert store.finish(study.claims[0], {"sc": sc_file(tmp_path / "sc.dcm")}) == "done"

    store.add_instance("1.9", "1.9.2", "1.9.2.2", b"b2")  # the passed-over series grows: the study is due again
    study = store.claim_due(quiet_seconds=0)
    assert [(c.series_uid, c.generation, len(c.files)) for c in study.claims] == [("1.9.2", 1, 2)]
    assert set(study.held) == {"1.9.1", "1.9.2"}  # the rules see the series done before too


def test_a_workspace_from_before_keyed_hashes_keeps_working(tmp_path):
    series = "1.2.826.0.1.3680043.8.498.1"
    folder = tmp_path / "instances" / plain_uid_hash(series)  # as the first node named it
    folder.mkdir(parents=True)
    old_instance = folder / f"{plain_uid_hash(series + '.1')}.dcm"
    old_instance.write_bytes(b"one")
    old_result = sc_file(tmp_path / "results" / plain_uid_hash(series) / "1" / "sc.dcm")
    with sqlite3.connect(tmp_path / "queue.sqlite") as db:
        db.executescript(FIRST_SCHEMA)
        db.execute("INSERT INTO series VALUES (?, 'done', 1, 0, 1, 1, NULL, 0)", (series,))
        db.execute("INSERT INTO instances VALUES (?, ?, ?, 0)", (series + ".1", series, str(old_instance)))
        db.execute("INSERT INTO results (series_uid, generation, kind, path, next_try, ready) "
                   "VALUES (?, 1, 'sc', ?, 0, 0)", (series, str(old_result)))
        db.execute("INSERT INTO errors (time, series, message) VALUES (0, ?, 'sending sc: no association')",
                   (plain_uid_hash(series),))
    db.close()

    store = Store(tmp_path)
    assert store.last_errors()[0][1] == store.hash_uid(series) != plain_uid_hash(series)
    assert store.add_instance("1.2.9", series, series + ".2", b"two")  # the series goes on filling its folder
    study = store.claim_due(quiet_seconds=0)
    assert study.study_uid == series  # recorded before studies were: a study of its own
    assert sorted(p.parent for p in study.claims[0].files) == [folder, folder]
    (pending,) = store.due_results()
    assert (pending.path, pending.sha256) == (old_result, None)  # no digest recorded then: sent as it is
    assert read_result(pending).SOPClassUID == SecondaryCaptureImageStorage


def sc_file(path: Path) -> Path:
    """A small Secondary Capture, as a stand-in for a result file."""
    sc = hd.sc.SCImage(
        pixel_array=np.zeros((8, 8), np.uint8), photometric_interpretation="MONOCHROME2", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=("L", "P"), study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(), series_number=1, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="ichseg")
    path.parent.mkdir(parents=True, exist_ok=True)
    sc.save_as(path, enforce_file_format=True)
    return path


def queue_results(store: Store, series_uid: str, results: dict[str, Path]) -> None:
    """Record ``results`` as the finished results of a one-instance series."""
    store.add_instance(None, series_uid, f"{series_uid}.1", b"")
    store.finish(store.claim_due(quiet_seconds=0).claims[0], results)


def sender_to(port: int, store: Store, timeouts: Timeouts | None = None) -> Sender:
    log = EventLog(store.root / "log.jsonl", store.hash_uid, stream=None)
    return Sender(NODE_AET, Peer("PACS", LOOPBACK, port), store, log, Retry(5, 60), timeouts or Timeouts())


def logged(store: Store, name: str) -> list[dict]:
    lines = (store.root / "log.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["event"] == name]


@contextmanager
def faulty_pacs(fault: str) -> Iterator[int]:
    """The port of a PACS with ``fault``: dropped (SYNs), silent (after accepting), stuck (mid C-STORE)."""
    if fault == "dropped":
        with full_backlog() as port:
            yield port
    elif fault == "silent":
        with SilentListener() as listener:
            yield listener.port
    else:
        with RecordingSCP() as pacs:
            pacs.hold.set()
            yield pacs.port


@pytest.mark.parametrize("fault, error", [
    ("dropped", "no connection to PACS@127.0.0.1:{port} within the connect timeout (1 s)"),
    ("silent", ("PACS@127.0.0.1:{port} accepted the connection but did not answer the association request "
                "within the association timeout (1 s)")),
    ("stuck", "no answer to the C-STORE within the DIMSE timeout (1 s)"),
])
def test_each_wait_on_a_faulty_pacs_ends_at_its_timeout_and_is_retried(tmp_path, fault, error):
    store = Store(tmp_path)
    queue_results(store, "1.2.3", {"sc": sc_file(tmp_path / "sc.dcm")})
    with faulty_pacs(fault) as port:
        assert sender_to(port, store, Timeouts(connect=1, association=1, dimse=1, network=1)).send_due() == 0
    # The sender names a timeout only where its own clock saw the wait reach it: the timeout ended
    # the wait, not an error (which has a message of its own).
    failed = logged(store, "send_failed")
    assert [(e["error"], e["attempts"], e["retry_in_s"]) for e in failed] == [(error.format(port=port), 1, 5)]
    assert store.due_results() == [] and store.counts()["unsent"] == 1  # due again after its back-off


def test_an_unreadable_result_is_reported_and_the_sender_goes_on(tmp_path):
    store = Store(tmp_path / "state")
    deleted, damaged, good = (sc_file(tmp_path / f"{name}.dcm") for name in ("deleted", "damaged", "good"))
    queue_results(store, "1.2.3", {"seg": deleted, "sc": damaged, "sr": good})
    deleted.unlink()
    damaged.write_bytes(damaged.read_bytes()[:-20])  # truncated in the pixel data: still parses
    later = sc_file(tmp_path / "later.dcm")
    with RecordingSCP() as pacs:
        sender = sender_to(pacs.port, store)
        sender.start(poll_seconds=0.05)
        try:
            wait_until(lambda: len(pacs.received) == 1, "the readable result to arrive")
            queue_results(store, "1.2.4", {"sc": later})
            wait_until(lambda: len(pacs.received) == 2, "a later result to arrive")
        finally:
            assert sender.stop()
    assert pacs.received == [pydicom.dcmread(path).SOPInstanceUID for path in (good, later)]
    unsendable = {e["kind"]: e["error"] for e in logged(store, "result_unsendable")}
    assert unsendable["seg"].startswith(f"{deleted}: unreadable (") and "No such file" in unsendable["seg"]
    assert unsendable["sc"] == f"{damaged}: unreadable (the file changed since it was written (SHA-256 differs))"
    counts = store.counts()
    assert (counts["sent"], counts["unsent"], counts["unsendable"]) == (2, 0, 2)
    status = format_status(queue_status(tmp_path / "state"))
    hashed = store.hash_uid("1.2.3")
    assert f"unsendable sc of series {hashed}: 1 attempt(s), last error: {damaged}: unreadable" in status
    assert "results   sent 2  unsent 0  unsendable 2" in status


def test_stopping_does_not_wait_for_a_silent_pacs_beyond_the_grace_period(tmp_path):
    store = Store(tmp_path)
    queue_results(store, "1.2.3", {"sc": sc_file(tmp_path / "sc.dcm")})
    with SilentListener() as silent:
        # An association timeout beyond every wait here: only the PACS hanging up ends the round.
        sender = sender_to(silent.port, store, Timeouts(association=SILENT_ACSE_S))
        sender.start(poll_seconds=0.05)
        wait_until(lambda: silent.connections, "the sender to connect")
        assert sender.stop(grace=0.5) is False  # the round still waits on the silent PACS ...
        # ... and stop returned at the grace period, not at the round's end: nothing failed yet
        assert not logged(store, "send_failed") and silent.connections[0].closed is None
        silent.close()  # the PACS hangs up: that ends the round, and the thread
        assert sender.stop(grace=TIMEOUT_S)
    failed = [(e["attempts"], e["error"]) for e in logged(store, "send_failed")]
    assert failed == [(1, f"PACS@{LOOPBACK}:{silent.port} aborted the association")]
    assert not logged(store, "sender_error") and store.counts()["unsent"] == 1


def test_enhanced_ct_is_stored_and_queued_not_answered_and_dropped(tmp_path):
    _, files = ct_series(tmp_path / "series", seed=11)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(f) for f in files], series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1)
    store = Store(tmp_path / "state")
    log = EventLog(store.root / "log.jsonl", store.hash_uid, stream=None)
    options = ServeOptions(model=tmp_path, ae_title=NODE_AET, port=free_port(), send_to=Peer("PACS", LOOPBACK, 104),
                           state_dir=store.root, host=LOOPBACK)
    server = StorageServer(options, store, log)
    server.start()
    try:
        scu = AE(ae_title="PACS")
        scu.add_requested_context(LegacyConvertedEnhancedCTImageStorage)
        assoc = scu.associate(LOOPBACK, options.port, ae_title=NODE_AET)
        assert assoc.is_established
        status = assoc.send_c_store(enhanced)
        assoc.release()
    finally:
        server.stop()
    assert status.Status == 0x0000
    (claim,) = store.claim_due(quiet_seconds=0).claims
    assert claim.series_uid == enhanced.SeriesInstanceUID and len(claim.files) == 1
    assert int(pydicom.dcmread(claim.files[0]).NumberOfFrames) == len(files)
    assert [e["series"] for e in logged(store, "instance_received")] == [store.hash_uid(enhanced.SeriesInstanceUID)]
    assert not logged(store, "series_skipped")


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
        study_uid = image.metadata["dicom"]["StudyInstanceUID"]
        assert (ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID) == ("PID-7", "ACC-99", study_uid)
        assert "InstitutionName" not in ds and "OperatorsName" not in ds and ds.PatientBirthDate == ""
    assert_valid_dicom([seg, sc, sr], tmp_path / "dciodvfy")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"ichseg": free_port(), "ichseg-durable": free_port(), "ichseg-silent": free_port()}


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
    done = [e for e in node.events("case_done") if e["series"] == node.key(series_uid)]
    assert len(done) == 1 and {"read_s", "segment_s", "results_s", "since_quiet_end_s"} <= set(done[0])


@pytest.mark.slow
def test_a_tilted_series_comes_back_filed_in_its_study_with_seg_frames_on_its_source_slices(node, orthanc, tmp_path):
    from scanner_series import Acquisition

    folder = Acquisition(tilt_deg=-18.0).write(tmp_path / "tilted", patient_id="PID-T",
                                               attributes=dict(IDENTIFIERS))
    files = sorted(folder.glob("*.dcm"))
    orthanc.store_to("ichseg", orthanc.upload(files))
    source = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    first = next(iter(source.values()))
    results = wait_for_results(orthanc, first.StudyInstanceUID)
    seg, sc, sr = results["seg"][0], results["sc"][0], results["sr"][0]
    for ds in (seg, sc, sr):
        assert (ds.StudyInstanceUID, ds.PatientID) == (first.StudyInstanceUID, "PID-T")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    for item in seg.PerFrameFunctionalGroupsSequence:  # every frame on its source slice, as sent
        slice_ = source[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in slice_.ImagePositionPatient], atol=0.01)
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert np.allclose([float(v) for v in orientation], [float(v) for v in first.ImageOrientationPatient], atol=1e-4)
    assert {item.ReferencedSOPInstanceUID for item in sc.SourceImageSequence} <= set(source)
    done = [e for e in node.events("case_done") if e["series"] == node.key(first.SeriesInstanceUID)]
    assert len(done) == 1
    assert_valid_dicom([seg, sc, sr], tmp_path / "dciodvfy")


@pytest.mark.slow
def test_unchanged_resend_is_not_processed_again_but_a_new_instance_is(node, orthanc, tmp_path):
    _, files = ct_series(tmp_path / "series", seed=4)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    key = node.key(first.SeriesInstanceUID)
    orthanc_series = orthanc.upload(files[:-1])
    orthanc.store_to("ichseg", orthanc_series)
    assert len(wait_for_results(orthanc, first.StudyInstanceUID)["seg"]) == 1

    orthanc.store_to("ichseg", orthanc_series)  # the same instances again, answered before this returns
    with sqlite3.connect(f"file:{node.workspace / 'serve' / 'queue.sqlite'}?mode=ro", uri=True) as db:
        (state,) = db.execute("SELECT state FROM series WHERE uid = ?", (str(first.SeriesInstanceUID),)).fetchone()
    assert state == "done"  # not queued again: nothing will segment it a second time
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
def test_a_quiet_study_is_segmented_in_the_series_the_rules_choose_and_each_other_is_logged_skipped(
        node, orthanc, tmp_path, capsys):
    study_uid = generate_uid()
    variants = {"soft": {}, "thin": {"SliceThickness": "1", "SeriesNumber": 2},
                "bone": {"ConvolutionKernel": "BONE", "SeriesNumber": 3, "SeriesDescription": "Head bone"}}
    uids, study_id = {}, None
    for name, attributes in variants.items():
        _, files = ct_series(tmp_path / name, seed=12, StudyInstanceUID=study_uid, **attributes)
        uids[name] = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        study_id = orthanc.request("GET", f"/series/{orthanc.upload(files)}")["ParentStudy"]
    orthanc.store_to("ichseg", study_id)  # the whole study in one association
    keys = {name: node.key(uid) for name, uid in uids.items()}

    def logged(event: str, name: str) -> list[dict]:
        return [e for e in node.events(event) if e["series"] == keys[name]]

    results = wait_for_results(orthanc, study_uid)
    wait_until(lambda: logged("series_skipped", "thin") and logged("series_skipped", "bone"), "the skips")
    wait_until(lambda: "waiting 0" in node.status(capsys), "the study to be through")
    (started,) = [e for e in node.events("study_started") if e["study"] == node.key(study_uid)]
    assert (started["series"], started["waiting"]) == (3, 3)
    assert logged("series_chosen", "soft")[0]["reason"].startswith("it fits the rules and its slice thickness")
    assert logged("series_skipped", "thin")[0]["reason"].startswith("it fits the rules, but its slice thickness (1 mm)")
    assert logged("series_skipped", "bone")[0]["reason"] == (
        "a bone or lung reconstruction (kernel BONE, description 'Head bone'), not soft tissue")
    assert [len(logged("case_started", name)) for name in variants] == [1, 0, 0]
    assert results["seg"][0].ReferencedSeriesSequence[0].SeriesInstanceUID == uids["soft"]


@pytest.mark.slow
def test_with_all_series_every_eligible_series_of_the_study_is_segmented(tiny_model, tmp_path):
    from ichseg.segmentation.segmenter import Segmenter
    from ichseg.segmentation.settings import InferenceSettings

    store = Store(tmp_path / "state")
    study_uid = generate_uid()
    uids = {}
    variants = {"soft": {}, "thin": {"SliceThickness": "1"}, "bone": {"ConvolutionKernel": "BONE"}}
    for name, attributes in variants.items():
        _, files = ct_series(tmp_path / name, seed=13, StudyInstanceUID=study_uid, **attributes)
        for path in files:
            ds = pydicom.dcmread(path)
            store.add_instance(study_uid, ds.SeriesInstanceUID, ds.SOPInstanceUID, path.read_bytes())
        uids[name] = ds.SeriesInstanceUID
    log = EventLog(store.root / "log.jsonl", store.hash_uid, stream=None)
    segmenter = Segmenter.load(tiny_model, InferenceSettings(mirroring=False), device="cpu")
    worker = Worker(segmenter, store, log, SeriesSelection(target_thickness_mm=9.5), all_series=True)
    assert worker.process_due(quiet_seconds=0) and not worker.process_due(quiet_seconds=0)
    done = {e["series"] for e in logged(store, "case_done")}
    assert done == {store.hash_uid(uids["soft"]), store.hash_uid(uids["thin"])}
    (skipped,) = logged(store, "series_skipped")
    assert skipped["series"] == store.hash_uid(uids["bone"]) and "bone or lung reconstruction" in skipped["reason"]
    counts = store.counts()
    assert (counts["done"], counts["skipped"], counts["unsent"]) == (2, 1, 6)


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
    key = node.key(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    skipped = wait_until(lambda: [e for e in node.events("series_skipped") if e["series"] == key], "the skip")
    assert len(skipped) == 1 and "modality MR" in skipped[0]["reason"]
    assert not (node.workspace / "serve" / "instances" / key).exists()
    assert f"skipped {len(node.events('series_skipped'))}" in node.status(capsys)  # each logged once


@pytest.mark.slow
def test_series_failing_the_input_checks_is_logged_with_its_reason_and_the_node_goes_on(
        node, orthanc, tmp_path, capsys):
    _, files = ct_series(tmp_path / "gap", seed=7)
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    orthanc.store_to("ichseg", orthanc.upload(files[:5] + files[6:]))  # slice 6 lost on the way
    key = node.key(series_uid)
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
        assert "done 1" in status and "unsent 3" in status
        assert f"no connection to ORTHANC@{LOOPBACK}:{pacs_port}" in status

        with running_orthanc(tmp_path / "pacs", {}, dicom_port=pacs_port) as pacs:  # the PACS comes back
            results = wait_for_results(pacs, study_uid)
        assert [len(v) for v in results.values()] == [1, 1, 1]
        wait_until(lambda: "unsent 0" in durable.status(capsys), "the queue to empty")
        assert len(durable.events("case_done")) == 1  # processed once, across the kill
        assert min(e["time"] for e in durable.events("result_sent")) > failed[0]["time"]  # sent on a retry
    finally:
        durable.stop()


@pytest.mark.slow
def test_a_silent_pacs_holds_up_no_segmentation_and_gets_the_results_once_it_answers(
        tiny_model, orthanc, ports, tmp_path):
    """The first series' results wait on a PACS that takes the connection and never answers, and
    the second series is segmented meanwhile. The node's association timeout lies beyond every
    wait here, so the test, not a machine's speed, says when the wait ends: it hangs the PACS up
    once the second series is done. (The timeout itself ends a wait in the sender's tests.)"""
    def events_of(name: str, series: str) -> list[dict]:
        return [e for e in node.events(name) if e["series"] == node.key(series)]

    _, first = ct_series(tmp_path / "first", seed=8)
    _, second = ct_series(tmp_path / "second", seed=9)
    (a, a_study), (b, b_study) = ((ds.SeriesInstanceUID, ds.StudyInstanceUID) for ds in
                                  (pydicom.dcmread(files[0], stop_before_pixels=True) for files in (first, second)))
    with SilentListener(accept=1) as silent:  # takes one connection and never answers; refuses the rest
        node = Node(tiny_model, tmp_path / "ws", ports["ichseg-silent"], f"ORTHANC@{LOOPBACK}:{silent.port}",
                    options=("--acse-timeout", str(SILENT_ACSE_S)))
        node.start()
        try:
            orthanc.store_to("ichseg-silent", orthanc.upload(first))
            wait_until(lambda: silent.connections, "the node to connect to the silent PACS")
            orthanc.store_to("ichseg-silent", orthanc.upload(second))
            wait_until(lambda: events_of("case_done", b), "the second series to be segmented")
            # The first series' results still wait: the node has neither given up nor hung up.
            assert not events_of("send_failed", a) and silent.connections[0].closed is None
            silent.close()  # the PACS hangs up
            wait_until(lambda: events_of("send_failed", a), "the node to see the PACS hang up")
            with running_orthanc(tmp_path / "pacs", {}, dicom_port=silent.port) as pacs:  # a PACS that answers
                results = {study: wait_for_results(pacs, study) for study in (a_study, b_study)}
        finally:
            node.stop()

    assert node.events("node_starting")[0]["timeouts_s"]["association"] == SILENT_ACSE_S
    # The second series came in, and was segmented, after the node had connected for the first.
    (b_started,) = events_of("case_started", b)
    assert silent.connections[0].opened < b_started["time"]
    # The first series' results failed on the hang-up, and everything went once a PACS answered.
    hung_up = [e for e in events_of("send_failed", a) if e["attempts"] == 1]
    assert {e["kind"] for e in hung_up} == {"seg", "sc", "sr"}
    assert {e["error"] for e in hung_up} == {f"ORTHANC@{LOOPBACK}:{silent.port} aborted the association"}
    assert all(len(datasets) == 1 for study in results.values() for datasets in study.values())
    sent = node.events("result_sent")
    assert len(sent) == 6 and min(e["time"] for e in sent) > hung_up[0]["time"]
    assert node.events("node_stopped")[-1]["sender_stopped"] is True
