"""Postprocessing rules, stored as data (a name and its parameters).

A component rule decides which connected components of a predicted mask to keep; the
``intracranial`` rule removes the voxels outside the intracranial space found from the CT
(:mod:`ichseg.postprocessing.intracranial`). Rules are applied in sequence and saved in a model
folder as JSON (:mod:`ichseg.postprocessing.sequence`); a name is looked up in :data:`RULES`
when loaded, so a saved choice never carries executable code (nnU-Net pickles its
postprocessing functions; a pickle runs whatever it contains when loaded).

Components are 26-connected, as the metrics and the clinical measures count them
(:mod:`ichseg.connectivity`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import ndimage

from ichseg.connectivity import label_components
from ichseg.errors import IchsegError
from ichseg.units import voxel_volume_ml


class RuleError(IchsegError):
    """A postprocessing rule or parameter that does not exist or is out of range."""


@dataclass(frozen=True)
class Components:
    """The connected components of a mask and the sizes the rules decide on."""

    labels: np.ndarray
    """Component number of each voxel, 0 for background."""
    voxels: np.ndarray
    """Voxel count of components 1..n (index 0 is component 1)."""
    slices: np.ndarray
    """Number of axial slices (axis 0) each component spans."""
    voxel_ml: float

    @property
    def count(self) -> int:
        return len(self.voxels)

    def mask_of(self, keep: np.ndarray) -> np.ndarray:
        """The boolean mask of the components where ``keep`` is True."""
        return np.concatenate(([False], keep))[self.labels]


def find_components(mask: np.ndarray, spacing: tuple[float, float, float]) -> Components:
    """Label the 26-connected components of a (z, y, x) mask with spacing (z, y, x) in mm."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or len(spacing) != 3:
        raise ValueError(f"expected a 3D mask with a 3D spacing, got shape {mask.shape} and "
                         f"spacing {tuple(spacing)}")
    labels, voxels = label_components(mask)
    # A 26-connected component covers a contiguous run of slices, so its extent is its count.
    slices = np.array([box[0].stop - box[0].start for box in ndimage.find_objects(labels)],
                      dtype=np.int64)
    return Components(labels, voxels, slices, voxel_ml=voxel_volume_ml(spacing))


def _keep_all(components: Components, params: Mapping[str, Any]) -> np.ndarray:
    return np.ones(components.count, dtype=bool)


def _keep_largest(components: Components, params: Mapping[str, Any]) -> np.ndarray:
    """Keep the component with the most voxels (the first of equals)."""
    keep = np.zeros(components.count, dtype=bool)
    if components.count:
        keep[np.argmax(components.voxels)] = True
    return keep


def _keep_min_volume(components: Components, params: Mapping[str, Any]) -> np.ndarray:
    # Compared in mm³ so that sizes that are whole in mm³ are compared exactly.
    return components.voxels * (components.voxel_ml * 1000.0) >= params["min_ml"] * 1000.0


def _keep_min_slices(components: Components, params: Mapping[str, Any]) -> np.ndarray:
    return components.slices >= params["min_slices"]


@dataclass(frozen=True)
class RuleKind:
    """What a rule name means: which components it keeps (None: a rule on the CT's voxels, which
    needs the image) and which parameters it takes."""

    keep: Callable[[Components, Mapping[str, Any]], np.ndarray] | None
    parameters: Mapping[str, type]
    meaning: str

    @property
    def needs_image(self) -> bool:
        return self.keep is None


#: The rule that removes the voxels outside the intracranial space.
INTRACRANIAL = "intracranial"

#: Every rule ichseg knows, by name; parameters are positive ints or floats.
RULES: Mapping[str, RuleKind] = {
    "none": RuleKind(_keep_all, {}, "keep every component"),
    "keep_largest": RuleKind(_keep_largest, {}, "keep only the largest component (nnU-Net's rule)"),
    "min_volume": RuleKind(_keep_min_volume, {"min_ml": float},
                           "remove components smaller than min_ml millilitres"),
    "min_slices": RuleKind(_keep_min_slices, {"min_slices": int},
                           "remove components spanning fewer than min_slices axial slices"),
    INTRACRANIAL: RuleKind(None, {}, "remove the voxels outside the intracranial space found "
                                     "from the CT (the skull in HU) and those on its rim that read "
                                     "as bone"),
}


@dataclass(frozen=True)
class Rule:
    """A rule name and its parameters, validated on creation."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _validated_params(self.name, self.params))

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.params.items())})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Any) -> Rule:
        """Read ``{"name": ..., "params": {...}}`` (params may be left out when there are none)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise RuleError(f"a postprocessing rule must be an object with a 'name', got {data!r}")
        extra = sorted(set(data) - {"name", "params"})
        if extra:
            raise RuleError(f"postprocessing rule {data['name']!r}: unexpected entry {extra[0]!r}")
        params = data.get("params", {})
        if not isinstance(params, Mapping):
            raise RuleError(f"postprocessing rule {data['name']!r}: 'params' must be an object")
        return cls(data["name"], params)


def _validated_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    kind = RULES.get(name)
    if kind is None:
        raise RuleError(f"unknown postprocessing rule {name!r} (choose from {', '.join(RULES)})")
    takes = ", ".join(kind.parameters) or "no parameters"
    unknown = sorted(set(params) - set(kind.parameters))
    if unknown:
        raise RuleError(f"postprocessing rule {name!r} has no parameter {unknown[0]!r} "
                        f"(it takes {takes})")
    validated = {}
    for param, kind_type in kind.parameters.items():
        if param not in params:
            raise RuleError(f"postprocessing rule {name!r} needs parameter {param!r}")
        value = params[param]
        wanted = Integral if kind_type is int else Real
        if (not isinstance(value, wanted) or isinstance(value, bool) or not math.isfinite(value)
                or value <= 0):
            what = "a positive integer" if kind_type is int else "a positive number"
            raise RuleError(f"postprocessing rule {name!r}: {param} must be {what}, got {value!r}")
        validated[param] = kind_type(value)
    return validated


def kept_components(components: Components, rule: Rule) -> np.ndarray:
    """Which components the component rule ``rule`` keeps, one boolean per component."""
    keep = RULES[rule.name].keep
    if keep is None:
        raise ValueError(f"{rule.name!r} is not a component rule")
    return keep(components, rule.params)


def removal_report(components: Components, keep: np.ndarray, rule: Rule) -> dict[str, Any]:
    """What applying ``rule`` did, in plain JSON types, for the case's JSON."""
    removed = components.voxels[~keep]
    return {
        "rule": rule.name,
        "params": dict(rule.params),
        "removed_voxels": int(removed.sum()),
        "removed_ml": float(removed.sum() * components.voxel_ml),
        "removed_components": int((~keep).sum()),
        "kept_components": int(keep.sum()),
    }
