"""One finished series at a time: read it, check it, segment it, build its results.

A series that fails the input checks (a missing slice, a gantry tilt, …) or breaks anything else
is recorded as failed with its reason and the node goes on with the next one: a hospital node
must not fall over on one odd series.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ichseg.errors import IchsegError
from ichseg.serve.log import EventLog
from ichseg.serve.results import write_results
from ichseg.serve.store import Claim, Store

if TYPE_CHECKING:
    from ichseg.segmenter import Segmenter


class Worker:
    """Segments the queue's due series with a model folder loaded once."""

    def __init__(self, segmenter: Segmenter, store: Store, log: EventLog) -> None:
        self.segmenter, self.store, self.log = segmenter, store, log

    def process_due(self, quiet_seconds: float) -> bool:
        """Process the next series quiet for ``quiet_seconds``; False when none is due."""
        claim = self.store.claim_due(quiet_seconds)
        if claim is None:
            return False
        self.log.event("case_started", series=claim.series_uid, instances=len(claim.files),
                       generation=claim.generation, waited_s=round(time.time() - claim.quiet_end, 3))
        try:
            self._process(claim)
        except IchsegError as error:
            self._failed(claim, str(error))
        except Exception as error:  # noqa: BLE001 - an unforeseen series must not stop the node
            self._failed(claim, f"{type(error).__name__}: {error}")
        return True

    def _process(self, claim: Claim) -> None:
        from ichseg.io.dicom import load_dicom_series

        timings: dict[str, float] = {}
        started = time.perf_counter()
        image = load_dicom_series(self.store.series_folder(claim.series_uid))
        timings["read_s"] = time.perf_counter() - started
        segmentation = self.segmenter.segment(image)
        timings["segment_s"] = time.perf_counter() - started - timings["read_s"]
        paths = write_results(segmentation, self.store.results_folder(claim.series_uid, claim.generation))
        timings["results_s"] = time.perf_counter() - started - timings["read_s"] - timings["segment_s"]
        state = self.store.finish(claim, paths)
        self.log.event("case_done", series=claim.series_uid, generation=claim.generation, state=state,
                       volume_ml=round(segmentation.volume_ml, 3), n_models=segmentation.ensemble.get("n_models"),
                       **{k: round(v, 3) for k, v in timings.items()},
                       since_quiet_end_s=round(time.time() - claim.quiet_end, 3))

    def _failed(self, claim: Claim, reason: str) -> None:
        reason = self.log.redact(reason)  # input errors name the series by its UID
        state = self.store.fail(claim, reason)
        self.log.event("case_failed", series=claim.series_uid, generation=claim.generation, state=state,
                       reason=reason)
