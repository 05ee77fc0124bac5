"""The node's ear: a pynetdicom Storage SCP that keeps CT images and turns away the rest.

Only the calling AE titles the node was given are accepted; pynetdicom rejects any other at
association, before a byte of image data is sent. Every storage SOP class is negotiated, so that
a PACS sending a whole study does not fail on its MR or dose report: those instances are
answered with success, not kept, and their series logged once as skipped with the reason.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from ichseg.serve.config import ServeOptions
from ichseg.serve.log import EventLog
from ichseg.serve.store import Store

SUCCESS = 0x0000
#: C-STORE failure statuses: out of resources, and cannot understand.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
#: The CT storage classes kept: single-frame slices, and a whole series in one multi-frame file.
CT_CLASSES = (CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage)


def screen(ds: Dataset) -> str | None:
    """Why the node will not segment this instance's series, or None when it will."""
    modality = str(ds.get("Modality", "") or "none")
    if modality != "CT":
        return f"modality {modality}: only CT is segmented"
    sop_class = UID(str(ds.get("SOPClassUID", "")))
    if sop_class not in CT_CLASSES:
        return (f"{sop_class.name or 'no SOP class'}: only CT Image Storage and (Legacy Converted) Enhanced CT "
                "are segmented")
    if "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]:
        return "localizer (scout) images"
    return None


class StorageServer:
    """Receives instances into ``store`` while running; :meth:`stop` closes the port."""

    def __init__(self, options: ServeOptions, store: Store, log: EventLog) -> None:
        self.options, self.store, self.log = options, store, log
        self.ae = AE(ae_title=options.ae_title)
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self.ae.require_calling_aet = list(options.accepted_callers)
        self._server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ACCEPTED, self._on_accepted)]
        self._server = self.ae.start_server((self.options.host, self.options.port), block=False,
                                            evt_handlers=handlers)
        self.log.event("listening", ae_title=self.options.ae_title, port=self.options.port,
                       accepted_callers=list(self.options.accepted_callers))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_accepted(self, event: Any) -> None:
        self.log.event("association_accepted", calling_ae=event.assoc.requestor.ae_title)

    def _on_rejected(self, event: Any) -> None:
        self.log.event("association_rejected", calling_ae=event.assoc.requestor.ae_title,
                       reason="calling AE title not allowed")

    def _on_store(self, event: Any) -> int:
        """Keep a CT instance (file first, then the queue); skip anything else with its reason."""
        try:
            ds = event.dataset
            series_uid, sop_uid = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            study_uid = str(ds.get("StudyInstanceUID", "") or "") or None
        except Exception as error:  # noqa: BLE001 - a dataset pydicom cannot parse must not stop the node
            self.log.event("instance_refused", reason=f"unreadable dataset: {error}")
            return CANNOT_UNDERSTAND
        reason = screen(ds)
        if reason is not None:
            if self.store.skip_series(study_uid, series_uid, reason):
                self.log.event("series_skipped", series=series_uid, study=study_uid, reason=reason)
            return SUCCESS
        try:
            if self.store.add_instance(study_uid, series_uid, sop_uid, event.encoded_dataset()):
                self.log.event("instance_received", series=series_uid, sop=sop_uid)
        except OSError as error:
            self.log.event("instance_not_stored", series=series_uid, sop=sop_uid, reason=str(error))
            return OUT_OF_RESOURCES
        return SUCCESS
