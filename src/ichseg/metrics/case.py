"""All metrics of one case, with the checks a pair of masks must pass first.

INSTANCE-compatible values (see :mod:`ichseg.metrics.surface` for the surface algorithm). Empty
masks follow the challenge where it defines a value and DESIGN §5 where it does not:

- empty prediction: Dice 0, HD and HD95 inf, NSD 0, RVD 1 (signed -1);
- empty reference: Dice 0, HD and HD95 inf, NSD 0, RVD NaN (undefined: nothing to divide by);
- both empty: Dice 1, HD and HD95 0, NSD 1, RVD NaN.

The false-positive volume (``fp_ml``) and its component count (``fp_components``) are the
predicted voxels outside the reference, whatever the reference holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ichseg.errors import InputError
from ichseg.labels import LabelScheme
from ichseg.metrics.overlap import dice, false_positives, relative_volume_difference, volume_ml
from ichseg.metrics.surface import bounding_box, hausdorff_distance, surface_dice, surface_distances

#: NSD tolerance in mm of the INSTANCE 2022 organizers' evaluation script (an in-plane pixel size).
DEFAULT_NSD_TOLERANCE_MM = 0.42


@dataclass(frozen=True)
class Metric:
    """How a metric is named, printed and ranked."""

    key: str
    label: str
    unit: str = ""
    higher_is_better: bool | None = None
    decimals: int = 4

    @property
    def title(self) -> str:
        """Column title such as ``HD (mm) ↓``."""
        unit = f" ({self.unit})" if self.unit else ""
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        return f"{self.label}{unit}{arrow}"


#: The values :func:`case_metrics` returns, in column order.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("dice", "Dice", higher_is_better=True),
    Metric("hd", "HD", "mm", higher_is_better=False, decimals=2),
    Metric("hd95", "HD95", "mm", higher_is_better=False, decimals=2),
    Metric("nsd", "NSD", higher_is_better=True),
    Metric("rvd", "RVD", higher_is_better=False),
    Metric("rvd_signed", "signed RVD"),
    Metric("volume_pred_ml", "Volume pred", "mL", decimals=2),
    Metric("volume_ref_ml", "Volume ref", "mL", decimals=2),
    Metric("fp_ml", "FP volume", "mL", higher_is_better=False, decimals=2),
    Metric("fp_components", "FP components", higher_is_better=False, decimals=1),
)}


def metric_info(key: str) -> Metric:
    """The description of a metric; keys ichseg does not know are shown as they are."""
    return METRICS.get(key) or Metric(key, key)


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                 nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[str, float]:
    """Dice, HD, HD95, NSD, RVD (absolute and signed), both volumes (mL), and the false-positive
    volume (mL) and component count of one case.

    ``pred`` and ``ref`` are binary (z, y, x) arrays of one shape; ``spacing`` is (z, y, x) in mm.
    Raises :class:`~ichseg.errors.InputError` for masks that are not binary, of different shape
    or not 3D, and for an invalid spacing or tolerance.
    """
    pred_mask = binary_mask(pred, "prediction")
    ref_mask = binary_mask(ref, "reference")
    if pred_mask.shape != ref_mask.shape:
        raise InputError(f"prediction shape {pred_mask.shape} differs from reference shape "
                         f"{ref_mask.shape}")
    if pred_mask.ndim != 3:
        raise InputError(f"expected 3D masks, got {pred_mask.ndim} dimensions")
    spacing = checked_spacing(spacing)
    check_tolerance(nsd_tolerance_mm)

    box = bounding_box(pred_mask | ref_mask)
    if box is not None:
        pred_mask, ref_mask = pred_mask[box], ref_mask[box]
    distances = surface_distances(pred_mask, ref_mask, spacing)
    rvd_signed = relative_volume_difference(pred_mask, ref_mask)
    fp_ml, fp_components = false_positives(pred_mask, ref_mask, spacing)
    values = {
        "dice": dice(pred_mask, ref_mask),
        "hd": hausdorff_distance(distances, 100.0),
        "hd95": hausdorff_distance(distances, 95.0),
        "nsd": surface_dice(distances, nsd_tolerance_mm),
        "rvd": abs(rvd_signed),
        "rvd_signed": rvd_signed,
        "volume_pred_ml": volume_ml(pred_mask, spacing),
        "volume_ref_ml": volume_ml(ref_mask, spacing),
        "fp_ml": fp_ml,
    }
    return {**{key: float(value) for key, value in values.items()}, "fp_components": fp_components}


def metrics_by_class(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                     scheme: LabelScheme, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM
                     ) -> tuple[dict[str, float], dict[str, dict[str, float] | None]]:
    """:func:`case_metrics` of two label maps (uint8 values 0..K-1 of ``scheme``): for any
    hemorrhage (every non-zero voxel, exactly the binary metrics of ``mask > 0``), and for each
    class by name, None where the class is in neither mask (not scored, and not computed).
    """
    union = case_metrics(pred != 0, ref != 0, spacing, nsd_tolerance_mm)
    by_class: dict[str, dict[str, float] | None] = dict.fromkeys(scheme.names[1:])
    box = bounding_box((pred | ref) != 0)  # every class lies inside the union's box
    if box is None:
        return union, by_class
    pred, ref = pred[box], ref[box]
    present = np.bincount(pred.ravel(), minlength=scheme.n_classes) + np.bincount(
        ref.ravel(), minlength=scheme.n_classes)
    for value in scheme.hemorrhage_values:
        if present[value]:
            by_class[scheme.name(value)] = case_metrics(pred == value, ref == value, spacing,
                                                        nsd_tolerance_mm)
    return union, by_class


def binary_mask(array: np.ndarray, what: str = "mask") -> np.ndarray:
    """A boolean view (or copy) of an array holding only 0 and 1; InputError otherwise."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(f"{what} is not a binary mask: values range from {array.min()} to "
                             f"{array.max()}, expected only 0 and 1")
        return array.view(bool) if array.dtype.itemsize == 1 else array != 0
    if array.dtype.kind == "f":
        stray = array[(array != 0) & (array != 1)]
        if stray.size:
            raise InputError(f"{what} is not a binary mask: found value {stray[0]}, "
                             f"expected only 0 and 1")
        return array != 0
    raise InputError(f"{what} is not a binary mask: unsupported voxel type {array.dtype}")


def check_tolerance(nsd_tolerance_mm: float) -> None:
    """Raise InputError unless the NSD tolerance is a finite number of mm, 0 or more."""
    if not (math.isfinite(nsd_tolerance_mm) and nsd_tolerance_mm >= 0):
        raise InputError(f"NSD tolerance must be a finite number of mm >= 0, "
                         f"got {nsd_tolerance_mm}")


def checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Three finite, positive voxel sizes in mm, as floats."""
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"invalid voxel spacing {list(values)}: expected three sizes > 0 in mm")
    return values
