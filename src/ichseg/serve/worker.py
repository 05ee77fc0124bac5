"""One quiet study at a time: choose its series by the series rules, segment them, build the results.

The series rules (:mod:`ichseg.io.series_selection`, the same ``ichseg predict`` applies to a
study folder) see every series of the study the node holds and choose the one to segment (every
eligible one with ``all_series``); each other waiting series is recorded as skipped with the
rules' reason. A chosen series that fails the input checks (a missing slice, …) or breaks
anything else is recorded as failed with its reason and the node goes on with the next one: a
hospital node must not fall over on one odd series.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ichseg.errors import IchsegError
from ichseg.io.series_selection import SeriesSelection, choose_series
from ichseg.serve.log import EventLog
from ichseg.serve.results import write_results
from ichseg.serve.store import Claim, Store, StudyClaim

if TYPE_CHECKING:
    from ichseg.io.series_selection import SeriesInfo
    from ichseg.segmentation.segmenter import Segmenter

#: What the rules made of a series: segment it, skip it (another was chosen, or it fits no rule),
#: or fail it (its headers could not be read).
CHOSEN, SKIPPED, UNREADABLE = "chosen", "skipped", "unreadable"


class Worker:
    """Segments the queue's due studies with a model folder loaded once."""

    def __init__(self, segmenter: Segmenter, store: Store, log: EventLog, selection: SeriesSelection,
                 all_series: bool = False) -> None:
        self.segmenter, self.store, self.log = segmenter, store, log
        self.selection, self.all_series = selection, all_series

    def process_due(self, quiet_seconds: float) -> bool:
        """Process the next study quiet for ``quiet_seconds``; False when none is due."""
        study = self.store.claim_due(quiet_seconds)
        if study is None:
            return False
        self.log.event("study_started", study=study.study_uid, series=len(study.held), waiting=len(study.claims),
                       waited_s=round(time.time() - study.quiet_end, 3))
        verdicts = self._choose(study)
        for claim in study.claims:
            outcome, reason = verdicts.get(claim.series_uid, (UNREADABLE, "no readable instance"))
            if outcome == CHOSEN:
                self.log.event("series_chosen", series=claim.series_uid, study=study.study_uid, reason=reason)
                self._segment(claim)
            elif outcome == UNREADABLE:
                self._failed(claim, reason)
            else:
                reason = self.log.redact(reason)
                state = self.store.pass_over(claim, reason)
                self.log.event("series_skipped", series=claim.series_uid, study=study.study_uid, state=state,
                               reason=reason)
        return True

    def _choose(self, study: StudyClaim) -> dict[str, tuple[str, str]]:
        """What the rules make of each series the study holds: (outcome, why), by UID."""
        from ichseg.io.dicom import list_series

        infos: list[SeriesInfo] = []
        verdicts: dict[str, tuple[str, str]] = {}
        for uid, files in study.held.items():
            try:
                infos.extend(s for s in list_series(files[0].parent) if s.uid == uid)
            except IchsegError as error:
                verdicts[uid] = (UNREADABLE, str(error))
        choice = choose_series(infos, self.selection.rules, self.selection.target_thickness_mm, self.all_series)
        verdicts.update({v.series.uid: (CHOSEN if v.chosen else SKIPPED, v.reason) for v in choice.verdicts})
        return verdicts

    def _segment(self, claim: Claim) -> None:
        self.log.event("case_started", series=claim.series_uid, instances=len(claim.files),
                       generation=claim.generation, waited_s=round(time.time() - claim.quiet_end, 3))
        try:
            self._process(claim)
        except IchsegError as error:
            self._failed(claim, str(error))
        except Exception as error:  # noqa: BLE001 - an unforeseen series must not stop the node
            self._failed(claim, f"{type(error).__name__}: {error}")

    def _process(self, claim: Claim) -> None:
        from ichseg.io.dicom import load_dicom_series

        timings: dict[str, float] = {}
        started = time.perf_counter()
        image = load_dicom_series(claim.files[0].parent)
        timings["read_s"] = time.perf_counter() - started
        segmentation = self.segmenter.segment(image)
        timings["segment_s"] = time.perf_counter() - started - timings["read_s"]
        paths = write_results(segmentation, self.store.results_folder(claim.series_uid, claim.generation))
        timings["results_s"] = time.perf_counter() - started - timings["read_s"] - timings["segment_s"]
        state = self.store.finish(claim, paths)
        self.log.event("case_done", series=claim.series_uid, generation=claim.generation, state=state,
                       volume_ml=round(segmentation.volume_ml, 3), n_models=segmentation.ensemble.n_models,
                       **{k: round(v, 3) for k, v in timings.items()},
                       since_quiet_end_s=round(time.time() - claim.quiet_end, 3))

    def _failed(self, claim: Claim, reason: str) -> None:
        reason = self.log.redact(reason)  # input errors name the series by its UID
        state = self.store.fail(claim, reason)
        self.log.event("case_failed", series=claim.series_uid, generation=claim.generation, state=state,
                       reason=reason)

