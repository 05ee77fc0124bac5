"""The node's mouth: C-STORE of finished results to the PACS, in its own thread, retried with back-off.

Results wait in the queue as ``unsent`` until the PACS answers success. A refused association, a
network error, a timeout or a failure status counts an attempt and schedules the next one (5 s,
10 s, 20 s … up to 10 min by default), so a PACS that is down for the night gets everything in the
morning. Sending runs in a thread of its own, so a PACS that accepts the connection and then says
nothing holds up only the sending, never the segmentation, and every wait on it is bounded
(:class:`~ichseg.serve.config.Timeouts`). A result file that cannot be read (deleted, damaged) is
given up with its error: it could never be sent, and the next result goes on.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from ichseg.errors import first_line
from ichseg.serve.config import Peer, Retry, Timeouts
from ichseg.serve.log import EventLog
from ichseg.serve.store import PendingResult, Store

RESULT_CLASSES = (SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage)
#: How long stopping waits for a round in progress; a round still waiting on a silent PACS after
#: this is left to its timeouts (its results stay unsent and the next node sends them).
STOP_GRACE_S = 5.0


def _bound_writes(event: Any) -> None:
    """Give the new connection's socket the network timeout for writes too.

    pynetdicom clears the socket's timeout once connected and bounds only reads (with select), so
    a PACS that stops reading would hold a write, and the connection's thread, until the kernel
    gives up; with a timeout the write fails and pynetdicom closes the association.
    """
    event.assoc.dul.socket.socket.settimeout(event.assoc.network_timeout)


def read_result(result: PendingResult) -> Dataset:
    """The result's dataset, once its file is checked against the SHA-256 recorded when it was written.

    A truncated file can still parse (pydicom stops at the end of the file); the digest tells it.
    """
    data = result.path.read_bytes()
    if result.sha256 is not None and hashlib.sha256(data).hexdigest() != result.sha256:
        raise ValueError("the file changed since it was written (SHA-256 differs)")
    return pydicom.dcmread(io.BytesIO(data))


class Sender:
    """Sends due results to ``peer`` as ``ae_title``, one association per round.

    :meth:`send_due` is one round; :meth:`start` runs rounds every ``poll_seconds`` in a thread
    until :meth:`stop`.
    """

    def __init__(self, ae_title: str, peer: Peer, store: Store, log: EventLog, retry: Retry,
                 timeouts: Timeouts) -> None:
        self.peer, self.store, self.log, self.retry, self.timeouts = peer, store, log, retry, timeouts
        self.ae = AE(ae_title=ae_title)
        self.ae.connection_timeout = timeouts.connect
        self.ae.acse_timeout = timeouts.association
        self.ae.dimse_timeout = timeouts.dimse
        self.ae.network_timeout = timeouts.network
        for sop_class in RESULT_CLASSES:
            self.ae.add_requested_context(sop_class)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, poll_seconds: float) -> None:
        """Send due results every ``poll_seconds`` in a thread of its own."""
        self._thread = threading.Thread(target=self._run, args=(poll_seconds,), name="ichseg-sender", daemon=True)
        self._thread.start()

    def stop(self, grace: float = STOP_GRACE_S) -> bool:
        """End the thread after its current C-STORE; False when a round still waits after ``grace``."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(grace)
        return not self._thread.is_alive()

    def _run(self, poll_seconds: float) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception as error:  # noqa: BLE001 - whatever one round meets, the sender goes on
                self.log.event("sender_error", error=f"{type(error).__name__}: {first_line(error)}")
            self._stop.wait(poll_seconds)

    def send_due(self) -> int:
        """Send every result whose attempt is due; return how many the PACS took."""
        due = self.store.due_results()
        if not due:
            return 0
        self.log.event("sending", to=str(self.peer), results=len(due))
        assoc, failure = self._associate()
        if assoc is None:
            for result in due:
                self._failed(result, failure)
            return 0
        sent = 0
        try:
            for result in due:
                if self._stop.is_set():
                    break  # the rest stay due, for the next round or the next node
                sent += self._send(assoc, result)
        finally:
            assoc.release()
        return sent

    def _associate(self) -> tuple[Association | None, str]:
        """An established association with the PACS, or None and why not."""
        connected = threading.Event()

        def on_connected(event: Any) -> None:
            connected.set()
            _bound_writes(event)

        started = time.monotonic()
        assoc = self.ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title,
                                  evt_handlers=[(evt.EVT_CONN_OPEN, on_connected)])
        waited = time.monotonic() - started
        if assoc.is_established:
            return assoc, ""
        if assoc.is_rejected:
            return None, f"{self.peer} rejected the association"
        if not connected.is_set():
            timeout = self.timeouts.connect
            within = f" within the connect timeout ({timeout:g} s)" if waited >= timeout else ""
            return None, f"no connection to {self.peer}{within}"
        if waited >= self.timeouts.association:
            return None, (f"{self.peer} accepted the connection but did not answer the association request "
                          f"within the association timeout ({self.timeouts.association:g} s)")
        return None, f"{self.peer} aborted the association"

    def _send(self, assoc: Association, result: PendingResult) -> int:
        try:
            dataset = read_result(result)
        except Exception as error:  # noqa: BLE001 - deleted, damaged, not DICOM: it can never be sent
            self._give_up(result, f"{result.path}: unreadable ({first_line(error)})")
            return 0
        if not assoc.is_established:
            self._failed(result, f"{self.peer} ended the association")
            return 0
        started = time.monotonic()
        try:
            status = assoc.send_c_store(dataset)
        except (OSError, RuntimeError, ValueError) as error:
            self._failed(result, first_line(error))
            return 0
        code = getattr(status, "Status", None)
        if code is None:
            timed_out = time.monotonic() - started >= self.timeouts.dimse
            self._failed(result, f"no answer to the C-STORE within the DIMSE timeout ({self.timeouts.dimse:g} s)"
                         if timed_out else "the association ended before the C-STORE was answered")
            return 0
        if code != 0x0000:
            self._failed(result, f"status 0x{code:04X}")
            return 0
        self.store.mark_sent(result)
        self.log.event("result_sent", series=result.series_uid, kind=result.kind, to=str(self.peer),
                       seconds_since_ready=round(time.time() - result.ready, 3))
        return 1

    def _failed(self, result: PendingResult, error: str) -> None:
        delay = self.retry.delay(result.attempts + 1)
        error = self.log.redact(error)
        self.store.mark_unsent(result, error, delay)
        self.log.event("send_failed", series=result.series_uid, kind=result.kind, error=error,
                       attempts=result.attempts + 1, retry_in_s=delay)

    def _give_up(self, result: PendingResult, error: str) -> None:
        error = self.log.redact(error)
        self.store.give_up(result, error)
        self.log.event("result_unsendable", series=result.series_uid, kind=result.kind, error=error,
                       attempts=result.attempts + 1)
