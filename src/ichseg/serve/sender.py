"""The node's mouth: C-STORE of finished results to the PACS, retried with back-off.

Results wait in the queue as ``unsent`` until the PACS answers success. A refused association, a
network error or a failure status counts an attempt and schedules the next one (5 s, 10 s, 20 s …
up to 10 min by default), so a PACS that is down for the night gets everything in the morning.
"""

from __future__ import annotations

import time

import pydicom
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from ichseg.serve.config import Peer, Retry
from ichseg.serve.log import EventLog
from ichseg.serve.store import PendingResult, Store

RESULT_CLASSES = (SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage)


class Sender:
    """Sends due results to ``peer`` as ``ae_title``, one association per round."""

    def __init__(self, ae_title: str, peer: Peer, store: Store, log: EventLog, retry: Retry) -> None:
        self.peer, self.store, self.log, self.retry = peer, store, log, retry
        self.ae = AE(ae_title=ae_title)
        for sop_class in RESULT_CLASSES:
            self.ae.add_requested_context(sop_class)

    def send_due(self) -> int:
        """Send every result whose attempt is due; return how many the PACS took."""
        due = self.store.due_results()
        if not due:
            return 0
        assoc = self.ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title)
        if not assoc.is_established:
            for result in due:
                self._failed(result, f"no association with {self.peer}")
            return 0
        sent = 0
        try:
            for result in due:
                sent += self._send(assoc, result)
        finally:
            assoc.release()
        return sent

    def _send(self, assoc: Association, result: PendingResult) -> int:
        try:
            status = assoc.send_c_store(pydicom.dcmread(result.path))
        except (OSError, RuntimeError, ValueError) as error:
            self._failed(result, str(error))
            return 0
        code = getattr(status, "Status", None)
        if code != 0x0000:
            self._failed(result, "no answer" if code is None else f"status 0x{code:04X}")
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
