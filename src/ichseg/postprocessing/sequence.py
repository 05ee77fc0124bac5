"""Postprocessing as a sequence of rules: applied in order, reported per case, saved as data.

A sequence is stored as ``[{"name": ..., "params": {...}}, ...]``: the rules in the order they
apply, none when the list is empty (:mod:`ichseg.postprocessing.storage` keeps it in a model
folder). The usual sequence is ``intracranial`` then a component rule: the voxels outside the
skull go first, then the components are judged on what is left.

A case's report (its JSON's ``postprocessing``) for one rule is that rule's report: what it
removed in voxels, mL and components (and, for ``intracranial``, the components it trimmed, the
space's volume, and whether it declined and why). For several rules it holds each rule's report
under ``steps`` and the totals beside them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ichseg.io.ctimage import CTImage
from ichseg.postprocessing.intracranial import (
    IntracranialSpace,
    find_intracranial_space,
)
from ichseg.postprocessing.rules import (
    INTRACRANIAL,
    RULES,
    Components,
    Rule,
    RuleError,
    find_components,
    kept_components,
    removal_report,
)

#: The CT a rule on voxels reads: an image (any orientation), a canonical array with the mask's
#: spacing, or a function that loads either when it is first needed.
ImageSource = CTImage | np.ndarray | Callable[[], CTImage | np.ndarray] | None


@dataclass(frozen=True)
class Postprocessing:
    """Rules applied one after the other (``none`` steps are dropped: they change nothing)."""

    steps: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not all(isinstance(step, Rule) for step in steps):
            raise TypeError(f"postprocessing steps must be rules, got {steps!r}")
        object.__setattr__(self, "steps", tuple(step for step in steps if step.name != "none"))

    @classmethod
    def of(cls, rules: Rule | Postprocessing | Sequence[Rule]) -> Postprocessing:
        """A rule, a sequence of rules or a postprocessing, as a postprocessing."""
        if isinstance(rules, Postprocessing):
            return rules
        return cls((rules,) if isinstance(rules, Rule) else tuple(rules))

    @property
    def name(self) -> str:
        """The rules' names in order, e.g. ``intracranial then min_volume``."""
        return " then ".join(step.name for step in self.steps) or "none"

    def __str__(self) -> str:
        return " then ".join(str(step) for step in self.steps) or "none"

    @property
    def needs_image(self) -> bool:
        return any(RULES[step.name].needs_image for step in self.steps)

    def to_list(self) -> list[dict[str, Any]]:
        return [step.to_dict() for step in self.steps]

    @classmethod
    def from_list(cls, data: Any) -> Postprocessing:
        if not isinstance(data, list):
            raise RuleError(f"postprocessing steps must be a list of rules, got {data!r}")
        return cls(tuple(Rule.from_dict(step) for step in data))


@dataclass(frozen=True)
class PostprocessedCase:
    """A case's mask after postprocessing, what was removed, and the intracranial space the
    ``intracranial`` rule used (None when no rule needed it)."""

    mask: np.ndarray
    report: dict[str, Any]
    intracranial: IntracranialSpace | None = None


def postprocess(mask: np.ndarray, spacing: tuple[float, float, float],
                rules: Rule | Postprocessing | Sequence[Rule],
                image: ImageSource = None) -> PostprocessedCase:
    """Apply ``rules`` to a (z, y, x) mask; ``image`` is the CT in the mask's geometry, needed
    by ``intracranial``."""
    postprocessing = Postprocessing.of(rules)
    case = CaseSteps(mask, spacing, image)
    result = case.run(postprocessing.steps)
    return PostprocessedCase(result, case.report(postprocessing), case.space_used)


def apply_rule(mask: np.ndarray, spacing: tuple[float, float, float],
               rule: Rule | Postprocessing | Sequence[Rule],
               image: ImageSource = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply ``rule`` (or rules, in order) to a (z, y, x) mask; return the boolean result and
    what was removed. ``image``, the CT in the mask's geometry, is needed by ``intracranial``."""
    done = postprocess(mask, spacing, rule, image)
    return done.mask, done.report


class CaseSteps:
    """One case's mask through any sequences of rules.

    A prefix that several sequences share (the selection tries many on each case) is applied
    once, and the intracranial space is found once, when a rule first needs it.
    """

    def __init__(self, mask: np.ndarray, spacing: tuple[float, float, float],
                 image: ImageSource = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.spacing = spacing
        self.input = find_components(mask, spacing)
        self._image = image
        self._space: IntracranialSpace | None = None
        self._done: dict[tuple[str, ...], tuple[np.ndarray, list[dict[str, Any]]]] = {
            (): (mask, [])}

    @property
    def space_used(self) -> IntracranialSpace | None:
        return self._space

    def run(self, steps: Sequence[Rule]) -> np.ndarray:
        """The mask after ``steps``."""
        return self._through(tuple(steps))[0]

    def removed(self, steps: Sequence[Rule]) -> tuple[int, int]:
        """Voxels and whole components of the input that ``steps`` remove."""
        mask = self.run(steps)
        left = np.bincount(self.input.labels[mask], minlength=self.input.count + 1)[1:]
        return int(self.input.voxels.sum() - left.sum()), int((left == 0).sum())

    def report(self, postprocessing: Postprocessing) -> dict[str, Any]:
        """What ``postprocessing`` removed, in plain JSON types (see the module's docstring)."""
        steps = postprocessing.steps
        if not steps:
            keep_all = np.ones(self.input.count, dtype=bool)
            return removal_report(self.input, keep_all, Rule("none"))
        mask, reports = self._through(steps)
        if len(reports) == 1:
            return reports[0]
        voxels, components = self.removed(steps)
        return {"rule": postprocessing.name, "steps": reports, "removed_voxels": voxels,
                "removed_ml": voxels * self.input.voxel_ml, "removed_components": components,
                "kept_components": find_components(mask, self.spacing).count}

    def _through(self, steps: tuple[Rule, ...]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        key = tuple(json.dumps(step.to_dict(), sort_keys=True) for step in steps)
        if key not in self._done:
            before, reports = self._through(steps[:-1])
            after, report = self._apply(before, steps[-1])
            self._done[key] = (after, [*reports, report])
        return self._done[key]

    def _apply(self, mask: np.ndarray, rule: Rule) -> tuple[np.ndarray, dict[str, Any]]:
        components = find_components(mask, self.spacing)
        if rule.name == INTRACRANIAL:  # an empty mask has nothing outside: no need to look
            return _outside_removed(components, self.space() if components.count else None)
        keep = kept_components(components, rule)
        return components.mask_of(keep), removal_report(components, keep, rule)

    def space(self) -> IntracranialSpace:
        """The case's intracranial space, found on first use."""
        if self._space is None:
            image = self._image() if callable(self._image) else self._image
            if image is None:
                raise RuleError(f"postprocessing rule {INTRACRANIAL!r} needs the CT image")
            if np.shape(image.array if isinstance(image, CTImage) else image) != \
                    self.input.labels.shape:
                raise RuleError(f"postprocessing rule {INTRACRANIAL!r}: the CT's shape differs "
                                f"from the mask's {self.input.labels.shape}")
            self._space = find_intracranial_space(image, self.spacing)
        return self._space


def _outside_removed(components: Components,
                     space: IntracranialSpace | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The mask's voxels where ``space`` has room for a bleed (inside it, off its bone rim), and
    the report of what went: nothing when the space was not found (the rule then declines, and
    says why) or not looked for (an empty mask)."""
    mask = components.labels > 0
    report: dict[str, Any] = {"rule": INTRACRANIAL, "params": {}}
    room = None if space is None else space.room
    if space is None or room is None:
        return mask, {**report, "removed_voxels": 0, "removed_ml": 0.0, "removed_components": 0,
                      "trimmed_components": 0, "kept_components": components.count,
                      "intracranial_ml": None, "declined": None if space is None else space.reason}
    kept = mask & room
    left = np.bincount(components.labels[kept], minlength=components.count + 1)[1:]
    removed = int(components.voxels.sum() - left.sum())
    gone = left == 0
    return kept, {**report, "removed_voxels": removed, "removed_ml": removed * components.voxel_ml,
                  "removed_components": int(gone.sum()),
                  "trimmed_components": int(((left > 0) & (left < components.voxels)).sum()),
                  "kept_components": int((~gone).sum()),
                  "intracranial_ml": round(space.volume_ml, 1), "declined": None}
