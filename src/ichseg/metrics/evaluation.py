"""Evaluating folders of predicted masks against reference masks, case by case, in parallel.

This module computes; :mod:`ichseg.metrics.writing` puts the results into files.

Cases are matched by name (the file name without its image extension): a reference without a
prediction is an error (:class:`InputError`, raised before any case is evaluated, so a summary
never averages over the easy cases only) unless ``missing="empty"`` scores it as an empty
prediction, as the organizers' script scores an empty mask; a prediction without a reference is
listed as extra; nothing is guessed.
A case that cannot be evaluated (unreadable file, different shape, spacing or orientation,
values outside the classes) is listed as a failure with a one-line reason, and the other cases
go on. Spacing is taken from the reference, as the INSTANCE organizers took it from the label file.

Masks are binary unless their classes are named (:mod:`ichseg.metrics.classes`). Label maps of
several hemorrhage classes are scored for any hemorrhage (the rows, exactly the binary metrics
of ``mask > 0``) and per class (the class rows, where a class in neither mask is not scored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ichseg.errors import IchsegError, InputError
from ichseg.io.ctimage import CTImage, case_name
from ichseg.io.image import load_image
from ichseg.io.nifti import is_image_file
from ichseg.labels import LabelScheme
from ichseg.metrics.case import (
    DEFAULT_NSD_TOLERANCE_MM,
    METRICS,
    case_metrics,
    check_tolerance,
    metrics_by_class,
)
from ichseg.metrics.classes import EvaluationLabels, find_label_scheme, label_map
from ichseg.metrics.ranking import rank_class, rank_methods
from ichseg.metrics.summary import is_scored, summarize
from ichseg.progress import progress_bar

PathLike = str | os.PathLike


@dataclass
class Evaluation:
    """Per-case metrics of one set of predictions against one set of references.

    ``rows`` hold ``case`` and the values of :func:`~ichseg.metrics.case_metrics`, sorted by
    case (for label maps: of any hemorrhage); ``failures`` are ``(case, reason)``; ``missing``
    names references without a prediction, ``extra`` predictions without a reference.
    ``labels`` are the masks' classes (None: binary masks whose classes nobody named); with
    several hemorrhage classes, ``class_rows`` hold each class's rows, a row per evaluated case,
    whose values are None where the class is in neither mask.
    """

    pred: Path
    ref: Path
    nsd_tolerance_mm: float
    rows: list[dict[str, object]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    labels: EvaluationLabels | None = None
    class_rows: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when at least one case was evaluated and none failed."""
        return bool(self.rows) and not self.failures

    @property
    def is_multiclass(self) -> bool:
        return self.labels is not None and self.labels.is_multiclass

    def summary(self, metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict]:
        return summarize(self.rows, metrics)

    def scored_rows(self, name: str) -> list[dict[str, object]]:
        """One class's rows of the cases where it was scored (in one mask or both)."""
        return [row for row in self.class_rows.get(name, []) if is_scored(row)]

    def class_summaries(self, metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict]:
        """Per class: the cases scored and not (the class in neither mask), and the summary of
        the scored ones."""
        summaries = {}
        for name, rows in self.class_rows.items():
            scored = self.scored_rows(name)
            summaries[name] = {"n_scored": len(scored),
                               "absent_cases": [str(row["case"]) for row in rows if not is_scored(row)],
                               "metrics": summarize(scored, metrics)}
        return summaries


@dataclass
class Comparison:
    """Several prediction folders evaluated against one reference, and their INSTANCE ranking."""

    ref: Path
    evaluations: dict[str, Evaluation]
    ranking: list[dict[str, object]]
    class_rankings: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    """With several hemorrhage classes: the ranking on each class (:func:`rank_class`)."""

    @property
    def ok(self) -> bool:
        return all(evaluation.ok for evaluation in self.evaluations.values())

    @property
    def results(self) -> dict[str, list[dict[str, object]]]:
        """Per-case rows by method name, the input of the summary and ranking functions."""
        return {name: evaluation.rows for name, evaluation in self.evaluations.items()}

    def class_results(self, name: str) -> dict[str, list[dict[str, object]]]:
        """One class's rows by method name, only the cases where the method scored it."""
        return {method: evaluation.scored_rows(name) for method, evaluation in self.evaluations.items()}


@dataclass(frozen=True)
class MaskPair:
    """A predicted mask and its reference, under the case's name."""

    name: str
    pred: Path | None  # None: no prediction, scored as an empty mask
    ref: Path


def evaluate_folders(pred_dir: PathLike, ref_dir: PathLike, *,
                     nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                     workers: int | None = None, progress: bool = True,
                     missing: str = "error",
                     labels: LabelScheme | EvaluationLabels | None = None) -> Evaluation:
    """Metrics of every prediction with a reference of the same name (or of one pair of files).
    A reference without a prediction raises :class:`InputError` unless ``missing="empty"``.

    ``labels`` names the masks' classes; by default they are read from a ``labels.json`` or
    ``dataset.json`` beside the references, and without one the masks must be binary.
    Cases run in a pool of ``workers`` processes (default: one per CPU core, at most one per
    case); ``progress`` reports the cases done on stderr (:mod:`ichseg.progress`).
    """
    classes = resolve_labels(ref_dir, labels)
    evaluation, pairs = _plan(pred_dir, ref_dir, nsd_tolerance_mm, missing, classes)
    _fill([(evaluation, pairs)], workers, progress)
    return evaluation


def compare_folders(preds: Sequence[PathLike], ref: PathLike, *,
                    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, workers: int | None = None,
                    progress: bool = True, missing: str = "error",
                    labels: LabelScheme | EvaluationLabels | None = None) -> Comparison:
    """Evaluate several prediction folders against one reference, in one pool, and rank them the
    INSTANCE way (:func:`~ichseg.metrics.rank_methods`): on any hemorrhage and, for label maps,
    on each class. Method names are the folder names; ``labels`` as in :func:`evaluate_folders`."""
    names = method_names(preds)
    classes = resolve_labels(ref, labels)
    plans = [_plan(path, ref, nsd_tolerance_mm, missing, classes) for path in preds]
    _fill(plans, workers, progress)
    evaluations = {name: evaluation for name, (evaluation, _) in zip(names, plans, strict=True)}
    results = {name: evaluation.rows for name, evaluation in evaluations.items()}
    ranking = rank_methods(results) if any(results.values()) else []
    return Comparison(Path(ref), evaluations, ranking, _class_rankings(evaluations))


def _class_rankings(evaluations: dict[str, Evaluation]) -> dict[str, list[dict[str, object]]]:
    """The ranking on each class that some method or the reference has in some case."""
    class_names = next(iter(evaluations.values())).class_rows
    rankings = {name: rank_class({method: evaluation.class_rows[name]
                                  for method, evaluation in evaluations.items()})
                for name in class_names}
    return {name: ranking for name, ranking in rankings.items() if ranking}


def resolve_labels(ref: PathLike, labels: LabelScheme | EvaluationLabels | None
                   ) -> EvaluationLabels | None:
    """The classes given, else those named beside the references, else None (binary masks)."""
    if isinstance(labels, LabelScheme):
        return EvaluationLabels(labels, "the labels given")
    return labels if labels is not None else find_label_scheme(Path(ref))


def method_names(preds: Sequence[PathLike]) -> list[str]:
    """The folder names of ``preds``, which name their methods; refused when two coincide."""
    names = [case_name(Path(path).resolve()) for path in preds]
    if not names:
        raise InputError("no prediction folders to compare")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"several prediction folders are named {duplicates[0]!r}; method names "
                         f"are folder names, so give each folder its own name")
    return names


def match_cases(pred: PathLike, ref: PathLike) -> tuple[list[MaskPair], list[tuple[str, str]],
                                                        list[str], list[str]]:
    """Pairs to evaluate, failures (names given by several files), missing and extra names.

    Two files make one pair named after the reference; two folders are matched by case name.
    Each missing name also has a pair, whose ``pred`` is None.
    """
    pred, ref = Path(pred), Path(ref)
    for path in (pred, ref):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    if pred.is_file() and ref.is_file():
        return [MaskPair(case_name(ref), pred, ref)], [], [], []
    if not (pred.is_dir() and ref.is_dir()):
        raise InputError(f"{pred} and {ref}: give two folders of masks or two mask files")
    pred_files, pred_clashes = _case_files(pred)
    ref_files, ref_clashes = _case_files(ref)
    clashes = {**pred_clashes, **ref_clashes}
    failures = [(name, f"several files for one case: {', '.join(clashes[name])}")
                for name in sorted(clashes)]
    missing = sorted(ref_files.keys() - pred_files.keys() - clashes.keys())
    pairs = [MaskPair(name, pred_files.get(name), ref_files[name])
             for name in sorted((pred_files.keys() & ref_files.keys()) | set(missing))]
    extra = sorted(pred_files.keys() - ref_files.keys() - clashes.keys())
    return pairs, failures, missing, extra


def _case_files(folder: Path) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Image files of a folder by case name, and names shared by several files."""
    by_name: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.name.startswith(".") and is_image_file(path):
            by_name.setdefault(case_name(path), []).append(path)
    if not by_name:
        raise InputError(f"{folder}: no mask files (.nii.gz, .nii, .nrrd, .mha) in this folder")
    files = {name: paths[0] for name, paths in by_name.items() if len(paths) == 1}
    clashes = {name: [str(p) for p in paths] for name, paths in by_name.items() if len(paths) > 1}
    return files, clashes


#: What a reference without a prediction becomes: an error, or an empty prediction.
MISSING_POLICIES = ("error", "empty")


def _plan(pred: PathLike, ref: PathLike, nsd_tolerance_mm: float, missing_policy: str,
          labels: EvaluationLabels | None) -> tuple[Evaluation, list[MaskPair]]:
    check_tolerance(nsd_tolerance_mm)
    if missing_policy not in MISSING_POLICIES:
        raise InputError(f"missing={missing_policy!r}: choose from {', '.join(MISSING_POLICIES)}")
    pairs, failures, missing, extra = match_cases(pred, ref)
    if missing and missing_policy == "error":
        raise InputError(f"{pred}: no prediction for {len(missing)} reference case(s): "
                         f"{', '.join(missing)} (use --missing empty to score them as empty masks)")
    evaluation = Evaluation(Path(pred), Path(ref), nsd_tolerance_mm, failures=failures,
                            missing=missing, extra=extra, labels=labels)
    if labels is not None and labels.is_multiclass:
        evaluation.class_rows = {name: [] for name in labels.scheme.names[1:]}
    return evaluation, pairs


@dataclass(frozen=True)
class CaseOutcome:
    """What evaluating one pair gave: its rows (any hemorrhage, and each class of a label map),
    or why it could not be evaluated."""

    name: str
    row: dict[str, object] | None = None
    class_rows: dict[str, dict[str, object]] = field(default_factory=dict)
    reason: str | None = None


def _fill(plans: Sequence[tuple[Evaluation, list[MaskPair]]], workers: int | None,
          progress: bool) -> None:
    """Evaluate the pairs of all plans in one pool; store rows and failures in their Evaluation."""
    tasks = [(evaluation, pair) for evaluation, pairs in plans for pair in pairs]
    outcomes = _outcomes(tasks, _worker_count(workers, len(tasks)))
    for evaluation, outcome in progress_bar(outcomes, "Evaluating cases", progress,
                                            total=len(tasks)):
        if outcome.row is None:
            evaluation.failures.append((outcome.name, str(outcome.reason)))
            continue
        evaluation.rows.append(outcome.row)
        for name, row in outcome.class_rows.items():
            evaluation.class_rows[name].append(row)
    for evaluation, _ in plans:
        evaluation.rows.sort(key=lambda row: str(row["case"]))
        for rows in evaluation.class_rows.values():
            rows.sort(key=lambda row: str(row["case"]))
        evaluation.failures.sort()


def _outcomes(tasks: Sequence[tuple[Evaluation, MaskPair]], workers: int
              ) -> Iterator[tuple[Evaluation, CaseOutcome]]:
    """Each task's outcome as it completes: in this process with one worker, else in a pool.

    Workers are fresh interpreters ("spawn"), which is safe whatever threads the caller runs.
    """
    if workers == 1:
        for evaluation, pair in tasks:
            yield evaluation, _evaluate_pair(pair, evaluation.nsd_tolerance_mm, evaluation.labels)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_evaluate_pair, pair, evaluation.nsd_tolerance_mm,
                               evaluation.labels): evaluation
                   for evaluation, pair in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _evaluate_pair(pair: MaskPair, nsd_tolerance_mm: float, labels: EvaluationLabels | None
                   ) -> CaseOutcome:
    """The rows of one case, or why it failed; runs in a worker process."""
    try:
        ref = load_image(pair.ref)
        pred = ref.with_array(np.zeros(ref.shape, np.uint8)) if pair.pred is None else load_image(pair.pred)
        check_same_grid(pred, ref)
        ref_map = label_map(ref.array, labels, pair.ref, "reference")
        pred_map = label_map(pred.array, labels, pair.pred, "prediction")
        by_class: dict[str, dict[str, float] | None]
        if labels is None or not labels.is_multiclass:
            union, by_class = case_metrics(pred_map.view(bool), ref_map.view(bool), ref.spacing,
                                           nsd_tolerance_mm), {}
        else:
            union, by_class = metrics_by_class(pred_map, ref_map, ref.spacing, labels.scheme,
                                               nsd_tolerance_mm)
    except IchsegError as error:
        return CaseOutcome(pair.name, reason=str(error))
    not_scored = dict.fromkeys(METRICS)
    return CaseOutcome(pair.name, {"case": pair.name, **union},
                       {name: {"case": pair.name, **(values or not_scored)}
                        for name, values in by_class.items()})


def check_same_grid(pred: CTImage, ref: CTImage) -> None:
    """Raise InputError unless both images have one shape, spacing and axis orientation.

    Orientation matters because a prediction stored with flipped axes has the same shape but
    its voxels do not lie over the reference's. Origins are not compared: the organizers' script
    ignores them, and some tools do not preserve them.
    """
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if not np.allclose(pred.spacing, ref.spacing, rtol=1e-4, atol=1e-6):
        raise InputError(f"prediction spacing {_mm(pred.spacing)} differs from reference spacing "
                         f"{_mm(ref.spacing)}")
    if not np.allclose(pred.direction, ref.direction, atol=1e-3):
        raise InputError(f"prediction axes ({pred.orientation}) are oriented differently from the "
                         f"reference's ({ref.orientation}), so their voxels do not correspond")


def _mm(spacing: Sequence[float]) -> str:
    return " × ".join(f"{s:g}" for s in spacing) + " mm"


def _worker_count(workers: int | None, tasks: int) -> int:
    if workers is not None and workers < 1:
        raise InputError(f"the number of workers must be at least 1, got {workers}")
    return max(1, min(workers or os.cpu_count() or 1, tasks))
