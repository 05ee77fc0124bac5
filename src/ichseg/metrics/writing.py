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

from ichseg.atomic import (
    atomic_dir,
    check_output_dir,
    refuse_existing,
    write_json,
    write_text,
)
from ichseg.io.ctimage import case_name
from ichseg.metrics.case import DEFAULT_NSD_TOLERANCE_MM, METRICS
from ichseg.metrics.evaluation import (
    Comparison,
    Evaluation,
    compare_folders,
    evaluate_folders,
)
from ichseg.metrics.plots import bland_altman_plot, dice_boxplot
from ichseg.metrics.ranking import RANKING_METRICS, ranking_columns, ranking_table
from ichseg.metrics.summary import (
    markdown_table,
    metric_summary_table,
    rows_to_csv,
    summary_table,
)

CASE_COLUMNS = ["case", *METRICS]
#: Metrics of the per-method table in a comparison's summary.
COMPARISON_METRICS = ("dice", "hd", "hd95", "nsd", "rvd")

PathLike = str | os.PathLike
R = TypeVar("R", Evaluation, Comparison)

_NOTE = ("Means and standard deviations (sample) are over finite values; an HD is infinite when "
         "one mask is empty, and such cases are counted instead of averaged.")


def evaluate(pred: PathLike, ref: PathLike, output_dir: PathLike | None = None, *,
             nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, workers: int | None = None,
             overwrite: bool = False, plots: bool = True, progress: bool = True,
             missing: str = "error") -> Evaluation:
    """Evaluate predictions against references and, given ``output_dir``, write there
    ``metrics.csv`` (per case), ``summary.json``, ``summary.md`` and PNG plots (Dice box plot,
    Bland–Altman of volumes). The folder is written atomically and an existing one is replaced
    only with ``overwrite``; that, and that it can be written, is checked before any case is
    evaluated. A reference without a prediction raises :class:`~ichseg.errors.InputError`
    unless ``missing="empty"`` scores it as an empty prediction.
    """
    return _computed_then_written(
        partial(evaluate_folders, pred, ref, nsd_tolerance_mm=nsd_tolerance_mm, workers=workers,
                progress=progress, missing=missing),
        write_evaluation, output_dir, overwrite, plots)


def compare_methods(preds: Sequence[PathLike], ref: PathLike, output_dir: PathLike | None = None,
                    *, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                    workers: int | None = None, overwrite: bool = False, plots: bool = True,
                    progress: bool = True, missing: str = "error") -> Comparison:
    """Evaluate several prediction folders against one reference and rank them the INSTANCE way
    (:func:`~ichseg.metrics.evaluation.compare_folders`). Given ``output_dir``, write
    ``metrics.csv`` (method, case, metrics), ``ranking.csv``, ``summary.json``, ``summary.md``
    and the PNG plots there, as :func:`evaluate` does.
    """
    return _computed_then_written(
        partial(compare_folders, preds, ref, nsd_tolerance_mm=nsd_tolerance_mm, workers=workers,
                progress=progress, missing=missing),
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
    and ``bland_altman.png``."""
    with atomic_dir(output_dir, overwrite) as folder:
        write_text(folder / "metrics.csv", rows_to_csv(evaluation.rows, CASE_COLUMNS))
        write_json(folder / "summary.json", _record(evaluation))
        write_text(folder / "summary.md", _evaluation_markdown(evaluation))
        if plots and evaluation.rows:
            _write_plots({method_name(evaluation): evaluation.rows}, folder)
    return Path(output_dir)


def write_comparison(comparison: Comparison, output_dir: str | os.PathLike, *,
                     overwrite: bool = False, plots: bool = True) -> Path:
    """``metrics.csv`` (a ``method`` column first), ``ranking.csv``, ``summary.json``,
    ``summary.md`` and, with ``plots``, the two PNG plots with every method."""
    rows = [{"method": name, **row} for name, rows in comparison.results.items() for row in rows]
    with atomic_dir(output_dir, overwrite) as folder:
        write_text(folder / "metrics.csv", rows_to_csv(rows, ["method", *CASE_COLUMNS]))
        write_text(folder / "ranking.csv", rows_to_csv(comparison.ranking, ranking_columns()))
        write_json(folder / "summary.json", {
            "reference": comparison.ref,
            "ranking_metrics": list(RANKING_METRICS),
            "ranking": comparison.ranking,
            "methods": {name: _record(evaluation)
                        for name, evaluation in comparison.evaluations.items()},
        })
        write_text(folder / "summary.md", _comparison_markdown(comparison))
        evaluated = {name: rows for name, rows in comparison.results.items() if rows}
        if plots and evaluated:
            _write_plots(evaluated, folder)
    return Path(output_dir)


def method_name(evaluation: Evaluation) -> str:
    """A prediction folder's name, which names its method in tables and plots."""
    return case_name(evaluation.pred.resolve())


def _write_plots(results: Mapping[str, Sequence[Mapping]], folder: Path) -> None:
    dice_boxplot(results, folder / "dice_boxplot.png")
    bland_altman_plot(results, folder / "bland_altman.png")


def _record(evaluation: Evaluation) -> dict[str, object]:
    return {
        "predictions": evaluation.pred,
        "references": evaluation.ref,
        "nsd_tolerance_mm": evaluation.nsd_tolerance_mm,
        "n_cases": len(evaluation.rows),
        "metrics": evaluation.summary(),
        "failures": [{"case": name, "reason": reason} for name, reason in evaluation.failures],
        "missing_predictions": evaluation.missing,
        "predictions_without_reference": evaluation.extra,
    }


def _evaluation_markdown(evaluation: Evaluation) -> str:
    lines = ["# Evaluation", "",
             f"- predictions: `{evaluation.pred}`",
             f"- references: `{evaluation.ref}`",
             f"- cases evaluated: {len(evaluation.rows)}; NSD tolerance "
             f"{evaluation.nsd_tolerance_mm:g} mm", "",
             "## Summary", "", markdown_table(*metric_summary_table(evaluation.summary())), _NOTE]
    lines += _issues_markdown(evaluation)
    return "\n".join(lines) + "\n"


def _comparison_markdown(comparison: Comparison) -> str:
    lines = ["# Comparison", "", f"- references: `{comparison.ref}`"]
    lines += [f"- {name}: `{evaluation.pred}`, {len(evaluation.rows)} cases"
              for name, evaluation in comparison.evaluations.items()]
    if comparison.ranking:
        lines += ["", "## Ranking", "",
                  markdown_table(*ranking_table(comparison.ranking, comparison.results)),
                  "Cells: mean ± sd over cases [mean rank over cases]. Methods are ranked on "
                  "every case for each metric; the mean of the per-metric mean ranks orders them."]
    lines += ["", "## Summary", "",
              summary_table(comparison.results, COMPARISON_METRICS, fmt="markdown"), _NOTE]
    for name, evaluation in comparison.evaluations.items():
        issues = _issues_markdown(evaluation, level="###")
        if issues:
            lines += ["", f"## {name}"] + issues
    return "\n".join(lines) + "\n"


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
