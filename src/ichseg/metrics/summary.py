"""Summaries of per-case rows, and tables of them (CSV, markdown, plain text).

A row is a mapping with a ``case`` name and metric values (see :data:`ichseg.metrics.METRICS`).
Means are taken over the finite values only, with the number of infinite values (an HD where one
mask is empty) beside them: one such case would otherwise turn the mean into inf, which is what
happened to most teams' mean HD in INSTANCE 2022. NaN means undefined (an RVD without reference
volume) and is counted apart. A row of one class of a label map whose values are None was not
scored (the class is in neither mask): it is left out of that class's summary and counted.

Cases whose reference is empty (no hemorrhage) have a summary of their own: the false-positive
volume and component count a reader would have to dismiss.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import numpy as np

from ichseg.metrics.case import METRICS, metric_info

Row = Mapping[str, Any]

#: Metrics in Li & Chen's Table 1.
TABLE_METRICS = ("dice", "hd", "rvd")
TABLE_FORMATS = ("markdown", "csv", "text")
#: The false-positive figures summarised over the cases without hemorrhage in the reference.
FALSE_POSITIVE_METRICS = ("fp_ml", "fp_components")


def is_scored(row: Row) -> bool:
    """False for a class's row where the class is in neither mask (its values are None)."""
    return row.get("dice") is not None


def summarize(rows: Sequence[Row], metrics: Sequence[str] = tuple(METRICS)) -> dict[str, dict]:
    """Per metric: mean, sd (sample, n - 1) and median of the finite values, their number ``n``,
    and the numbers of infinite (``n_infinite``) and undefined (``n_undefined``) values."""
    summary = {}
    for metric in metrics:
        values = np.array([float(row[metric]) for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[metric] = {
            "mean": float(np.mean(finite)) if finite.size else math.nan,
            "sd": float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan,
            "median": float(np.median(finite)) if finite.size else math.nan,
            "n": int(finite.size),
            "n_infinite": int(np.count_nonzero(np.isinf(values))),
            "n_undefined": int(np.count_nonzero(np.isnan(values))),
        }
    return summary


def summary_table(results: Mapping[str, Sequence[Row]], metrics: Sequence[str] = TABLE_METRICS,
                  fmt: str = "markdown") -> str:
    """One row per method with a "mean ± sd" cell per metric, as in Li & Chen's Table 1.

    Infinite values are left out of the mean and counted in the cell ("31.76 ± 31.36 (2 inf)").
    ``fmt="csv"`` gives numeric columns instead (``<metric>_mean``, ``_sd``, ``_median``, ``_n``,
    ``_n_infinite``).
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(TABLE_FORMATS)}")
    if fmt == "csv":
        rows = summary_rows(results, metrics)
        return rows_to_csv(rows, list(rows[0]) if rows else ["method"])
    summaries = {method: summarize(rows, metrics) for method, rows in results.items()}
    header = ["Method"] + [metric_info(metric).title for metric in metrics]
    body = [[method] + [mean_sd_cell(s[metric], metric_info(metric).decimals) for metric in metrics]
            for method, s in summaries.items()]
    return markdown_table(header, body) if fmt == "markdown" else text_table(header, body)


def summary_rows(results: Mapping[str, Sequence[Row]], metrics: Sequence[str] = TABLE_METRICS
                 ) -> list[dict[str, object]]:
    """A row per method: ``method`` and ``<metric>_mean``, ``_sd``, ``_median``, ``_n``,
    ``_n_infinite`` for each metric (the columns of :func:`summary_table`'s CSV)."""
    fields = ("mean", "sd", "median", "n", "n_infinite")
    rows = []
    for method, method_rows in results.items():
        summary = summarize(method_rows, metrics)
        rows.append({"method": method, **{f"{metric}_{field}": summary[metric][field]
                                          for metric in metrics for field in fields}})
    return rows


def empty_reference_summary(rows: Sequence[Row]) -> dict[str, Any]:
    """Over the cases whose reference is empty: their number, how many have no false positive,
    and the mean and max of the false-positive volume (mL) and component count."""
    empty = [row for row in rows if float(row["volume_ref_ml"]) == 0.0]
    summary: dict[str, Any] = {"n_cases": len(empty),
                               "n_without_fp": sum(1 for row in empty if float(row["fp_ml"]) == 0.0)}
    for metric in FALSE_POSITIVE_METRICS:
        values = np.array([float(row[metric]) for row in empty])
        summary[metric] = {"mean": float(values.mean()) if values.size else math.nan,
                           "max": float(values.max()) if values.size else math.nan}
    return summary


def empty_reference_table(results: Mapping[str, Sequence[Row]]
                          ) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the false positives on cases without hemorrhage, a row per method."""
    header = ["Method", "cases", "without FP", "FP volume (mL) mean", "max",
              "FP components mean", "max"]
    body = []
    for method, rows in results.items():
        summary = empty_reference_summary(rows)
        cells = [format_value(summary[metric][field], decimals)
                 for metric, decimals in (("fp_ml", 2), ("fp_components", 1))
                 for field in ("mean", "max")]
        body.append([method, str(summary["n_cases"]), str(summary["n_without_fp"]), *cells])
    return header, body


def class_summary_table(summaries: Mapping[str, Mapping[str, Any]],
                        metrics: Sequence[str] = TABLE_METRICS) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a row per class: "mean ± sd" per metric over the cases where the class
    was scored, and their number (``summaries`` as ``Evaluation.class_summaries`` gives them)."""
    header = ["Class", "scored", "not scored"] + [metric_info(metric).title for metric in metrics]
    body = [[name, str(summary["n_scored"]), str(len(summary["absent_cases"]))]
            + [mean_sd_cell(summary["metrics"][metric], metric_info(metric).decimals)
               for metric in metrics]
            for name, summary in summaries.items()]
    return header, body


def case_table(rows: Sequence[Row], metrics: Sequence[str] = tuple(METRICS)
               ) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of a per-case table."""
    header = ["Case"] + [metric_info(metric).title for metric in metrics]
    body = [[str(row["case"])] + [format_value(row[metric], metric_info(metric).decimals)
                                  for metric in metrics] for row in rows]
    return header, body


def metric_summary_table(summary: Mapping[str, Mapping[str, float]]
                         ) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a one-method summary: a row per metric of :func:`summarize`'s output."""
    header = ["Metric", "mean ± sd", "median", "n", "infinite", "undefined"]
    body = []
    for metric, values in summary.items():
        info = metric_info(metric)
        body.append([info.title, mean_sd_cell(values, info.decimals, with_infinite=False),
                     format_value(values["median"], info.decimals), str(values["n"]),
                     str(values["n_infinite"]), str(values["n_undefined"])])
    return header, body


def mean_sd_cell(summary: Mapping[str, float], decimals: int, with_infinite: bool = True) -> str:
    """``mean ± sd`` of one metric's summary, followed by its count of infinite values."""
    if summary["n"] == 0:
        cell = "—"
    elif summary["n"] == 1:
        cell = f"{summary['mean']:.{decimals}f}"
    else:
        cell = f"{summary['mean']:.{decimals}f} ± {summary['sd']:.{decimals}f}"
    if with_infinite and summary["n_infinite"]:
        cell += f" ({summary['n_infinite']} inf)"
    return cell


def format_value(value: SupportsFloat | str, decimals: int) -> str:
    """A number for a human-readable table: fixed decimals, ``inf``, or ``—`` for NaN."""
    number = float(value)
    if math.isnan(number):
        return "—"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.{decimals}f}"


def rows_to_csv(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """CSV of rows with every float at full precision (``inf`` and ``nan`` spelled out)."""
    columns = list(columns or (rows[0].keys() if rows else ["case", *METRICS]))
    return _csv_text(columns, [[row.get(column, "") for column in columns] for row in rows])


def markdown_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def text_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    """Columns padded to a common width: the first left-aligned, the others right-aligned."""
    cells = [list(map(str, header))] + [[str(cell) for cell in row] for row in body]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _csv_text(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_cell(cell) for cell in row] for row in body])
    return buffer.getvalue()


def _csv_cell(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
