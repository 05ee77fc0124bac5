"""What a clinician reads off a hemorrhage mask: volume, the ABC/2 estimate, components, slices.

All functions take a mask (z, y, x), where any non-zero voxel is hemorrhage, and its spacing
(z, y, x) in mm. Slices are the z index: the axial slices of a series as loaded.

A class map of the subtypes (:data:`ichseg.labels.SUBTYPES`) is measured twice: as "any
hemorrhage", exactly as a one-class mask, and type by type (:class:`SubtypeMeasures`): each
type's volume, components and slices; ABC/2 on the largest intraparenchymal hematoma, the type it
is defined for; and the imaging items of the ICH score (Hemphill et al., Stroke 2001), reported as
items, not as a score, since the score also needs the Glasgow Coma Scale, the age and whether the
hemorrhage is infratentorial, which a segmentation does not give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from ichseg.connectivity import CONNECTIVITY, label_components
from ichseg.labels import ONE_CLASS, LabelScheme
from ichseg.metrics.overlap import volume_ml
from ichseg.units import voxel_volume_ml

#: Kothari's slice weights: a slice whose area is at least this share of the largest slice's area
#: counts as one slice, at least the second share as half a slice, below it as none.
KOTHARI_FULL = 0.75
KOTHARI_HALF = 0.25
#: The class ABC/2 is defined for, and the one the ICH score's volume item is about.
INTRAPARENCHYMAL = "IPH"
#: The class of the ICH score's other imaging item.
INTRAVENTRICULAR = "IVH"
#: ICH score: a hematoma volume of at least this many mL scores one point (Hemphill et al. 2001).
ICH_SCORE_VOLUME_ML = 30.0


@dataclass(frozen=True)
class ABC2Result:
    """Kothari's ABC/2 estimate and the figures it is made of.

    ``a_mm``: longest diameter on the slice with the largest area (``slice_index``);
    ``b_mm``: longest chord perpendicular to A on that slice; ``c_mm``: Σ slice weights × slice
    spacing; ``slice_weights``: one weight per slice of the mask.
    """

    a_mm: float
    b_mm: float
    c_mm: float
    slice_index: int | None
    slice_weights: tuple[float, ...]
    volume_ml: float
    weighting: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "slice_weights": list(self.slice_weights)}


@dataclass(frozen=True)
class ComponentsResult:
    """Connected hemorrhage regions (26-connectivity), largest first."""

    count: int
    volumes_ml: tuple[float, ...]
    connectivity: int = CONNECTIVITY

    @property
    def largest_ml(self) -> float:
        return self.volumes_ml[0] if self.volumes_ml else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"connectivity": self.connectivity, "count": self.count,
                "largest_ml": self.largest_ml, "volumes_ml": list(self.volumes_ml)}


def hematoma_volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Hemorrhage volume in mL: non-zero voxel count × voxel volume, as the metrics count it."""
    return float(volume_ml(mask, spacing))


def abc2(mask: np.ndarray, spacing: Sequence[float], *, weighting: str = "kothari") -> ABC2Result:
    """ABC/2 (Kothari et al., Stroke 1996) measured on the mask as a reader would on the films.

    ``weighting="kothari"`` weighs each slice by its area relative to the largest (1 from 75 %,
    0.5 from 25 %, 0 below); ``"none"`` counts every slice with hemorrhage as 1, which makes C the
    full height, the ellipsoid case A·B·C/2 ≈ 4/3·π·(A/2)(B/2)(C/2) was derived for.
    """
    if weighting not in ("kothari", "none"):
        raise ValueError(f"unknown ABC/2 weighting {weighting!r} (kothari or none)")
    mask = np.asarray(mask) != 0
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    if not areas.any():
        return ABC2Result(0.0, 0.0, 0.0, None, tuple(0.0 for _ in areas), 0.0, weighting)
    largest = int(np.argmax(areas))
    share = areas / areas[largest]
    if weighting == "kothari":
        weights = np.where(share >= KOTHARI_FULL, 1.0,
                           np.where(share >= KOTHARI_HALF, 0.5, 0.0))
    else:
        weights = (areas > 0).astype(float)
    a_mm, b_mm = _diameters(mask[largest], (float(spacing[1]), float(spacing[2])))
    c_mm = float(weights.sum()) * float(spacing[0])
    return ABC2Result(a_mm=a_mm, b_mm=b_mm, c_mm=c_mm, slice_index=largest,
                      slice_weights=tuple(float(w) for w in weights),
                      volume_ml=a_mm * b_mm * c_mm / 2.0 / 1000.0, weighting=weighting)


def _diameters(region: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """A and B of one slice, in mm, measured to the pixels' edges.

    A is the largest distance between two points of the region's outline (the edge midpoints of
    its pixels); B the longest stretch of hemorrhage along a line perpendicular to A, found by
    sampling lines a quarter pixel apart.
    """
    sy, sx = spacing
    boundary = region & ~ndimage.binary_erosion(region)
    iy, ix = np.nonzero(boundary)
    centres = np.column_stack([iy * sy, ix * sx])
    outline = np.concatenate([centres + offset for offset in
                              ([sy / 2, 0], [-sy / 2, 0], [0, sx / 2], [0, -sx / 2])])
    hull = outline[ConvexHull(outline).vertices]
    distances = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    a_mm = float(distances[first, second])
    along = (hull[second] - hull[first]) / a_mm
    across = np.array([-along[1], along[0]])

    step = min(sy, sx) / 4
    s = np.arange((hull @ along).min() + step / 2, (hull @ along).max(), step)
    t = np.arange((hull @ across).min() + step / 2, (hull @ across).max(), step)
    points = s[:, None, None] * along + t[None, :, None] * across
    rows = np.rint(points[..., 0] / sy).astype(int)
    cols = np.rint(points[..., 1] / sx).astype(int)
    inside = ((rows >= 0) & (rows < region.shape[0]) & (cols >= 0) & (cols < region.shape[1]))
    hit = np.zeros(inside.shape, dtype=np.int8)
    hit[inside] = region[rows[inside], cols[inside]]
    edges = np.diff(np.pad(hit, ((0, 0), (1, 1))), axis=1)
    starts, ends = np.nonzero(edges == 1)[1], np.nonzero(edges == -1)[1]
    b_mm = float((ends - starts).max()) * step if len(starts) else 0.0
    return a_mm, b_mm


def components(mask: np.ndarray, spacing: Sequence[float]) -> ComponentsResult:
    """Connected hemorrhage regions with 26-connectivity (faces, edges and corners touch)."""
    _, counts = label_components(np.asarray(mask) != 0)
    sizes = np.sort(counts)[::-1]
    voxel_ml = voxel_volume_ml(spacing)
    return ComponentsResult(count=len(sizes), volumes_ml=tuple(float(n) * voxel_ml for n in sizes))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected region of ``mask`` (all False when the mask is empty)."""
    labels, counts = label_components(np.asarray(mask) != 0)
    if len(counts) == 0:
        return np.zeros(labels.shape, bool)
    return labels == 1 + int(np.argmax(counts))


def slices_involved(mask: np.ndarray) -> list[int]:
    """The z indices of the slices that hold hemorrhage."""
    mask = np.asarray(mask) != 0
    return [int(k) for k in np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]]


@dataclass(frozen=True)
class HematomaABC2(ABC2Result):
    """ABC/2 measured on one hematoma (``measured_on``: which one), beside that hematoma's
    segmented volume (``segmented_ml``) and the estimate's difference from it."""

    measured_on: str
    segmented_ml: float
    difference_ml: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HematomaABC2:
        return cls(**{**data, "slice_weights": tuple(data["slice_weights"])})


@dataclass(frozen=True)
class SliceExtent:
    """The slices (z indices) holding hemorrhage, each one's hemorrhage area, of ``total`` slices."""

    involved: tuple[int, ...]
    areas_mm2: tuple[float, ...]
    total: int

    @property
    def count(self) -> int:
        return len(self.involved)

    def as_dict(self) -> dict[str, Any]:
        return {"involved": list(self.involved), "areas_mm2": list(self.areas_mm2), "count": self.count,
                "total": self.total}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SliceExtent:
        return cls(tuple(data["involved"]), tuple(data["areas_mm2"]), int(data["total"]))


@dataclass(frozen=True)
class ClassMeasures:
    """One class of a class map (its label ``value``): volume, components and slices."""

    value: int
    volume_ml: float
    voxel_count: int
    components: ComponentsResult
    slices: SliceExtent

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "volume_ml": self.volume_ml, "voxel_count": self.voxel_count,
                "components": self.components.as_dict(), "slices": self.slices.as_dict()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassMeasures:
        return cls(int(data["value"]), float(data["volume_ml"]), int(data["voxel_count"]),
                   _components_from_json(data["components"]), SliceExtent.from_json(data["slices"]))


@dataclass(frozen=True)
class IchScoreImaging:
    """The imaging items of the ICH score, each shown as found, never added up into a score.

    ``iph_volume_ml`` is the segmented volume of every intraparenchymal voxel (the score's
    "ICH volume"; Hemphill et al. measured it by ABC/2, which the report gives beside it).
    """

    iph_volume_ml: float
    intraventricular_blood: bool

    NOT_ASSESSED = ("Glasgow Coma Scale", "age", "infratentorial origin")

    @property
    def iph_volume_at_least_30_ml(self) -> bool:
        return self.iph_volume_ml >= ICH_SCORE_VOLUME_ML

    def to_json(self) -> dict[str, Any]:
        return {"iph_volume_ml": self.iph_volume_ml, "iph_volume_from": "segmented IPH voxels",
                "iph_volume_at_least_30_ml": self.iph_volume_at_least_30_ml,
                "intraventricular_blood": self.intraventricular_blood,
                "not_assessed": list(self.NOT_ASSESSED)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IchScoreImaging:
        return cls(float(data["iph_volume_ml"]), bool(data["intraventricular_blood"]))


@dataclass(frozen=True)
class SubtypeMeasures:
    """A class map measured type by type: every hemorrhage class of its scheme, by name, present
    or not; ABC/2 on the largest intraparenchymal hematoma (None without an IPH class) and the
    ICH score's imaging items (None without IPH and IVH classes)."""

    classes: Mapping[str, ClassMeasures]
    iph_abc2: HematomaABC2 | None = None
    ich_score_imaging: IchScoreImaging | None = None

    @property
    def intraventricular_blood(self) -> bool | None:
        """Whether the map holds intraventricular blood (None when it has no IVH class)."""
        ivh = self.classes.get(INTRAVENTRICULAR)
        return None if ivh is None else ivh.voxel_count > 0

    def to_json(self) -> dict[str, Any]:
        return {"classes": {name: measures.to_json() for name, measures in self.classes.items()},
                "iph_abc2": self.iph_abc2.as_dict() if self.iph_abc2 is not None else None,
                "ich_score_imaging": (self.ich_score_imaging.to_json()
                                      if self.ich_score_imaging is not None else None)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubtypeMeasures:
        abc, score = data.get("iph_abc2"), data.get("ich_score_imaging")
        return cls({str(name): ClassMeasures.from_json(item) for name, item in data["classes"].items()},
                   HematomaABC2.from_json(abc) if abc else None,
                   IchScoreImaging.from_json(score) if score else None)


@dataclass(frozen=True)
class CaseMeasures:
    """Every measure of one case, as the case's JSON and report show them: "any hemorrhage", and
    for a class map of several types also each type (``subtypes``; None for one class)."""

    volume_ml: float
    voxel_count: int
    abc2: HematomaABC2
    components: ComponentsResult
    slices: SliceExtent
    spacing_mm: tuple[float, float, float]
    subtypes: SubtypeMeasures | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"volume_ml": self.volume_ml, "voxel_count": self.voxel_count, "abc2": self.abc2.as_dict(),
                "components": self.components.as_dict(), "slices": self.slices.as_dict(),
                "spacing_mm": list(self.spacing_mm)}
        if self.subtypes is not None:
            data["subtypes"] = self.subtypes.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseMeasures:
        subtypes = data.get("subtypes")
        return cls(float(data["volume_ml"]), int(data["voxel_count"]), HematomaABC2.from_json(data["abc2"]),
                   _components_from_json(data["components"]), SliceExtent.from_json(data["slices"]),
                   (float(data["spacing_mm"][0]), float(data["spacing_mm"][1]), float(data["spacing_mm"][2])),
                   SubtypeMeasures.from_json(subtypes) if subtypes else None)


def _components_from_json(data: Mapping[str, Any]) -> ComponentsResult:
    return ComponentsResult(int(data["count"]), tuple(data["volumes_ml"]),
                            int(data.get("connectivity", CONNECTIVITY)))


def case_measures(mask: np.ndarray, spacing: Sequence[float],
                  labels: LabelScheme = ONE_CLASS) -> CaseMeasures:
    """Every measure of one case: any non-zero voxel is hemorrhage; with a scheme other than
    :data:`~ichseg.labels.ONE_CLASS` the mask is a class map, measured type by type as well.

    ABC/2 measures one hematoma, as a reader would: the largest connected component. Its
    ``difference_ml`` compares the estimate with that component's segmented volume.
    """
    mask = np.asarray(mask)
    return CaseMeasures(
        volume_ml=hematoma_volume_ml(mask, spacing),
        voxel_count=int(np.count_nonzero(mask)),
        abc2=hematoma_abc2(mask, spacing, "largest component"),
        components=components(mask, spacing),
        slices=slice_extent(mask, spacing),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        subtypes=None if labels == ONE_CLASS else subtype_measures(mask, spacing, labels),
    )


def subtype_measures(class_map: np.ndarray, spacing: Sequence[float], labels: LabelScheme) -> SubtypeMeasures:
    """Each hemorrhage class of ``labels`` measured on its own voxels of ``class_map``.

    ABC/2 is measured on the largest 26-connected intraparenchymal component (IPH voxels only),
    as a reader measures the hematoma ABC/2 was derived for.
    """
    class_map = np.asarray(class_map)
    classes = {}
    for value in labels.hemorrhage_values:
        voxels = class_map == value
        classes[labels.name(value)] = ClassMeasures(value, hematoma_volume_ml(voxels, spacing),
                                                    int(np.count_nonzero(voxels)), components(voxels, spacing),
                                                    slice_extent(voxels, spacing))
    if INTRAPARENCHYMAL not in classes:
        return SubtypeMeasures(classes)
    iph = class_map == labels.value(INTRAPARENCHYMAL)
    score = (IchScoreImaging(classes[INTRAPARENCHYMAL].volume_ml, classes[INTRAVENTRICULAR].voxel_count > 0)
             if INTRAVENTRICULAR in classes else None)
    return SubtypeMeasures(classes, hematoma_abc2(iph, spacing, "largest intraparenchymal (IPH) component"),
                           score)


def hematoma_abc2(mask: np.ndarray, spacing: Sequence[float], measured_on: str) -> HematomaABC2:
    """ABC/2 on the largest connected component of ``mask``, beside that component's volume."""
    hematoma = largest_component(mask)
    hematoma_ml = hematoma_volume_ml(hematoma, spacing)
    estimate = abc2(hematoma, spacing)
    return HematomaABC2(**{f.name: getattr(estimate, f.name) for f in fields(ABC2Result)},
                        measured_on=measured_on, segmented_ml=hematoma_ml,
                        difference_ml=estimate.volume_ml - hematoma_ml)


def slice_extent(mask: np.ndarray, spacing: Sequence[float]) -> SliceExtent:
    """The slices of ``mask`` (any non-zero voxel) and the hemorrhage area on each."""
    involved = slices_involved(mask)
    pixel_mm2 = float(spacing[1]) * float(spacing[2])
    return SliceExtent(tuple(involved), tuple(int(np.count_nonzero(mask[k])) * pixel_mm2 for k in involved),
                       int(np.shape(mask)[0]))
