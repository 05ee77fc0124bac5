"""Batch prediction as a Ray Data pipeline: thousands of scans over the machines of a cluster.

Three stages, one case per row and per block: reading and preprocessing on CPU workers
(:func:`ichseg.segmenter.read_case` with a networks-free :class:`ichseg.model_set.CasePreparer`),
the ensemble on a pool of model actors, each holding the folder's networks, loaded once, on its
GPU (or CPUs) (:meth:`ichseg.segmenter.Segmenter.ensemble_case`), and finishing and writing on CPU
workers (:func:`ichseg.segmenter.write_case`). These are the local route's own steps, so the files
are the same; the batch's start and end (resume, CSV, overview) are the local route's too
(:func:`ichseg.segmenter.start_batch`, :func:`ichseg.segmenter.end_batch`). Ray Data streams the
rows with a cap on the tasks of each stage, so a stage that runs ahead waits (back-pressure) and
memory does not grow with the number of cases. A case that fails is listed and the others go on.

Cases travel between stages as pickled bytes of plain data (arrays, dicts, CPU tensors), so the
workspace and the output folder must be on storage every node sees.
"""

from __future__ import annotations

import functools
import json
import logging
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ichseg.distributed.cluster import RayAddress, cluster_cpus, cluster_gpus, connect
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import IchsegError
from ichseg.io.inputs import InputScan
from ichseg.progress import make_progress
from ichseg.report.options import OutputOptions
from ichseg.run_manifest import Run
from ichseg.segmenter import (
    PredictionResult,
    Segmenter,
    end_batch,
    folder_rule,
    read_case,
    start_batch,
    write_case,
)

#: CPUs per model actor on a cluster without GPUs, by default: torch's threads share them, and each
#: actor holds every network of the folder in memory, so many small actors would cost memory.
CPUS_PER_ACTOR = 8

#: Tasks of a CPU stage in flight per model actor: enough to keep the actors fed, few enough that
#: cases waiting between stages stay few.
_CPU_TASKS_PER_ACTOR = 2


@dataclass(frozen=True)
class ModelRequest:
    """What a worker needs to load the model set: the folder, the models, the inference settings."""

    model_dir: Path
    groups: tuple[str, ...] | None
    folds: tuple[int | str, ...] | None
    ensemble: EnsembleSpec
    mirroring: bool = True
    step_size: float = 0.5
    postprocess: bool = True
    verbose: bool = False

    def load(self, device: str) -> Segmenter:
        return Segmenter.load(self.model_dir, device=device, groups=self.groups, folds=self.folds,
                              ensemble=self.ensemble, mirroring=self.mirroring, step_size=self.step_size,
                              postprocess=self.postprocess, verbose=self.verbose)


@dataclass(frozen=True)
class CaseSettings:
    """How every case is read and written."""

    output_dir: Path
    options: OutputOptions
    series: str | None = None
    accept_intensities: bool = False
    allow_gaps: bool = False


def predict_on_ray(model: ModelRequest, scan: InputScan, run: Run, settings: CaseSettings, *,
                   address: RayAddress = None, device: str = "auto", workers: int | None = None,
                   progress: bool = True) -> PredictionResult:
    """Segment ``scan``'s cases on a Ray cluster into ``run``'s folder; the local route's result.

    ``workers``: model actors (default: one per GPU of the cluster, else one per
    :data:`CPUS_PER_ACTOR` CPUs); ``device`` "cpu" keeps the networks on CPUs even where the
    cluster has GPUs.
    """
    ray = connect(address)
    result, cases, options = start_batch(scan, run, settings.options)
    if cases:
        run.start()
        settings = replace(settings, output_dir=run.output_dir, options=options)
        rows = _pipeline(ray, model, cases, settings, device, workers).iter_rows()
        _collect(rows, cases, result, progress)
    return end_batch(result, run)


def _pipeline(ray: ModuleType, model: ModelRequest, cases: Sequence[Path], settings: CaseSettings,
              device: str, workers: int | None) -> Any:
    """The Ray Data pipeline: read on CPUs, the ensemble on the model actors, write on CPUs."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # ichseg shows its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on every run; errors still raise
    gpus = 0 if device == "cpu" else cluster_gpus(ray)
    if device == "cuda" and not gpus:
        raise IchsegError("--device cuda: the Ray cluster has no GPU")
    cpus = cluster_cpus(ray)
    actors = workers or (gpus if gpus else max(1, cpus // CPUS_PER_ACTOR))
    if gpus:
        actor_resources: dict[str, float] = {"num_gpus": 1, "num_cpus": 1}
        task_cpus = 1.0
    else:  # leave half a CPU to the reading and writing tasks, or they could never start
        share = (cpus - 0.5) / actors
        actor_resources = {"num_cpus": float(int(share)) if share >= 1 else share}
        task_cpus = 0.5
    in_flight = _CPU_TASKS_PER_ACTOR * actors
    items = [{"index": index, "path": str(path)} for index, path in enumerate(cases)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    cpu_stage = {"fn_kwargs": {"model": model, "settings": settings}, "num_cpus": task_cpus,
                 "compute": ray.data.TaskPoolStrategy(size=in_flight)}
    dataset = dataset.map(_read_stage, **cpu_stage)
    dataset = dataset.map(_EnsembleStage, fn_constructor_kwargs={"model": model, "device": "cuda" if gpus else "cpu"},
                          compute=ray.data.ActorPoolStrategy(size=actors), **actor_resources)
    return dataset.map(_write_stage, **cpu_stage)


def _collect(rows: Iterable[dict[str, Any]], cases: Sequence[Path], result: PredictionResult,
             progress: bool) -> None:
    """The pipeline's rows into ``result``, in the inputs' order."""
    finished = []
    with make_progress(progress) as bar:
        task = bar.add_task(f"Predicting {len(cases)} case(s) on Ray", total=len(cases))
        for row in rows:
            finished.append(row)
            bar.advance(task)
    for row in sorted(finished, key=lambda row: row["index"]):
        if row["error"]:
            result.failures.append((cases[row["index"]].name, row["error"]))
            continue
        result.warnings.extend(json.loads(row["warnings"]))
        result.cases.append(pickle.loads(row["payload"]))


@functools.cache
def _preparer(model_dir: Path, groups: tuple[str, ...] | None, folds: tuple[int | str, ...] | None) -> Any:
    """The model set's preprocessing, once per worker process (no network is loaded)."""
    from ichseg.model_set import CasePreparer
    from ichseg.models import ModelFolder

    folder = ModelFolder.open(model_dir)
    return CasePreparer(folder, folder.select(groups, folds))


@functools.cache
def _rule(model: ModelRequest) -> Any:
    """The folder's postprocessing rule, once per worker process (None: none applies)."""
    from ichseg.models import ModelFolder

    return folder_rule(ModelFolder.open(model.model_dir), model.postprocess)


def _read_stage(row: dict[str, Any], *, model: ModelRequest, settings: CaseSettings) -> dict[str, Any]:
    try:
        preparer = _preparer(model.model_dir, model.groups, model.folds)
        warnings, loaded = read_case(Path(row["path"]), prepare=preparer.prepare, series=settings.series,
                                     accept_intensities=settings.accept_intensities,
                                     allow_gaps=settings.allow_gaps)
    except IchsegError as error:
        return _failed(row, error)
    return {**row, "warnings": json.dumps(warnings), "payload": pickle.dumps(loaded, protocol=5), "error": ""}


class _EnsembleStage:
    """A model actor: the networks loaded once, then every case that reaches it."""

    def __init__(self, model: ModelRequest, device: str) -> None:
        self.segmenter = model.load(device)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["error"]:
            return row
        try:
            ensembled = self.segmenter.ensemble_case(*pickle.loads(row["payload"]))
        except IchsegError as error:
            return _failed(row, error)
        return {**row, "payload": pickle.dumps(ensembled, protocol=5)}


def _write_stage(row: dict[str, Any], *, model: ModelRequest, settings: CaseSettings) -> dict[str, Any]:
    if row["error"]:
        return row
    try:
        outputs = write_case(pickle.loads(row["payload"]), _rule(model), settings.output_dir, settings.options)
    except IchsegError as error:
        return _failed(row, error)
    return {**row, "payload": pickle.dumps(outputs, protocol=5)}


def _failed(row: dict[str, Any], error: IchsegError) -> dict[str, Any]:
    return {"index": row["index"], "path": row["path"], "warnings": "[]", "payload": b"", "error": str(error)}
