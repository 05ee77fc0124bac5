"""Evaluating into a folder: CSV, JSON, markdown and PNG plots of an evaluation or a comparison.

:func:`evaluate` and :func:`compare_methods` check the output folder, compute with
:mod:`ichseg.metrics.evaluation` and write. The whole folder is assembled under a temporary name
and renamed into place at the end, so an interrupted run leaves no half-written results behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from ichseg.atomic import atomic_dir, check_output_dir, refuse_existing, write_json, write_text
from ichseg.io.ctimage import case_name
from ichseg.labels import LabelScheme
from ichseg.metrics.case import DEFAULT_NSD_TOLERANCE_MM, METRICS
from ichseg.metrics.classes import ANY, EvaluationLabels
from ichseg.metrics.evaluation import Comparison, Evaluation, compare_folders, evaluate_folders
from ichseg.metrics.plots import bland_altman_plot, dice_boxplot, dice_boxplots_by_class
from ichseg.metrics.ranking import RANKING_METRICS, ranking_columns, ranking_table
from ichseg.metrics.summary import (
    class_summary_table,
    empty_reference_summary,
    empty_reference_table,
    markdown_table,
    metric_summary_table,
    rows_to_csv,
    summary_table,
)

CASE_COLUMNS = ["case", *METRICS]
#: Label maps: a row per case and class, ``any`` (any hemorrhage) first.
CLASS_CASE_COLUMNS = ["case", "class", *METRICS]
#: Metrics of the per-method table in a comparison's summary.
COMPARISON_METRICS = ("dice", "hd", "hd95", "nsd", "rvd", "fp_ml")
#: Metrics of the table by class.
CLASS_METRICS = ("dice", "hd", "hd95", "nsd", "rvd", "fp_ml")

PathLike = str | os.PathLike
R = TypeVar("R", Evaluation, Comparison)

Labels = LabelScheme | EvaluationLabels | None

_NOTE = ("Means and standard deviations (sample) are over finite values; an HD is infinite when "
         "one mask is empty, and such cases are counted instead of averaged.")
_CLASS_NOTE = ("A class in neither mask of a case is not scored for that case: its values are "
               "empty in metrics.csv and left out of the class's summary.")
_EMPTY_NOTE = ("Cases whose reference has no hemorrhage: the predicted volume there is all false "
               "positive (components 26-connected).")


def evaluate(pred: PathLike, ref: PathLike, output_dir: PathLike | None = None, *,
             nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, workers: int | None = None,
             overwrite: bool = False, plots: bool = True, progress: bool = True,
             missing: str = "error", labels: Labels = None) -> Evaluation:
    """Evaluate predictions against references and, given ``output_dir``, write there
    ``metrics.csv`` (per case), ``summary.json``, ``summary.md`` and PNG plots (Dice box plot,
    Bland–Altman of volumes; for label maps, Dice box plots by class). The folder is written
    atomically and an existing one is replaced only with ``overwrite``; that, and that it can be
    written, is checked before any case is evaluated. A reference without a prediction raises
    :class:`~ichseg.errors.InputError` unless ``missing="empty"`` scores it as an empty
    prediction. ``labels`` names the classes (see :func:`evaluate_folders`).
    """
    return _computed_then_written(
        partial(evaluate_folders, pred, ref, nsd_tolerance_mm=nsd_tolerance_mm, workers=workers,
                progress=progress, missing=missing, labels=labels),
        write_evaluation, output_dir, overwrite, plots)


def compare_methods(preds: Sequence[PathLike], ref: PathLike, output_dir: PathLike | None = None,
                    *, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                    workers: int | None = None, overwrite: bool = False, plots: bool = True,
                    progress: bool = True, missing: str = "error",
                    labels: Labels = None) -> Comparison:
    """Evaluate several prediction folders against one reference and rank them the INSTANCE way
    (:func:`~ichseg.metrics.evaluation.compare_folders`). Given ``output_dir``, write
    ``metrics.csv`` (method, case, metrics), ``ranking.csv``, ``summary.json``, ``summary.md``
    and the PNG plots there, as :func:`evaluate` does; for label maps the rows and rankings
    carry a ``class`` column.
    """
    return _computed_then_written(
        partial(compare_folders, preds, ref, nsd_tolerance_mm=nsd_tolerance_mm, workers=workers,
                progress=progress, missing=missing, labels=labels),
        write_comparison, output_dir, overwrite, plots)


def _computed_then_written(compute: Callable[[], R], write: Callable[..., Path],
                           output_dir: PathLike | None, overwrite: bool, plots: bool) -> R:
    """The output folder checked before any case is evaluated, the results, then (given a
    folder) their files."""
    if output_dir is not None:
        refuse_existing(Path(output_dir), overwrite)
        check_output_dir(output_dir, overwrite=True)
    result = compute()
    if output_dir is not None:
        write(result, output_dir, overwrite=overwrite, plots=plots)
    return result


def write_evaluation(evaluation: Evaluation, output_dir: str | os.PathLike, *,
                     overwrite: bool = False, plots: bool = True) -> Path:
    """``metrics.csv``, ``summary.json``, ``summary.md`` and, with ``plots``, ``dice_boxplot.png``
    and ``bland_altman.png`` (and ``dice_boxplot_by_class.png`` for label maps)."""
    name = method_name(evaluation)
    with atomic_dir(output_dir, overwrite) as folder:
        write_text(folder / "metrics.csv", _metrics_csv({name: evaluation}, with_method=False))
        write_json(folder / "summary.json", _record(evaluation))
        write_text(folder / "summary.md", _evaluation_markdown(evaluation))
        if plots and evaluation.rows:
            _write_plots({name: evaluation}, folder)
    return Path(output_dir)


def write_comparison(comparison: Comparison, output_dir: str | os.PathLike, *,
                     overwrite: bool = False, plots: bool = True) -> Path:
    """``metrics.csv`` (a ``method`` column first), ``ranking.csv``, ``summary.json``,
    ``summary.md`` and, with ``plots``, the PNG plots with every method."""
    with atomic_dir(output_dir, overwrite) as folder:
        write_text(folder / "metrics.csv", _metrics_csv(comparison.evaluations, with_method=True))
        write_text(folder / "ranking.csv", _ranking_csv(comparison))
        record = {
            "reference": comparison.ref,
            "ranking_metrics": list(RANKING_METRICS),
            "ranking": comparison.ranking,
            "methods": {name: _record(evaluation)
                        for name, evaluation in comparison.evaluations.items()},
        }
        if comparison.class_rankings:
            record["class_rankings"] = comparison.class_rankings
        write_json(folder / "summary.json", record)
        write_text(folder / "summary.md", _comparison_markdown(comparison))
        evaluated = {name: evaluation for name, evaluation in comparison.evaluations.items()
                     if evaluation.rows}
        if plots and evaluated:
            _write_plots(evaluated, folder)
    return Path(output_dir)


def method_name(evaluation: Evaluation) -> str:
    """A prediction folder's name, which names its method in tables and plots."""
    return case_name(evaluation.pred.resolve())


def _metrics_csv(evaluations: Mapping[str, Evaluation], with_method: bool) -> str:
    """Per-case rows; for label maps a row per case and class (``any`` first)."""
    multiclass = any(evaluation.is_multiclass for evaluation in evaluations.values())
    rows = []
    for name, evaluation in evaluations.items():
        for row in _case_rows(evaluation) if multiclass else evaluation.rows:
            rows.append({"method": name, **row} if with_method else row)
    columns = CLASS_CASE_COLUMNS if multiclass else CASE_COLUMNS
    return rows_to_csv(rows, ["method", *columns] if with_method else columns)


def _case_rows(evaluation: Evaluation) -> list[dict[str, object]]:
    names = [ANY, *evaluation.class_rows]
    return [{"case": row["case"], "class": name, **row}
            for rows in zip(evaluation.rows, *evaluation.class_rows.values(), strict=True)
            for name, row in zip(names, rows, strict=True)]


def _ranking_csv(comparison: Comparison) -> str:
    if not comparison.class_rankings:
        return rows_to_csv(comparison.ranking, ranking_columns())
    rows = [{"class": name, **row} for name, ranking in
            {ANY: comparison.ranking, **comparison.class_rankings}.items() for row in ranking]
    return rows_to_csv(rows, ["class", *ranking_columns()])


def _write_plots(evaluations: Mapping[str, Evaluation], folder: Path) -> None:
    results = {name: evaluation.rows for name, evaluation in evaluations.items()}
    dice_boxplot(results, folder / "dice_boxplot.png")
    bland_altman_plot(results, folder / "bland_altman.png")
    if any(evaluation.is_multiclass for evaluation in evaluations.values()):
        by_class = {ANY: results}
        for name in next(iter(evaluations.values())).class_rows:
            by_class[name] = {method: evaluation.scored_rows(name)
                              for method, evaluation in evaluations.items()}
        dice_boxplots_by_class(by_class, folder / "dice_boxplot_by_class.png")


def _record(evaluation: Evaluation) -> dict[str, object]:
    record: dict[str, object] = {
        "predictions": evaluation.pred,
        "references": evaluation.ref,
        "nsd_tolerance_mm": evaluation.nsd_tolerance_mm,
        "n_cases": len(evaluation.rows),
        "metrics": evaluation.summary(),
        "empty_references": empty_reference_summary(evaluation.rows),
        "failures": [{"case": name, "reason": reason} for name, reason in evaluation.failures],
        "missing_predictions": evaluation.missing,
        "predictions_without_reference": evaluation.extra,
    }
    if evaluation.labels is not None and evaluation.labels.is_multiclass:
        record["labels"] = evaluation.labels.as_dict()
        record["classes"] = evaluation.class_summaries()
    return record


def _evaluation_markdown(evaluation: Evaluation) -> str:
    what = " (any hemorrhage)" if evaluation.is_multiclass else ""
    lines = ["# Evaluation", "",
             f"- predictions: `{evaluation.pred}`",
             f"- references: `{evaluation.ref}`",
             (f"- cases evaluated: {len(evaluation.rows)}; NSD tolerance "
              f"{evaluation.nsd_tolerance_mm:g} mm"), "",
             f"## Summary{what}", "", markdown_table(*metric_summary_table(evaluation.summary())),
             _NOTE]
    lines += _by_class_markdown({method_name(evaluation): evaluation})
    lines += _empty_reference_markdown({method_name(evaluation): evaluation.rows})
    lines += _issues_markdown(evaluation)
    return "\n".join(lines) + "\n"


def _comparison_markdown(comparison: Comparison) -> str:
    lines = ["# Comparison", "", f"- references: `{comparison.ref}`"]
    lines += [f"- {name}: `{evaluation.pred}`, {len(evaluation.rows)} cases"
              for name, evaluation in comparison.evaluations.items()]
    by_class = bool(comparison.class_rankings)
    if comparison.ranking:
        lines += ["", "## Ranking" + (f": {ANY} hemorrhage" if by_class else ""), "",
                  markdown_table(*ranking_table(comparison.ranking, comparison.results)),
                  ("Cells: mean ± sd over cases [mean rank over cases]. Methods are ranked on "
                   "every case for each metric; the mean of the per-metric mean ranks orders them.")]
    for name, ranking in comparison.class_rankings.items():
        lines += ["", f"## Ranking: {name}", "",
                  markdown_table(*ranking_table(ranking, comparison.class_results(name))),
                  ("Ranked on the cases where some method or the reference has the class; a "
                   "method that marked it in neither counts as agreeing (Dice 1, HD 0, NSD 1). "
                   "Cells: mean ± sd over the cases where the method scored the class.")]
    lines += ["", "## Summary" + (f" ({ANY} hemorrhage)" if by_class else ""), "",
              summary_table(comparison.results, COMPARISON_METRICS, fmt="markdown"), _NOTE]
    lines += _by_class_markdown(comparison.evaluations)
    lines += _empty_reference_markdown(comparison.results)
    for name, evaluation in comparison.evaluations.items():
        issues = _issues_markdown(evaluation, level="###")
        if issues:
            lines += ["", f"## {name}"] + issues
    return "\n".join(lines) + "\n"


def _by_class_markdown(evaluations: Mapping[str, Evaluation]) -> list[str]:
    """For label maps, a table by class for each method."""
    lines: list[str] = []
    for name, evaluation in evaluations.items():
        if evaluation.labels is None or not evaluation.labels.is_multiclass:
            continue
        title = "## By class" + (f": {name}" if len(evaluations) > 1 else "")
        lines += ["", title, "", f"Classes named by {evaluation.labels.source}.", "",
                  markdown_table(*class_summary_table(evaluation.class_summaries(CLASS_METRICS),
                                                      CLASS_METRICS)), _CLASS_NOTE]
    return lines


def _empty_reference_markdown(results: Mapping[str, Sequence[Mapping]]) -> list[str]:
    if not any(empty_reference_summary(rows)["n_cases"] for rows in results.values()):
        return []
    return ["", "## Cases without hemorrhage in the reference", "",
            markdown_table(*empty_reference_table(results)), _EMPTY_NOTE]


def _issues_markdown(evaluation: Evaluation, level: str = "##") -> list[str]:
    lines: list[str] = []
    if evaluation.failures:
        lines += ["", f"{level} Failed cases", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in evaluation.failures]
    if evaluation.missing:
        lines += ["", f"{level} References without a prediction", "", ", ".join(evaluation.missing)]
    if evaluation.extra:
        lines += ["", f"{level} Predictions without a reference", "", ", ".join(evaluation.extra)]
    return lines
