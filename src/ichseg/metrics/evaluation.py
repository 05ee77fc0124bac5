"""Evaluating folders of predicted masks against reference masks, case by case, in parallel.

This module computes; :mod:`ichseg.metrics.writing` puts the results into files.

Cases are matched by name (the file name without its image extension): a reference without a
prediction is an error (:class:`InputError`, raised before any case is evaluated, so a summary
never averages over the easy cases only) unless ``missing="empty"`` scores it as an empty
prediction, as the organizers' script scores an empty mask; a prediction without a reference is
listed as extra; nothing is guessed.
A case that cannot be evaluated (unreadable file, different shape, spacing or orientation,
non-binary values) is listed as a failure with a one-line reason, and the other cases go on.
Spacing is taken from the reference, as the INSTANCE organizers took it from the label file.
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
from ichseg.metrics.case import (
    DEFAULT_NSD_TOLERANCE_MM,
    METRICS,
    case_metrics,
    check_tolerance,
)
from ichseg.metrics.ranking import rank_methods
from ichseg.metrics.summary import summarize
from ichseg.progress import progress_bar

PathLike = str | os.PathLike


@dataclass
class Evaluation:
    """Per-case metrics of one set of predictions against one set of references.

    ``rows`` hold ``case`` and the values of :func:`~ichseg.metrics.case_metrics`, sorted by
    case; ``failures`` are ``(case, reason)``; ``missing`` names references without a
    prediction, ``extra`` predictions without a reference.
    """

    pred: Path
    ref: Path
    nsd_tolerance_mm: float
    rows: list[dict[str, object]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one case was evaluated and none failed."""
        return bool(self.rows) and not self.failures

    def summary(self, metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict]:
        return summarize(self.rows, metrics)


@dataclass
class Comparison:
    """Several prediction folders evaluated against one reference, and their INSTANCE ranking."""

    ref: Path
    evaluations: dict[str, Evaluation]
    ranking: list[dict[str, object]]

    @property
    def ok(self) -> bool:
        return all(evaluation.ok for evaluation in self.evaluations.values())

    @property
    def results(self) -> dict[str, list[dict[str, object]]]:
        """Per-case rows by method name, the input of the summary and ranking functions."""
        return {name: evaluation.rows for name, evaluation in self.evaluations.items()}


@dataclass(frozen=True)
class MaskPair:
    """A predicted mask and its reference, under the case's name."""

    name: str
    pred: Path | None  # None: no prediction, scored as an empty mask
    ref: Path


def evaluate_folders(pred_dir: PathLike, ref_dir: PathLike, *,
                     nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                     workers: int | None = None, progress: bool = True,
                     missing: str = "error") -> Evaluation:
    """Metrics of every prediction with a reference of the same name (or of one pair of files).
    A reference without a prediction raises :class:`InputError` unless ``missing="empty"``.

    Cases run in a pool of ``workers`` processes (default: one per CPU core, at most one per
    case); ``progress`` reports the cases done on stderr (:mod:`ichseg.progress`).
    """
    evaluation, pairs = _plan(pred_dir, ref_dir, nsd_tolerance_mm, missing)
    _fill([(evaluation, pairs)], workers, progress)
    return evaluation


def compare_folders(preds: Sequence[PathLike], ref: PathLike, *,
                    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, workers: int | None = None,
                    progress: bool = True, missing: str = "error") -> Comparison:
    """Evaluate several prediction folders against one reference, in one pool, and rank them the
    INSTANCE way (:func:`~ichseg.metrics.rank_methods`). Method names are the folder names."""
    names = method_names(preds)
    plans = [_plan(path, ref, nsd_tolerance_mm, missing) for path in preds]
    _fill(plans, workers, progress)
    evaluations = {name: evaluation for name, (evaluation, _) in zip(names, plans)}
    results = {name: evaluation.rows for name, evaluation in evaluations.items()}
    ranking = rank_methods(results) if any(results.values()) else []
    return Comparison(Path(ref), evaluations, ranking)


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


def _plan(pred: PathLike, ref: PathLike, nsd_tolerance_mm: float,
          missing_policy: str = "error") -> tuple[Evaluation, list[MaskPair]]:
    check_tolerance(nsd_tolerance_mm)
    if missing_policy not in MISSING_POLICIES:
        raise InputError(f"missing={missing_policy!r}: choose from {', '.join(MISSING_POLICIES)}")
    pairs, failures, missing, extra = match_cases(pred, ref)
    if missing and missing_policy == "error":
        raise InputError(f"{pred}: no prediction for {len(missing)} reference case(s): "
                         f"{', '.join(missing)} (use --missing empty to score them as empty masks)")
    evaluation = Evaluation(Path(pred), Path(ref), nsd_tolerance_mm, failures=failures,
                            missing=missing, extra=extra)
    return evaluation, pairs


def _fill(plans: Sequence[tuple[Evaluation, list[MaskPair]]], workers: int | None,
          progress: bool) -> None:
    """Evaluate the pairs of all plans in one pool; store rows and failures in their Evaluation."""
    tasks = [(evaluation, pair) for evaluation, pairs in plans for pair in pairs]
    outcomes = _outcomes(tasks, _worker_count(workers, len(tasks)))
    for evaluation, (name, row, reason) in progress_bar(outcomes, "Evaluating cases", progress,
                                                        total=len(tasks)):
        if row is not None:
            evaluation.rows.append(row)
        else:
            evaluation.failures.append((name, str(reason)))
    for evaluation, _ in plans:
        evaluation.rows.sort(key=lambda row: str(row["case"]))
        evaluation.failures.sort()


def _outcomes(tasks: Sequence[tuple[Evaluation, MaskPair]], workers: int
              ) -> Iterator[tuple[Evaluation, tuple[str, dict[str, object] | None, str | None]]]:
    """Each task's outcome as it completes: in this process with one worker, else in a pool.

    Workers are fresh interpreters ("spawn"), which is safe whatever threads the caller runs.
    """
    if workers == 1:
        for evaluation, pair in tasks:
            yield evaluation, _evaluate_pair(pair, evaluation.nsd_tolerance_mm)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_evaluate_pair, pair, evaluation.nsd_tolerance_mm): evaluation
                   for evaluation, pair in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _evaluate_pair(pair: MaskPair, nsd_tolerance_mm: float
                   ) -> tuple[str, dict[str, object] | None, str | None]:
    """``(name, row, None)`` or ``(name, None, reason)``; runs in a worker process."""
    try:
        ref = load_image(pair.ref)
        pred = ref.with_array(np.zeros(ref.shape, np.uint8)) if pair.pred is None else load_image(pair.pred)
        check_same_grid(pred, ref)
        metrics = case_metrics(pred.array, ref.array, ref.spacing, nsd_tolerance_mm)
    except IchsegError as error:
        return pair.name, None, str(error)
    return pair.name, {"case": pair.name, **metrics}, None


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
