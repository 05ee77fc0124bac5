"""Choose a class map's postprocessing by cross-validation: the intracranial rule on any hemorrhage,
then each class's component rule on that class's metrics.

First, when every case comes with its CT, ``none`` and ``intracranial`` are compared on any
hemorrhage (the union of the classes, scored as one mask), under the rule of
:mod:`ichseg.postprocessing.selection`. Then, on the maps the chosen rule leaves, each class's
candidates (the component rules of :func:`~ichseg.postprocessing.selection.candidate_grid`) are
scored on that class alone (``prediction == k`` against ``reference == k``), over the cases where
the class is in the prediction or the reference, as the per-class evaluation scores it. A class in
no case keeps ``none``. A class's rules touch only its own voxels, so choosing each class apart
chooses them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ichseg.labels import LabelScheme
from ichseg.postprocessing.class_maps import ClassPostprocessing
from ichseg.postprocessing.rules import INTRACRANIAL, Rule
from ichseg.postprocessing.selection import (
    DEFAULT_MARGIN,
    CandidateScores,
    MetricFn,
    Selection,
    candidate_grid,
    check_margin,
    format_selection,
)
from ichseg.postprocessing.sequence import CaseSteps, ImageSource, Postprocessing

#: The rules compared on any hemorrhage.
ON_ANY_HEMORRHAGE = (Postprocessing(), Postprocessing((Rule(INTRACRANIAL),)))


@dataclass(frozen=True)
class ClassCase:
    """One case: the predicted and reference class maps, the spacing, and the CT (or a function
    that loads it) for the intracranial rule."""

    prediction: np.ndarray
    reference: np.ndarray
    spacing: tuple[float, float, float]
    image: ImageSource = None


@dataclass(frozen=True)
class ClassSelection:
    """The choice on any hemorrhage (None when the CTs were not there to compare the intracranial
    rule), each class's (None: the class is in no case), and the rules they make."""

    any_hemorrhage: Selection | None
    classes: dict[str, Selection | None]
    chosen: ClassPostprocessing
    margin: float
    n_cases: int

    def as_dict(self) -> dict[str, Any]:
        """The comparison in plain JSON types, to save beside the chosen rules."""
        return {"chosen": self.chosen.stored(), "margin": self.margin, "n_cases": self.n_cases,
                "any_hemorrhage": None if self.any_hemorrhage is None else self.any_hemorrhage.as_dict(),
                "classes": {name: None if selection is None else selection.as_dict()
                            for name, selection in self.classes.items()}}


def select_class_rules(cases: Sequence[ClassCase], labels: LabelScheme,
                       candidates: Sequence[Rule | Postprocessing | Sequence[Rule]] | None = None,
                       margin: float = DEFAULT_MARGIN, metric_fn: MetricFn | None = None) -> ClassSelection:
    """Choose the rules on any hemorrhage, then each class's (``candidates``: the component rules
    compared per class, by default :func:`candidate_grid` without ``intracranial``); ``metric_fn``
    as :func:`~ichseg.postprocessing.selection.select_rule` takes it."""
    check_margin(margin)
    any_selection, kept = _choose_on_any_hemorrhage(cases, margin, metric_fn)
    per_class = [CandidateScores(candidate_grid(False) if candidates is None else candidates, metric_fn)
                 for _ in labels.hemorrhage_values]
    for case, inside in zip(cases, kept, strict=True):
        prediction = case.prediction if inside is None else np.where(
            np.unpackbits(inside, count=case.prediction.size).reshape(case.prediction.shape), case.prediction, 0)
        for value, scores in zip(labels.hemorrhage_values, per_class, strict=True):
            predicted, reference = prediction == value, case.reference == value
            if predicted.any() or reference.any():
                scores.add(CaseSteps(predicted, case.spacing), reference)
    classes = {labels.name(value): scores.selection(margin) if scores.n_cases else None
               for value, scores in zip(labels.hemorrhage_values, per_class, strict=True)}
    steps = any_selection.chosen if any_selection is not None else Postprocessing()
    chosen = ClassPostprocessing(steps, {name: selection.chosen for name, selection in classes.items()
                                         if selection is not None})
    return ClassSelection(any_selection, classes, chosen, margin, len(cases))


def _choose_on_any_hemorrhage(cases: Sequence[ClassCase], margin: float, metric_fn: MetricFn | None
                              ) -> tuple[Selection | None, list[np.ndarray | None]]:
    """The choice between ``none`` and ``intracranial`` on any hemorrhage (None without every
    case's CT), and per case the voxels the chosen rule keeps, one bit a voxel (None: all)."""
    if not cases or any(case.image is None for case in cases):
        return None, [None] * len(cases)
    scores = CandidateScores(ON_ANY_HEMORRHAGE, metric_fn)
    inside: list[np.ndarray | None] = []
    for case in cases:
        steps = CaseSteps(case.prediction != 0, case.spacing, case.image)
        scores.add(steps, case.reference != 0)
        inside.append(np.packbits(steps.run(ON_ANY_HEMORRHAGE[1].steps)))
    selection = scores.selection(margin)
    return selection, inside if selection.chosen.steps else [None] * len(cases)


def format_class_selection(selection: ClassSelection) -> str:
    """Each comparison as :func:`~ichseg.postprocessing.selection.format_selection` prints it,
    under a heading, then the rules chosen."""
    parts = []
    if selection.any_hemorrhage is not None:
        parts.append(f"Any hemorrhage\n\n{format_selection(selection.any_hemorrhage)}")
    for name, chosen in selection.classes.items():
        body = format_selection(chosen) if chosen is not None else "in no case's prediction or reference: none"
        parts.append(f"{name}\n\n{body}")
    parts.append(f"chosen: {selection.chosen}")
    return "\n\n".join(parts)
