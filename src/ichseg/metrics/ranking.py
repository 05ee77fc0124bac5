"""Ranking several methods on the same cases, the INSTANCE way.

INSTANCE 2022 ranks teams on Dice, HD, RVD and NSD by the mean of per-metric ranks. ichseg ranks
"per case, then aggregate": for every case and metric the methods are ranked (1 = best, ties share
the mean of their places), each method's ranks are averaged over the cases for each metric, and
the mean of those per-metric ranks orders the methods. Ranking per case keeps every case's vote
equal and stays defined when some HDs are infinite (an empty prediction): an infinite HD simply
ranks last on that case, where a mean over cases would be inf for several methods and tie them.
A case a method has no row for (missing or failed), and an undefined value, also rank last.

On one class of label maps (:func:`rank_class`), a case where the class is in neither a
method's mask nor the reference was not scored; for ranking it counts as what it is, two empty
masks that agree, so that a method is not ranked below one that marked the class wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from ichseg.metrics.case import METRICS, case_metrics, metric_info
from ichseg.metrics.summary import is_scored, mean_sd_cell, summarize

Row = Mapping[str, Any]

#: The four metrics INSTANCE 2022 ranks on.
RANKING_METRICS = ("dice", "hd", "rvd", "nsd")


def rank_methods(results: Mapping[str, Sequence[Row]],
                 metrics: Sequence[str] = RANKING_METRICS) -> list[dict[str, object]]:
    """Rows sorted best first: ``method``, ``rank``, ``mean_rank``, ``rank_<metric>`` for each
    metric (the method's rank on that metric averaged over cases) and ``n_cases`` (rows it has).

    Cases are matched by their ``case`` name across methods; ties in the mean rank share a rank.
    """
    from scipy.stats import (
        rankdata,  # here: scipy.stats takes a second to import, and measuring a case needs none of it
    )

    methods = list(results)
    if not methods:
        raise ValueError("no methods to rank")
    cases = sorted({str(row["case"]) for rows in results.values() for row in rows})
    if not cases:
        raise ValueError("no evaluated cases to rank the methods on")
    by_case = [{str(row["case"]): row for row in results[method]} for method in methods]
    metric_ranks = {}
    for metric in metrics:
        direction = METRICS[metric].higher_is_better
        if direction is None:
            raise ValueError(f"metric {metric!r} has no better direction and cannot be ranked")
        sign = -1.0 if direction else 1.0
        badness = np.full((len(methods), len(cases)), np.inf)
        for i, rows in enumerate(by_case):
            for j, case in enumerate(cases):
                value = float(rows[case][metric]) if case in rows else np.nan
                if not np.isnan(value):
                    badness[i, j] = sign * value
        metric_ranks[metric] = rankdata(badness, axis=0, method="average").mean(axis=1)
    mean_rank = np.mean([metric_ranks[metric] for metric in metrics], axis=0)
    places = rankdata(mean_rank, method="min")
    table = [
        {"method": method, "rank": int(places[i]), "mean_rank": float(mean_rank[i]),
         **{f"rank_{metric}": float(metric_ranks[metric][i]) for metric in metrics},
         "n_cases": len(by_case[i])}
        for i, method in enumerate(methods)
    ]
    return sorted(table, key=lambda row: (row["rank"], row["method"]))


def rank_class(results: Mapping[str, Sequence[Row]],
               metrics: Sequence[str] = RANKING_METRICS) -> list[dict[str, object]]:
    """:func:`rank_methods` on one class's rows, over the cases some method scored; a row not
    scored counts as two empty masks (Dice 1, HD 0, NSD 1, RVD undefined). [] when no method
    scored any case."""
    cases = {str(row["case"]) for rows in results.values() for row in rows if is_scored(row)}
    if not cases:
        return []
    filled = {method: [row if is_scored(row) else {**row, **_both_empty()}
                       for row in rows if str(row["case"]) in cases]
              for method, rows in results.items()}
    return rank_methods(filled, metrics)


@cache
def _both_empty() -> dict[str, float]:
    """The metrics of two empty masks, as :func:`case_metrics` defines them."""
    empty = np.zeros((1, 1, 1), dtype=bool)
    return case_metrics(empty, empty, (1.0, 1.0, 1.0))


def ranking_columns(metrics: Sequence[str] = RANKING_METRICS) -> list[str]:
    """The keys of :func:`rank_methods`' rows, in order."""
    return ["method", "rank", "mean_rank", *[f"rank_{metric}" for metric in metrics], "n_cases"]


def ranking_table(ranking: Sequence[Row], results: Mapping[str, Sequence[Row]],
                  metrics: Sequence[str] = RANKING_METRICS) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one table: place, method, and per metric "mean ± sd [mean rank]"."""
    header = ["Rank", "Method", *[metric_info(metric).title for metric in metrics], "Mean rank"]
    body = []
    for row in ranking:
        summary = summarize(results[str(row["method"])], metrics)
        cells = [f"{mean_sd_cell(summary[metric], metric_info(metric).decimals)} "
                 f"[{row[f'rank_{metric}']:.2f}]" for metric in metrics]
        body.append([str(row["rank"]), str(row["method"]), *cells, f"{row['mean_rank']:.2f}"])
    return header, body
