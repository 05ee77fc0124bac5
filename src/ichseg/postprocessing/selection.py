"""Choose postprocessing by cross-validation, on a recipe's out-of-fold predictions.

Every candidate (a rule, or rules in sequence) is applied to every case and scored against the
reference. The candidate chosen has the best mean Dice among those that make no metric worse
than ``none`` (no postprocessing) by more than the margin; equal mean Dice goes to the earlier
candidate. :func:`candidate_grid` lists ``none`` first, parameter-free rules next and the
gentlest threshold of each rule first, then, when the cases come with their CT, the same after
``intracranial``: so the intracranial rule is chosen only where it raises Dice, which it does
where the predictions hold extracranial false positives.

The margin (:data:`DEFAULT_MARGIN`, 0.01) is absolute for the metrics that are fractions (Dice,
NSD, RVD: 0.01 is one Dice point) and relative for the distances in mm (HD, HD95: 1% of
``none``'s mean), whose scale depends on the data set. Distances are infinite where one mask is
empty; means are taken over the finite cases, and a rule that makes more cases non-finite than
``none`` counts as worse on that metric whatever its mean.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ichseg.metrics import METRICS, case_metrics
from ichseg.postprocessing.rules import INTRACRANIAL, Rule, RuleError
from ichseg.postprocessing.sequence import CaseSteps, ImageSource, Postprocessing

DEFAULT_MARGIN = 0.01

MetricFn = Callable[[np.ndarray, np.ndarray, tuple[float, float, float]], dict[str, float]]
#: ``(prediction, reference, spacing)``, or with the CT (:data:`ImageSource`) as a fourth item.
Case = (tuple[np.ndarray, np.ndarray, tuple[float, float, float]]
        | tuple[np.ndarray, np.ndarray, tuple[float, float, float], ImageSource])


#: The metrics that guard the choice, in table order, each with whether its margin is relative
#: to ``none``'s mean (distances in mm) or absolute (fractions). Whether higher is better comes
#: from :data:`ichseg.metrics.METRICS`; other metrics a metric function returns are ignored.
GUARDED_METRICS: dict[str, bool] = {
    "dice": False, "hd": True, "hd95": True, "nsd": False, "rvd": False,
}


@dataclass(frozen=True)
class SelectionRow:
    """One candidate's results over all cases."""

    rule: Postprocessing
    means: dict[str, float]
    """Mean of each metric over the cases where it is finite (NaN if none is)."""
    non_finite: dict[str, int]
    """Number of cases where each metric is infinite or undefined."""
    removed_voxels: int
    removed_components: int
    worse: tuple[str, ...]
    """Metrics on which the rule is worse than ``none`` by more than the margin."""

    @property
    def eligible(self) -> bool:
        return not self.worse

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.rule.to_list(), "means": self.means, "non_finite": self.non_finite,
                "removed_voxels": self.removed_voxels,
                "removed_components": self.removed_components, "worse": list(self.worse)}


@dataclass(frozen=True)
class Selection:
    """Every candidate's row, the rule chosen and why."""

    rows: list[SelectionRow]
    chosen: Postprocessing
    reason: str
    margin: float
    n_cases: int

    def as_dict(self) -> dict[str, Any]:
        """The comparison in plain JSON types, to save beside the chosen rule."""
        return {"chosen": self.chosen.to_list(), "reason": self.reason, "margin": self.margin,
                "n_cases": self.n_cases, "rows": [row.as_dict() for row in self.rows]}


def candidate_grid(intracranial: bool = True) -> list[Postprocessing]:
    """The rules and thresholds compared by default, and, with ``intracranial``, each of them
    after the ``intracranial`` rule."""
    component_rules = [
        Rule("none"),
        Rule("keep_largest"),
        *(Rule("min_volume", {"min_ml": ml}) for ml in (0.05, 0.1, 0.25, 0.5, 1.0)),
        *(Rule("min_slices", {"min_slices": n}) for n in (2, 3)),
    ]
    grid = [Postprocessing.of(rule) for rule in component_rules]
    if intracranial:
        grid += [Postprocessing((Rule(INTRACRANIAL), rule)) for rule in component_rules]
    return grid


def select_rule(cases: Sequence[Case],
                candidates: Sequence[Rule | Postprocessing | Sequence[Rule]] | None = None,
                margin: float = DEFAULT_MARGIN, metric_fn: MetricFn | None = None) -> Selection:
    """Score every candidate on the cases and choose one.

    A case is ``(prediction, reference, spacing)``, and its CT as a fourth item for the rules
    that read it (:data:`Case`); the default candidates include ``intracranial`` only when every
    case has its CT. ``metric_fn(prediction, reference, spacing)`` returns a dict with at least
    ``dice``; it defaults to :func:`ichseg.metrics.case_metrics`. ``none`` is always scored, as
    the baseline. Candidates that leave a case the same mask share one metric computation.
    """
    if not cases:
        raise RuleError("no out-of-fold predictions to choose a postprocessing rule from")
    check_margin(margin)
    with_ct = all(len(case) > 3 and case[3] is not None for case in cases)
    scores = CandidateScores(candidate_grid(with_ct) if candidates is None else candidates, metric_fn)
    for case in cases:
        prediction, reference, spacing = case[:3]
        scores.add(CaseSteps(prediction, spacing, case[3] if len(case) > 3 else None), reference)
    return scores.selection(margin)


class CandidateScores:
    """Every candidate's metrics on each case added, and the choice among them (:meth:`selection`).

    ``none`` is always among the candidates, as the baseline; ``metric_fn`` as :func:`select_rule`
    takes it. Cases are added one at a time, so a caller need not hold them all.
    """

    def __init__(self, candidates: Sequence[Rule | Postprocessing | Sequence[Rule]],
                 metric_fn: MetricFn | None = None) -> None:
        self.candidates = [Postprocessing.of(c) for c in candidates]
        if Postprocessing() not in self.candidates:
            self.candidates.insert(0, Postprocessing())
        self.metric_fn = metric_fn or case_metrics
        self.scores: list[list[dict[str, float]]] = [[] for _ in self.candidates]
        self.removed = np.zeros((len(self.candidates), 2), dtype=np.int64)

    @property
    def n_cases(self) -> int:
        return len(self.scores[0])

    def add(self, steps: CaseSteps, reference: np.ndarray) -> None:
        """Score every candidate on one case (its prediction through ``steps``)."""
        by_mask: dict[bytes, dict[str, float]] = {}  # candidates that leave the same mask agree
        for index, candidate in enumerate(self.candidates):
            mask = steps.run(candidate.steps)
            key = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
            if key not in by_mask:
                by_mask[key] = self.metric_fn(mask, reference, steps.spacing)
            self.scores[index].append(by_mask[key])
            self.removed[index] += steps.removed(candidate.steps)

    def selection(self, margin: float = DEFAULT_MARGIN) -> Selection:
        """The rows of every candidate and the one chosen (see the module's docstring)."""
        if not self.n_cases:
            raise RuleError("no out-of-fold predictions to choose a postprocessing rule from")
        check_margin(margin)
        metrics = [name for name in GUARDED_METRICS if name in self.scores[0][0]]
        if "dice" not in metrics:
            raise ValueError("the metric function must return 'dice'")
        baseline = _summarise(self.scores[self.candidates.index(Postprocessing())], metrics)
        rows = []
        for rule, rule_scores, (voxels, components_removed) in zip(self.candidates, self.scores, self.removed,
                                                              strict=True):
            means, non_finite = _summarise(rule_scores, metrics)
            worse = tuple(name for name in metrics
                          if _is_worse(name, means, non_finite, baseline, margin))
            rows.append(SelectionRow(rule, means, non_finite, int(voxels), int(components_removed),
                                     worse))
        return _choose(rows, margin, self.n_cases)


def check_margin(margin: float) -> None:
    """RuleError unless ``margin`` is a number >= 0."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise RuleError(f"the postprocessing margin must be a number >= 0, got {margin!r}")


def _summarise(scores: list[dict[str, float]],
               metrics: list[str]) -> tuple[dict[str, float], dict[str, int]]:
    means, non_finite = {}, {}
    for name in metrics:
        values = np.array([case[name] for case in scores], dtype=float)
        finite = np.isfinite(values)
        means[name] = float(values[finite].mean()) if finite.any() else math.nan
        non_finite[name] = int((~finite).sum())
    return means, non_finite


def _is_worse(name: str, means: dict[str, float], non_finite: dict[str, int],
              baseline: tuple[dict[str, float], dict[str, int]], margin: float) -> bool:
    base_means, base_non_finite = baseline
    if non_finite[name] > base_non_finite[name]:
        return True
    value, base = means[name], base_means[name]
    if math.isnan(value) or math.isnan(base):
        return False  # no finite case on one side: decided by the counts above
    allowance = margin * abs(base) if GUARDED_METRICS[name] else margin
    return value < base - allowance if METRICS[name].higher_is_better else value > base + allowance


def _choose(rows: list[SelectionRow], margin: float, n_cases: int) -> Selection:
    none = next(row for row in rows if row.rule == Postprocessing())
    best = none
    for row in rows:
        if row.eligible and row.means["dice"] > best.means["dice"]:
            best = row
    if best is none:
        reason = (f"none: no rule raised mean Dice without making another metric worse than "
                  f"none by more than the margin ({margin:g})")
    else:
        reason = (f"{best.rule}: highest mean Dice, {best.means['dice']:.4f} against "
                  f"{none.means['dice']:.4f} for none, of the rules that make no metric worse "
                  f"than none by more than the margin ({margin:g})")
    return Selection(rows, best.rule, reason, margin, n_cases)


def format_selection(selection: Selection) -> str:
    """The comparison as a plain-text table, the chosen rule marked with '*', then the reason."""
    metrics = list(selection.rows[0].means)
    header = ["", "rule", *(METRICS[name].title for name in metrics),
              "removed voxels", "removed comps", "worse than none"]
    lines = [header]
    for row in selection.rows:
        cells = ["*" if row.rule == selection.chosen else "", str(row.rule)]
        for name in metrics:
            cell = f"{row.means[name]:.{METRICS[name].decimals}f}"
            if row.non_finite[name]:
                cell += f" ({row.non_finite[name]} non-finite)"
            cells.append(cell)
        cells += [str(row.removed_voxels), str(row.removed_components),
                  ", ".join(row.worse) or "-"]
        lines.append(cells)
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                      for line in lines)
    return (f"{table}\n\n{selection.n_cases} cases; margin {selection.margin:g} (absolute for "
            f"Dice, NSD, RVD; relative for distances)\nchosen: {selection.reason}")
