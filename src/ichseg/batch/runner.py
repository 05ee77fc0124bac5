"""Running a batch in this process: cases read ahead, the networks once per case, outputs written behind.

A case that fails is listed and the others go on; nothing is written unless a case succeeds, and
the batch's CSV and overview cover every case, those a resumed batch found complete included.
The batch's start and end (:func:`start_batch`, :func:`end_batch`) and a case's last stage
(:func:`write_case`) are shared with the Ray route (:mod:`ichseg.distributed.ray_prediction`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichseg.batch.manifest import Run, open_run, run_manifest
from ichseg.batch.plan import BatchPlan
from ichseg.batch.read_ahead import ReadAhead
from ichseg.errors import IchsegError
from ichseg.io.ctimage import CTImage
from ichseg.io.inputs import CaseInput, InputScan, ReadOptions, scan_inputs
from ichseg.model.folder import ModelFolder, TrainedModel
from ichseg.progress import make_progress
from ichseg.report.options import OutputOptions
from ichseg.segmentation.result import EnsembledCase
from ichseg.segmentation.segmenter import Segmenter, finish_case, read_case

if TYPE_CHECKING:  # the report modules load in the writer thread, during the first case's networks
    from ichseg.report.outputs import CaseOutputs
    from ichseg.segmentation.segmenter import FolderRule

#: How many segmented cases may wait for the background writer before prediction waits for it.
_WRITES_AHEAD = 2


@dataclass
class PredictionResult:
    """A batch: ``cases`` written now, ``skipped`` found complete (resume), ``failures`` as
    ``(entry name, one-line message)``, ``warnings`` one line each (unusual intensities)."""

    output_dir: Path
    cases: list[CaseOutputs] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[CaseOutputs] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchModels:
    """Where a batch's networks come from: ``load`` gives the segmenter (called once the first
    case is being read, so that loading overlaps reading) and ``prepare`` preprocesses a
    canonical CT for them without needing them."""

    load: Callable[[], Segmenter]
    prepare: Callable[[CTImage], Any]


def run_batch(plan: BatchPlan, *, device: str = "auto", progress: bool = True) -> PredictionResult:
    """Segment a checked batch (:func:`ichseg.batch.plan.plan_batch`) on ``device`` of this machine."""
    models = BatchModels(partial(Segmenter.load, plan.folder.path, plan.settings, device=device),
                         first_use_preparer(plan.folder, plan.models))
    return segment_batch(models, plan.scan, plan.run, plan.options, plan.read, progress=progress)


def predict_folder(segmenter: Segmenter, inputs: str | os.PathLike | Sequence[Path] | InputScan,
                   output_dir: str | os.PathLike, options: OutputOptions = OutputOptions(),
                   read: ReadOptions = ReadOptions(), *, progress: bool = True) -> PredictionResult:
    """Segment every case of ``inputs`` (a path for :func:`ichseg.io.inputs.scan_inputs`, or its
    result, or the paths of the cases) with a loaded :class:`Segmenter` and write its files into
    ``output_dir``, which must hold no results unless ``options.overwrite``; the files are those
    ``ichseg predict`` writes."""
    scan = inputs if isinstance(inputs, InputScan) else (
        scan_inputs(inputs) if isinstance(inputs, (str, os.PathLike))
        else InputScan([CaseInput(Path(path)) for path in inputs]))
    run = open_run(output_dir, run_manifest(None, segmenter.ensemble, options, read.manifest()),
                   overwrite=options.overwrite)
    return segment_batch(BatchModels(lambda: segmenter, segmenter.models.prepare), scan, run, options, read,
                         progress=progress)


def segment_batch(models: BatchModels, scan: InputScan, run: Run, options: OutputOptions, read: ReadOptions,
                  *, progress: bool = True) -> PredictionResult:
    """The batch's cases through read-ahead, the segmenter and a background writer (at most a few
    finished cases wait for it, so memory stays bounded)."""
    result, cases, options = start_batch(scan, run, options)
    if not cases:
        return end_batch(result, run)
    with ReadAhead(cases, partial(read_case, prepare=models.prepare, read=read)) as reading, \
            make_progress(progress) as bar, ThreadPoolExecutor(1, thread_name_prefix="ichseg-write") as writer:
        segmenter = models.load()
        task = bar.add_task(f"Predicting with {len(segmenter.models)} model(s)", total=len(cases))
        writing: list[tuple[CaseInput, Future[CaseOutputs]]] = []
        for case, reading_case in reading:
            try:
                warnings, loaded = reading_case.result()
                ensembled = segmenter.ensemble_case(*loaded)
            except IchsegError as error:
                result.failures.append((case.name, str(error)))
                bar.advance(task)
                continue
            result.warnings.extend(warnings)
            run.start()
            written = writer.submit(write_case, ensembled, segmenter.rule, run.output_dir, options)
            written.add_done_callback(lambda _: bar.advance(task))
            writing.append((case, written))
            if len(writing) > _WRITES_AHEAD:  # cases waiting to be written hold memory: keep them few
                wait([writing[-_WRITES_AHEAD - 1][1]])
        for case, written in writing:
            try:
                result.cases.append(written.result())
            except IchsegError as error:
                result.failures.append((case.name, str(error)))
    return end_batch(result, run)


def write_case(case: EnsembledCase, rule: FolderRule | None, output_dir: Path,
               options: OutputOptions) -> CaseOutputs:
    """A case's last stage: :func:`~ichseg.segmentation.segmenter.finish_case`, then its files."""
    from ichseg.report.outputs import write_segmentation

    return write_segmentation(finish_case(case, rule), output_dir, options)


def start_batch(scan: InputScan, run: Run,
                options: OutputOptions) -> tuple[PredictionResult, list[CaseInput], OutputOptions]:
    """A batch's result so far (the inputs' problems, the cases a resumed run found complete),
    the cases still to segment, and the output options to write them with."""
    if run.resumed:  # only unfinished cases are written: their leftovers may be replaced
        options = replace(options, overwrite=True)
    result = PredictionResult(run.output_dir, failures=list(scan.problems), skipped=_finished_outputs(run))
    return result, [case for case in scan.cases if case.case_name not in run.done], options


def end_batch(result: PredictionResult, run: Run) -> PredictionResult:
    """The batch's CSV and overview over every case (skipped ones included), or nothing at all
    when no case succeeded."""
    from ichseg.report.outputs import write_batch_outputs

    if result.cases or result.skipped:
        every_case = sorted(result.skipped + result.cases, key=lambda case: case.name)
        write_batch_outputs(every_case, result.failures, run.output_dir, overwrite=True)
    run.finish(succeeded=bool(result.cases))
    return result


def first_use_preparer(folder: ModelFolder, models: Sequence[TrainedModel]) -> Callable[[CTImage], Any]:
    """The models' preprocessing (:class:`ichseg.model.networks.CasePreparer`), made by its first
    call, in the reading thread: torch and nnU-Net's preprocessing load there while the networks load."""
    @cache
    def preparer() -> Any:
        from ichseg.model.networks import CasePreparer

        return CasePreparer(folder, models)

    return lambda image: preparer().prepare(image)


def _finished_outputs(run: Run) -> list[CaseOutputs]:
    """The outputs of the cases a resumed batch found complete, from their JSON."""
    if not run.done:  # the report modules are imported by the writer, in the background
        return []
    from ichseg.report.outputs import CaseOutputs
    from ichseg.report.summary import CaseSummary

    return [CaseOutputs(name, {kind: run.output_dir / file for kind, file in summary["outputs"].items()},
                        CaseSummary.from_json(summary)) for name, summary in run.done.items()]
