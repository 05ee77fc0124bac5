"""Postprocessing of a class map (several hemorrhage types): rules on any hemorrhage, then per class.

A voxel outside the skull is no hemorrhage of any type, so rules on the CT's voxels
(``intracranial``) and any sequence given without classes apply to "any hemorrhage", the union
of the classes; a voxel they remove becomes background whatever its class. Then each class's
own component rules judge the components of that class alone (a small subarachnoid trace and a
small epidural lens need not share a threshold). A class's voxels are the same whether another
class's rule keeps or removes its components, so each class's rules can be chosen apart
(:mod:`ichseg.postprocessing.class_selection`).

Stored as ``{"steps": [...], "classes": {"EDH": [...], ...}}``; files without ``classes`` (a
one-class folder's, and those written before classes existed) read as a
:class:`~ichseg.postprocessing.sequence.Postprocessing` and apply to any hemorrhage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ichseg.labels import LabelScheme
from ichseg.postprocessing.rules import Rule, RuleError
from ichseg.postprocessing.sequence import (
    CaseSteps,
    ImageSource,
    PostprocessedCase,
    Postprocessing,
)

Rules = Rule | Postprocessing | Sequence[Rule]


@dataclass(frozen=True)
class ClassPostprocessing:
    """``steps`` on any hemorrhage, then each class's component rules (``classes``, by class
    name) on that class's voxels. Classes without a step are dropped: they change nothing."""

    steps: Postprocessing = field(default_factory=Postprocessing)
    classes: Mapping[str, Postprocessing] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", Postprocessing.of(self.steps))
        classes = {str(name): Postprocessing.of(rules) for name, rules in dict(self.classes).items()}
        for name, rules in classes.items():
            if rules.needs_image:
                raise RuleError(f"postprocessing of class {name!r}: {rules.name} reads the CT and "
                                f"applies to any hemorrhage, not to one class")
        object.__setattr__(self, "classes", {name: rules for name, rules in classes.items() if rules.steps})

    @classmethod
    def of(cls, rules: Rules | ClassPostprocessing) -> ClassPostprocessing:
        """Rules given without classes as rules on any hemorrhage."""
        return rules if isinstance(rules, ClassPostprocessing) else cls(Postprocessing.of(rules))

    @property
    def name(self) -> str:
        """The rules' names, e.g. ``intracranial; SAH: min_volume`` (``none`` without any)."""
        return self._describe(lambda rules: rules.name)

    def __str__(self) -> str:
        return self._describe(str)

    def _describe(self, text: Callable[[Postprocessing], str]) -> str:
        parts = [text(self.steps)] if self.steps.steps or not self.classes else []
        parts += [f"{name}: {text(rules)}" for name, rules in self.classes.items()]
        return "; ".join(parts)

    @property
    def needs_image(self) -> bool:
        return self.steps.needs_image

    def stored(self) -> dict[str, Any]:
        """The JSON form (see the module's docstring)."""
        return {"steps": self.steps.to_list(),
                "classes": {name: rules.to_list() for name, rules in self.classes.items()}}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ClassPostprocessing:
        classes = data.get("classes")
        if not isinstance(classes, Mapping):
            raise RuleError(f"'classes' must map class names to lists of rules, got {classes!r}")
        return cls(Postprocessing.from_list(data.get("steps", [])),
                   {name: Postprocessing.from_list(rules) for name, rules in classes.items()})

    def check_classes(self, labels: LabelScheme) -> None:
        """RuleError unless every class named is a hemorrhage class of ``labels``."""
        unknown = sorted(set(self.classes) - set(labels.names[1:]))
        if unknown:
            raise RuleError(f"postprocessing rules for class {unknown[0]!r}, which the model does not "
                            f"segment (classes: {', '.join(labels.names[1:])})")


def postprocess_classes(class_map: np.ndarray, spacing: tuple[float, float, float],
                        rules: Rules | ClassPostprocessing, labels: LabelScheme,
                        image: ImageSource = None) -> PostprocessedCase:
    """Apply ``rules`` to a (z, y, x) map of ``labels``' values; ``image`` is the CT in the map's
    geometry, needed by ``intracranial``. The report is the one-class report of the rules on any
    hemorrhage when there are no class rules; with them, the totals, the report of the steps on
    any hemorrhage (``any_hemorrhage``, None without such steps) and each class's (``classes``)."""
    rules = ClassPostprocessing.of(rules)
    rules.check_classes(labels)
    class_map = np.asarray(class_map)
    union = CaseSteps(class_map != 0, spacing, image)
    result = np.where(union.run(rules.steps.steps), class_map, 0).astype(np.uint8)
    if not rules.classes:
        return PostprocessedCase(result, union.report(rules.steps), union.space_used)
    reports = {}
    for name, class_rules in rules.classes.items():
        marked = result == labels.value(name)
        steps = CaseSteps(marked, spacing)
        result[marked & ~steps.run(class_rules.steps)] = 0
        reports[name] = steps.report(class_rules)
    removed = int(np.count_nonzero(class_map) - np.count_nonzero(result))
    report = {"rule": rules.name, "removed_voxels": removed, "removed_ml": removed * union.input.voxel_ml,
              "any_hemorrhage": union.report(rules.steps) if rules.steps.steps else None,
              "classes": reports}
    return PostprocessedCase(result, report, union.space_used)

