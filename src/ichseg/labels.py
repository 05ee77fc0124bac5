"""The label values of a hemorrhage mask: one class (INSTANCE 2022) or the five subtypes.

INSTANCE labels every hemorrhage voxel 1. BHSD and the MBH-Seg challenge label the type of every
voxel: 0 background, 1 epidural (EDH), 2 intraparenchymal (IPH), 3 intraventricular (IVH),
4 subarachnoid (SAH), 5 subdural (SDH). A :class:`LabelScheme` names the values a data set, a
model folder or a mask uses; it is what ``dataset.json``'s ``labels`` say, and it travels with a
model folder so that prediction, metrics and reports name each class the same way. Whatever the
scheme, "any hemorrhage" is every non-zero voxel.

A data set that numbers its classes otherwise is brought to ichseg's values by a
:class:`LabelMapping`, read from what the data set declares (:func:`declared_label_mapping`) or
given by the user as ``EDH=1,IPH=2,...`` (:func:`parse_label_mapping`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ichseg.errors import IchsegError

BACKGROUND = "background"
#: The one class of INSTANCE-style data: hemorrhage of any type.
HEMORRHAGE = "hemorrhage"

#: Each subtype's abbreviation and full name, in the order of its label value (1..5).
SUBTYPE_NAMES: Mapping[str, str] = {
    "EDH": "epidural",
    "IPH": "intraparenchymal",
    "IVH": "intraventricular",
    "SAH": "subarachnoid",
    "SDH": "subdural",
}


class LabelError(IchsegError):
    """A label scheme or a mapping of label values that cannot be used."""


@dataclass(frozen=True)
class LabelScheme:
    """Class names by label value: ``names[0]`` is the background, ``names[k]`` the class of value k."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.names) < 2 or self.names[0] != BACKGROUND:
            raise LabelError(f"a label scheme starts with {BACKGROUND!r} and has at least one class, "
                             f"got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise LabelError(f"label names repeat: {list(self.names)}")

    @property
    def n_classes(self) -> int:
        """Classes including the background (what nnU-Net's softmax has)."""
        return len(self.names)

    @property
    def is_multiclass(self) -> bool:
        """More than one hemorrhage class (the subtypes), not just hemorrhage or not."""
        return len(self.names) > 2

    @property
    def hemorrhage_values(self) -> tuple[int, ...]:
        """The label values that mean hemorrhage of some type: 1..K-1."""
        return tuple(range(1, len(self.names)))

    def name(self, value: int) -> str:
        return self.names[value]

    def value(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelError(f"no class {name!r} (classes: {', '.join(self.names[1:])})") from None

    def to_dataset_json(self) -> dict[str, int]:
        """nnU-Net's ``dataset.json`` ``labels`` entry: name -> value."""
        return {name: value for value, name in enumerate(self.names)}

    @classmethod
    def from_dataset_json(cls, labels: Mapping[str, object]) -> LabelScheme:
        """From nnU-Net's ``labels`` entry (values 0..K-1, each once; region labels are refused)."""
        values: dict[int, str] = {}
        for name, value in labels.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise LabelError(f"label {name!r}: value {value!r} is not a whole number (region-based "
                                 f"labels are not supported)")
            if value in values:
                raise LabelError(f"labels {values[value]!r} and {name!r} share the value {value}")
            values[value] = str(name)
        if sorted(values) != list(range(len(values))):
            raise LabelError(f"label values must run 0..K-1 without holes, got {sorted(values)}")
        return cls(tuple(values[v] for v in range(len(values))))


#: INSTANCE 2022 and PhysioNet CT-ICH: hemorrhage or not.
ONE_CLASS = LabelScheme((BACKGROUND, HEMORRHAGE))
#: BHSD and MBH-Seg: 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH.
SUBTYPES = LabelScheme((BACKGROUND, *SUBTYPE_NAMES))


@dataclass(frozen=True)
class LabelMapping:
    """How a source's label values become ichseg's.

    ``values`` maps every value the source declares (0, the background, always among them) to
    the value of its class in ``scheme``; several source values may share a class. A voxel with
    a value the source does not declare cannot be mapped (:meth:`undeclared_values`).
    """

    scheme: LabelScheme
    values: Mapping[int, int]

    def __post_init__(self) -> None:
        if self.values.get(0) != 0:
            raise LabelError(f"a label mapping keeps 0 as the background, got {dict(self.values)}")
        wrong = sorted(v for v in self.values.values() if not 0 <= v < self.scheme.n_classes)
        if wrong:
            raise LabelError(f"label values {wrong} are not classes of {list(self.scheme.names)}")

    @classmethod
    def identity(cls, scheme: LabelScheme) -> LabelMapping:
        """A source already numbered as ``scheme``."""
        return cls(scheme, {value: value for value in range(scheme.n_classes)})

    @property
    def source_values(self) -> tuple[int, ...]:
        return tuple(sorted(self.values))

    def undeclared_values(self, array: np.ndarray) -> tuple[np.ndarray, int]:
        """The distinct values of ``array`` the source does not declare, and their voxel count."""
        outside = np.isin(array, self.source_values, invert=True)
        return np.unique(array[outside]), int(np.count_nonzero(outside))

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``array`` in ichseg's values (uint8); every value must be declared."""
        table = np.zeros(max(self.values) + 1, dtype=np.uint8)
        for source, target in self.values.items():
            table[source] = target
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.integer):  # labels stored as floats: whole values, checked
            array = array.astype(np.min_scalar_type(len(table) - 1))
        return table[array]

    def __str__(self) -> str:
        """The ``--labels`` text that gives this mapping, e.g. ``IPH=1,SDH=2+3``."""
        by_class: dict[int, list[int]] = {}
        for source, target in sorted(self.values.items()):
            if source != 0:
                by_class.setdefault(target, []).append(source)
        return ",".join(f"{self.scheme.name(target)}={'+'.join(map(str, sources))}"
                        for target, sources in sorted(by_class.items()))


def class_name(name: str) -> str | None:
    """ichseg's name for a class a source calls ``name`` (any case; a subtype by abbreviation or
    full name, ``IPH`` or ``intraparenchymal``), or None if ichseg has no such class."""
    wanted = name.strip().lower()
    if wanted in (BACKGROUND, HEMORRHAGE):
        return wanted
    for abbreviation, full in SUBTYPE_NAMES.items():
        if wanted in (abbreviation.lower(), full):
            return abbreviation
    return None


def parse_label_mapping(text: str) -> LabelMapping:
    """The mapping ``--labels`` gives: ``NAME=VALUE[+VALUE...]``, comma-separated.

    NAME is a subtype (EDH, IPH, IVH, SAH, SDH, or epidural, intraparenchymal, intraventricular,
    subarachnoid, subdural), ``hemorrhage`` for a one-class data set, or ``background`` for
    source values to treat as background; VALUE is the source's label value. ``IPH=1,SDH=2``
    imports a source whose 1 is intraparenchymal as ichseg's 2 (IPH) and its 2 as 5 (SDH);
    ``hemorrhage=255`` a one-class source that marks hemorrhage 255; ``hemorrhage=1+2+3+4+5``
    any subtype source as one class. Undeclared values are refused on import.
    """
    pairs = []
    for item in text.split(","):
        name, equals, values = item.partition("=")
        if not equals or not name.strip() or not values.strip():
            raise LabelError(f"--labels {text!r}: expected NAME=VALUE[+VALUE...] items separated by "
                             f"commas, got {item.strip()!r}")
        for value in values.split("+"):
            if not value.strip().isdecimal():
                raise LabelError(f"--labels {text!r}: {value.strip()!r} is not a label value "
                                 f"(a whole number >= 0)")
            pairs.append((name, int(value)))
    return _mapping(pairs, f"--labels {text!r}")


def declared_label_mapping(labels: Mapping[str, object], where: str = "labels") -> LabelMapping:
    """The mapping a data set's own declaration gives (nnU-Net v2's ``labels``, name -> value,
    or v1's, value -> name, as in BHSD's ``dataset.json``).

    Value 0 is the background whatever its name. One other class is hemorrhage whatever its name
    (INSTANCE, PhysioNet); several must be subtypes, by abbreviation or full name.
    """
    pairs = [(name, value) for name, value in _declared_pairs(labels, where) if value != 0]
    background = [(name, value) for name, value in pairs if class_name(name) == BACKGROUND]
    foreground = [(name, value) for name, value in pairs if class_name(name) != BACKGROUND]
    if len(foreground) == 1:
        foreground = [(HEMORRHAGE, foreground[0][1])]
    return _mapping(background + foreground, where)


def _declared_pairs(labels: Mapping[str, object], where: str) -> Iterable[tuple[str, int]]:
    version_1 = all(str(key).isdecimal() and isinstance(value, str) for key, value in labels.items())
    for key, value in labels.items():
        name, number = (value, int(key)) if version_1 else (key, value)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise LabelError(f"{where}: label {name!r} has value {number!r}, not a whole number >= 0 "
                             f"(region-based labels are not supported)")
        yield str(name), number


def _mapping(pairs: Iterable[tuple[str, int]], where: str) -> LabelMapping:
    """Check (name, source value) pairs and build the mapping onto ONE_CLASS or SUBTYPES."""
    values: dict[int, str] = {}
    for given, value in pairs:
        name = class_name(given)
        if name is None:
            raise LabelError(f"{where}: unknown class {given!r}; ichseg knows {', '.join(SUBTYPE_NAMES)} "
                             f"(or their full names), {HEMORRHAGE} (one class) and {BACKGROUND}")
        if value == 0 and name != BACKGROUND:
            raise LabelError(f"{where}: value 0 is the background, not {given!r}")
        if value in values and values[value] != name:
            raise LabelError(f"{where}: value {value} is given to both {values[value]!r} and {name!r}")
        values[value] = name
    classes = set(values.values()) - {BACKGROUND}
    if not classes:
        raise LabelError(f"{where}: no hemorrhage class")
    if HEMORRHAGE in classes and len(classes) > 1:
        raise LabelError(f"{where}: {HEMORRHAGE!r} (one class) cannot be mixed with subtypes "
                         f"({', '.join(sorted(classes - {HEMORRHAGE}))})")
    scheme = ONE_CLASS if HEMORRHAGE in classes else SUBTYPES
    mapping = {value: scheme.value(name) if name != BACKGROUND else 0 for value, name in values.items()}
    return LabelMapping(scheme, {0: 0, **mapping})
