"""Which series of a study to segment: selection rules as data, applied to series headers.

A study holds several reconstructions of one scan (thick and thin slices, soft-tissue and bone
kernels), a localizer and objects that are not images at all (dose reports, screen captures).
:func:`choose_series` decides, from the headers alone (:class:`SeriesInfo`, as
:func:`ichseg.io.dicom.list_series` reads them), which
series are fit for segmentation and which one to segment, and says why for every series in words
a radiographer understands. Nothing here reads a file: ``ichseg predict`` and the DICOM node apply
the same rules to what they have listed.

Rules are JSON, in the style of MONAI Deploy's series selector (attribute conditions, a regular
expression for text, a list of values for multi-valued attributes, a range for numbers).
ichseg ships a default (``series_rules.json`` beside this module, described in the README);
``--series-rules FILE`` replaces it. The file holds::

    {"description": "...",
     "rules": [{"name": "...", "require": {CONDITIONS}, "exclude": [{CONDITIONS}, ...],
                "reason": "why a series fails, with {Attribute} placeholders"}, ...],
     "prefer": ["closest_thickness", "most_slices", "lowest_series_number"]}

A series is eligible when, for every rule, all ``require`` conditions hold and no ``exclude``
group holds entirely. A condition is ``"Attribute": value`` over :data:`ATTRIBUTES`:

- a string: a regular expression searched case-insensitively (in any value, for multi-valued
  attributes);
- a list of strings: every one of them is among the attribute's values (case-insensitive);
- ``[min, max]`` (numbers, either may be null): an inclusive range;
- a number: equality.

An attribute the headers lack meets no condition. Among the eligible series, ``prefer`` orders
them (:data:`PREFERENCES`); the series UID breaks what is left of a tie, so the choice is stable.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Any

from ichseg.errors import IchsegError
from ichseg.jsonfile import read_json

#: The rules ichseg ships, beside this module.
DEFAULT_RULES_FILE = "series_rules.json"
#: Where the slice normal points most, by axis of the patient coordinate system (x, y, z).
_PLANES = ("sagittal", "coronal", "axial")


class SeriesRulesError(IchsegError):
    """A series rules file that cannot be read or does not follow the format."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder, as its first file's headers describe it: what the selection
    rules test."""

    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]
    study_uid: str = ""
    sop_class: str = ""
    image_type: tuple[str, ...] = ()
    kernel: tuple[str, ...] = ()
    kernel_group: str = ""
    manufacturer: str = ""
    thickness_mm: float | None = None
    n_slices: int = 0
    normal: tuple[float, float, float] | None = None
    """The slice normal (row × column direction cosines) in patient coordinates."""

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def orientation(self) -> str:
        """The plane the slices lie in nearest: axial, coronal, sagittal (or unknown)."""
        if self.normal is None:
            return "unknown"
        normal = self.normal
        return _PLANES[max(range(3), key=lambda axis: abs(normal[axis]))]

    def label(self) -> str:
        """The series as a radiographer finds it in a viewer: number, description, thickness,
        image count, and its UID (for ``--series``)."""
        number = f"#{self.number} " if self.number is not None else ""
        thickness = f"{self.thickness_mm:g} mm, " if self.thickness_mm is not None else ""
        images = f"{self.n_slices} image{'s' if self.n_slices != 1 else ''}"
        return f"series {number}'{self.description}' ({thickness}{images}, {self.uid})"

    def describe(self) -> str:
        """One line for listings and error messages."""
        number = f"#{self.number} " if self.number is not None else ""
        return (f"{self.uid} ({number}'{self.description}', {self.modality or 'no modality'}, "
                f"{self.orientation}, {self.n_files} files)")


def _sop_class_name(info: SeriesInfo) -> str:
    if not info.sop_class:
        return ""
    from pydicom.uid import UID  # the standard's names of the SOP classes (PS3.6)

    return str(UID(info.sop_class).name)


def _angle_to_axial(info: SeriesInfo) -> float | None:
    """Degrees between the slice normal and the patient's head-foot axis (0: axial)."""
    if info.normal is None:
        return None
    return math.degrees(math.acos(min(1.0, abs(info.normal[2]))))


#: What a condition can test, by name: the DICOM keyword where there is one.
ATTRIBUTES: Mapping[str, Callable[[SeriesInfo], Any]] = {
    "Modality": lambda s: s.modality,
    "SOPClassUID": lambda s: s.sop_class,
    "SOPClassName": _sop_class_name,
    "ImageType": lambda s: s.image_type,
    "ConvolutionKernel": lambda s: s.kernel,
    "ConvolutionKernelGroup": lambda s: s.kernel_group,
    "SeriesDescription": lambda s: s.description,
    "SeriesNumber": lambda s: s.number,
    "Manufacturer": lambda s: s.manufacturer,
    "SliceThickness": lambda s: s.thickness_mm,
    "NumberOfSlices": lambda s: s.n_slices,
    "AngleToAxialDeg": _angle_to_axial,
    "Plane": lambda s: s.orientation,
}
_NUMERIC = frozenset({"SeriesNumber", "SliceThickness", "NumberOfSlices", "AngleToAxialDeg"})


@dataclass(frozen=True)
class Condition:
    """One attribute test (see the module's docstring for the four kinds)."""

    attribute: str
    pattern: re.Pattern[str] | None = None
    values: tuple[str, ...] = ()
    bounds: tuple[float | None, float | None] | None = None
    equals: float | None = None

    def holds(self, info: SeriesInfo) -> bool:
        value = ATTRIBUTES[self.attribute](info)
        if value is None or value == "" or value == ():
            return False
        if self.bounds is not None or self.equals is not None:
            return self._holds_number(float(value))
        found = value if isinstance(value, tuple) else (str(value),)
        if self.pattern is not None:
            return any(self.pattern.search(v) for v in found)
        return {v.upper() for v in self.values} <= {v.upper() for v in found}

    def _holds_number(self, value: float) -> bool:
        if self.equals is not None:
            return value == self.equals
        low, high = self.bounds  # type: ignore[misc]
        return (low is None or value >= low) and (high is None or value <= high)

    @classmethod
    def parse(cls, attribute: str, spec: Any) -> Condition:
        if attribute not in ATTRIBUTES:
            raise SeriesRulesError(f"unknown attribute {attribute!r} (known: {', '.join(ATTRIBUTES)})")
        if isinstance(spec, str):
            try:
                return cls(attribute, pattern=re.compile(spec, re.IGNORECASE))
            except re.error as error:
                raise SeriesRulesError(f"{attribute}: bad regular expression {spec!r} ({error})") from None
        if isinstance(spec, list) and spec and all(isinstance(v, str) for v in spec):
            return cls(attribute, values=tuple(spec))
        numeric = attribute in _NUMERIC
        if numeric and _is_number(spec):
            return cls(attribute, equals=float(spec))
        if (numeric and isinstance(spec, list) and len(spec) == 2
                and all(v is None or _is_number(v) for v in spec) and spec != [None, None]):
            return cls(attribute, bounds=(_optional_float(spec[0]), _optional_float(spec[1])))
        kinds = "a regular expression, a list of values" + (", a number or [min, max]" if numeric else "")
        raise SeriesRulesError(f"{attribute}: {spec!r} is not a condition (give {kinds})")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Rule:
    """A named test every eligible series passes, and the words for a series that fails it."""

    name: str
    reason: str
    require: tuple[Condition, ...] = ()
    exclude: tuple[tuple[Condition, ...], ...] = ()

    def passes(self, info: SeriesInfo) -> bool:
        return (all(c.holds(info) for c in self.require)
                and not any(all(c.holds(info) for c in group) for group in self.exclude))

    def why_not(self, info: SeriesInfo) -> str:
        return self.reason.format_map(_display_values(info))

    @classmethod
    def parse(cls, data: Any, index: int) -> Rule:
        where = f"rule {index + 1}"
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise SeriesRulesError(f"{where}: must be an object with a 'name'")
        where = f"rule {index + 1} ({data['name']!r})"
        try:
            return cls._parse(data)
        except SeriesRulesError as error:
            raise SeriesRulesError(f"{where}: {error}") from None

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Rule:
        _no_unknown_keys(data, {"name", "description", "require", "exclude", "reason"})
        require, exclude = data.get("require", {}), data.get("exclude", [])
        if not isinstance(require, Mapping) or not (isinstance(exclude, list)
                                                    and all(isinstance(g, Mapping) and g for g in exclude)):
            raise SeriesRulesError("'require' must be an object and 'exclude' a list of non-empty objects")
        if not require and not exclude:
            raise SeriesRulesError("needs 'require' or 'exclude' conditions")
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise SeriesRulesError("needs a 'reason' (why a series that fails it is skipped)")
        try:
            reason.format_map({name: "" for name in ATTRIBUTES})
        except (KeyError, ValueError, IndexError) as error:
            raise SeriesRulesError(f"reason {reason!r}: bad placeholder {error} "
                                   f"(use {{Attribute}} with an attribute name)") from None
        return cls(data["name"], reason,
                   tuple(Condition.parse(k, v) for k, v in require.items()),
                   tuple(tuple(Condition.parse(k, v) for k, v in group.items()) for group in exclude))


def _no_unknown_keys(data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SeriesRulesError(f"unexpected entry {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _display_values(info: SeriesInfo) -> dict[str, str]:
    """Every attribute as text for a reason: multi-values joined by '\\', numbers short."""
    shown = {}
    for name, get in ATTRIBUTES.items():
        value = get(info)
        if value is None or value == "" or value == ():
            shown[name] = "none"
        elif isinstance(value, tuple):
            shown[name] = "\\".join(value)
        elif isinstance(value, float):
            shown[name] = f"{value:.0f}" if name == "AngleToAxialDeg" else f"{value:g}"
        else:
            shown[name] = str(value)
    return shown


@dataclass(frozen=True)
class Preference:
    """One way of ordering eligible series: a sort key (smaller first) and, for a series that
    loses on it, the words that say why."""

    key: Callable[[SeriesInfo, float | None], float]
    loses: Callable[[SeriesInfo, SeriesInfo, float | None], str]
    wins: Callable[[SeriesInfo, float | None], str]


def _thickness_distance(info: SeriesInfo, target: float | None) -> float:
    if target is None:
        return 0.0
    return math.inf if info.thickness_mm is None else round(abs(info.thickness_mm - target), 3)


def _mm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} mm"


#: Orderings a rules file can name in ``prefer``.
PREFERENCES: Mapping[str, Preference] = {
    "closest_thickness": Preference(
        _thickness_distance,
        lambda s, best, t: (f"its slice thickness ({_mm(s.thickness_mm)}) is further from the model's "
                            f"{_mm(t)} than that of the chosen series ({_mm(best.thickness_mm)})"),
        lambda s, t: f"its slice thickness ({_mm(s.thickness_mm)}) is the closest to the model's {_mm(t)}"),
    "most_slices": Preference(
        lambda s, t: -s.n_slices,
        lambda s, best, t: f"fewer slices ({s.n_slices}) than the chosen series ({best.n_slices})",
        lambda s, t: f"it has the most slices ({s.n_slices})"),
    "lowest_series_number": Preference(
        lambda s, t: math.inf if s.number is None else s.number,
        lambda s, best, t: "a higher series number than the chosen series, which is alike otherwise",
        lambda s, t: "it has the lowest series number of series alike otherwise"),
}


@dataclass(frozen=True)
class SeriesRules:
    """Parsed selection rules; ``source`` names their file in messages."""

    rules: tuple[Rule, ...]
    prefer: tuple[str, ...]
    description: str = ""
    source: str = "series rules"

    @classmethod
    def from_dict(cls, data: Any, source: str = "series rules") -> SeriesRules:
        """Rules from parsed JSON; any problem is a :class:`SeriesRulesError` naming ``source``."""
        try:
            return cls._from_dict(data, source)
        except SeriesRulesError as error:
            raise SeriesRulesError(f"{source}: {error}") from None

    @classmethod
    def _from_dict(cls, data: Any, source: str) -> SeriesRules:
        if not isinstance(data, Mapping):
            raise SeriesRulesError("must be a JSON object with 'rules'")
        _no_unknown_keys(data, {"description", "rules", "prefer"})
        rules = data.get("rules")
        if not isinstance(rules, list) or not rules:
            raise SeriesRulesError("'rules' must be a non-empty list")
        prefer = data.get("prefer", list(PREFERENCES))
        if not isinstance(prefer, list) or not all(isinstance(p, str) and p in PREFERENCES for p in prefer):
            raise SeriesRulesError(f"'prefer' must list some of {', '.join(PREFERENCES)}, got {prefer!r}")
        return cls(tuple(Rule.parse(rule, i) for i, rule in enumerate(rules)), tuple(prefer),
                   str(data.get("description", "")), source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SeriesRules:
        """Read a rules file; any problem is one line naming the file."""
        path = Path(path)
        return cls.from_dict(read_json(path, SeriesRulesError, "series rules"), str(path))

    @classmethod
    def coerce(cls, rules: SeriesRules | str | os.PathLike | None) -> SeriesRules:
        """Rules as given, read from a file, or ichseg's default (None)."""
        if rules is None:
            return default_rules()
        return rules if isinstance(rules, SeriesRules) else cls.load(rules)

    def failed_rule(self, info: SeriesInfo) -> Rule | None:
        """The first rule ``info`` fails, or None when it is eligible."""
        return next((rule for rule in self.rules if not rule.passes(info)), None)


@cache
def default_rules() -> SeriesRules:
    """The rules ichseg ships (:data:`DEFAULT_RULES_FILE`)."""
    text = resources.files("ichseg.io").joinpath(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    return SeriesRules.from_dict(json.loads(text), f"ichseg's {DEFAULT_RULES_FILE}")


@dataclass(frozen=True)
class SeriesSelection:
    """How a study's series is chosen: the rules, and the slice thickness the model was trained
    on (None: unknown, thickness does not decide)."""

    rules: SeriesRules = field(default_factory=default_rules)
    target_thickness_mm: float | None = None


@dataclass(frozen=True)
class SeriesVerdict:
    """What the rules made of one series: eligible or not, chosen or not, and why."""

    series: SeriesInfo
    eligible: bool
    chosen: bool
    reason: str

    def line(self) -> str:
        """One line for the user: the series, segmented or skipped, and why."""
        return f"{self.series.label()}: {'segmented' if self.chosen else 'skipped'}, {self.reason}"


@dataclass(frozen=True)
class SeriesChoice:
    """The series to segment, best first (one, or every eligible one), and a verdict for every
    series in the order given."""

    chosen: tuple[str, ...]
    verdicts: tuple[SeriesVerdict, ...]

    def lines(self) -> list[str]:
        return [verdict.line() for verdict in self.verdicts]


def choose_series(series: Sequence[SeriesInfo], rules: SeriesRules, target_thickness_mm: float | None,
                  all_series: bool = False) -> SeriesChoice:
    """Apply ``rules`` to ``series``: the best eligible series (every eligible one with
    ``all_series``), and why each other series was not chosen. None eligible: ``chosen`` is empty."""
    eligible = [s for s in series if rules.failed_rule(s) is None]
    ranked = sorted(eligible, key=lambda s: (*_rank(s, rules.prefer, target_thickness_mm), s.uid))
    chosen = ranked if all_series else ranked[:1]
    verdicts = []
    for info in series:
        failed = rules.failed_rule(info)
        if failed is not None:
            verdicts.append(SeriesVerdict(info, False, False, failed.why_not(info)))
        elif all_series:
            verdicts.append(SeriesVerdict(info, True, True, "it fits the rules"))
        else:
            reason = _why_ranked(info, ranked, rules.prefer, target_thickness_mm)
            verdicts.append(SeriesVerdict(info, True, info is ranked[0], reason))
    return SeriesChoice(tuple(s.uid for s in chosen), tuple(verdicts))


def _rank(info: SeriesInfo, prefer: Sequence[str], target: float | None) -> tuple[float, ...]:
    return tuple(PREFERENCES[name].key(info, target) for name in prefer)


def _why_ranked(info: SeriesInfo, ranked: Sequence[SeriesInfo], prefer: Sequence[str],
                target: float | None) -> str:
    """Why the best eligible series was chosen, or why another eligible one was not."""
    best = ranked[0]
    if len(ranked) == 1:
        return "the only series that fits the rules"
    rival = ranked[1] if info is best else best
    for name in prefer:
        preference = PREFERENCES[name]
        if preference.key(info, target) != preference.key(rival, target):
            if info is best:
                return f"it fits the rules and {preference.wins(info, target)}"
            return f"it fits the rules, but {preference.loses(info, best, target)}"
    if info is best:
        return "it fits the rules and comes first of series alike in every preference (by UID)"
    return "it fits the rules, but the chosen series is alike in every preference and comes first by UID"
