"""The label values of a hemorrhage mask: one class (INSTANCE 2022) or the five subtypes.

INSTANCE labels every hemorrhage voxel 1. BHSD and the MBH-Seg challenge label the type of every
voxel: 0 background, 1 epidural (EDH), 2 intraparenchymal (IPH), 3 intraventricular (IVH),
4 subarachnoid (SAH), 5 subdural (SDH). A :class:`LabelScheme` names the values a data set, a
model folder or a mask uses; it is what ``dataset.json``'s ``labels`` say, and it travels with a
model folder so that prediction, metrics and reports name each class the same way. Whatever the
scheme, "any hemorrhage" is every non-zero voxel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ichseg.errors import IchsegError

BACKGROUND = "background"

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
ONE_CLASS = LabelScheme((BACKGROUND, "hemorrhage"))
#: BHSD and MBH-Seg: 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH.
SUBTYPES = LabelScheme((BACKGROUND, *SUBTYPE_NAMES))
