"""Hematoma expansion between a baseline and a follow-up scan.

Expansion is growth by more than 6 mL or by more than 33 % of the baseline volume, the usual
definition in ICH trials; both thresholds are parameters. Each scan is a mask (NIfTI or any
image :func:`ichseg.io.load_image` reads) or a case JSON written by
:func:`ichseg.report.outputs.write_case_outputs`. When both scans are class maps of the subtypes,
each type is compared as well, with the same thresholds (which ICH trials defined for
intraparenchymal hematomas: for the other types they are a yardstick, not a validated criterion).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import InputError
from ichseg.labels import SUBTYPES

ABSOLUTE_THRESHOLD_ML = 6.0
RELATIVE_THRESHOLD = 0.33


def compare_scans(baseline_ml: float, followup_ml: float, *,
                  absolute_threshold_ml: float = ABSOLUTE_THRESHOLD_ML,
                  relative_threshold: float = RELATIVE_THRESHOLD) -> dict[str, Any]:
    """Growth from ``baseline_ml`` to ``followup_ml`` and whether it counts as expansion.

    Relative growth is undefined (None) when the baseline holds no hemorrhage; then only the
    absolute threshold can flag expansion.
    """
    growth = followup_ml - baseline_ml
    relative = growth / baseline_ml if baseline_ml > 0 else None
    by_absolute = growth > absolute_threshold_ml
    by_relative = relative is not None and relative > relative_threshold
    return {
        "baseline_ml": baseline_ml,
        "followup_ml": followup_ml,
        "growth_ml": growth,
        "relative_growth": relative,
        "expansion": by_absolute or by_relative,
        "criteria_met": [name for name, met in (("absolute", by_absolute),
                                                ("relative", by_relative)) if met],
        "thresholds": {"absolute_ml": absolute_threshold_ml, "relative": relative_threshold},
    }


@dataclass(frozen=True)
class ScanVolumes:
    """A scan's hemorrhage volume (mL), and each type's when the scan is a class map of types."""

    total_ml: float
    by_type: Mapping[str, float] | None = None


def scan_volumes(path: str | os.PathLike, *, subtypes: bool = False) -> ScanVolumes:
    """The volumes of a mask image or of a case JSON's measures.

    A case JSON is typed when it names its classes (``labels``). A mask is a class map of the
    subtypes (:data:`~ichseg.labels.SUBTYPES`) when its values lie in 0..5 and one is above 1, or
    whatever its values with ``subtypes`` (a map holding only epidural blood is all 0 and 1);
    otherwise every non-zero voxel is hemorrhage of one class.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _json_volumes(path)
    from ichseg.io import load_image

    mask = load_image(path)
    values = np.unique(mask.array)
    total = int(np.count_nonzero(mask.array)) * mask.voxel_volume_ml
    outside = [v for v in values.tolist() if not 0 <= v < SUBTYPES.n_classes]
    if subtypes and outside:
        raise InputError(f"{path}: values {outside[:5]} are not subtype classes (0-{SUBTYPES.n_classes - 1})")
    if not subtypes and (outside or values.max(initial=0) <= 1):
        return ScanVolumes(total)
    counts = np.bincount(mask.array.astype(np.int64).ravel(), minlength=SUBTYPES.n_classes)
    return ScanVolumes(total, {SUBTYPES.name(v): float(counts[v]) * mask.voxel_volume_ml
                               for v in SUBTYPES.hemorrhage_values})


def _json_volumes(path: Path) -> ScanVolumes:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        case = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    measures = case.get("measures", {}) if isinstance(case, dict) else {}
    volume = measures.get("volume_ml") if isinstance(measures, dict) else None
    if not isinstance(volume, (int, float)) or isinstance(volume, bool) or volume < 0:
        raise InputError(f"{path}: no measures.volume_ml in this JSON (is it an ichseg case JSON?)")
    if "labels" not in case:
        return ScanVolumes(float(volume))
    try:
        classes = measures["subtypes"]["classes"]
        return ScanVolumes(float(volume), {str(name): float(item["volume_ml"]) for name, item in classes.items()})
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: names its classes but has no measures.subtypes.classes volumes") from None


def compare_files(baseline: str | os.PathLike, followup: str | os.PathLike, *, subtypes: bool = False,
                  **thresholds: float) -> dict[str, Any]:
    """:func:`compare_scans` on two masks or case JSONs, with the files named in the result.

    When both scans are typed, ``by_type`` compares each type with the same thresholds (a type
    one scan lacks counts 0 mL there); when only one is, ``by_type`` is None; when neither is,
    there is no ``by_type``. ``subtypes``: read mask files as class maps (:func:`scan_volumes`).
    """
    before, after = scan_volumes(baseline, subtypes=subtypes), scan_volumes(followup, subtypes=subtypes)
    result = {"baseline": str(baseline), "followup": str(followup),
              **compare_scans(before.total_ml, after.total_ml, **thresholds)}
    if before.by_type is not None and after.by_type is not None:
        names = list(dict.fromkeys([*before.by_type, *after.by_type]))
        result["by_type"] = {name: compare_scans(before.by_type.get(name, 0.0), after.by_type.get(name, 0.0),
                                                 **thresholds) for name in names}
    elif before.by_type is not None or after.by_type is not None:
        result["by_type"] = None
    return result


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as a few aligned lines of text."""
    relative = result["relative_growth"]
    relative_text = (f"({relative:+.1%})" if relative is not None
                     else "(relative growth undefined: no hemorrhage at baseline)")
    thresholds = result["thresholds"]
    rule = f"> {thresholds['absolute_ml']:g} mL or > {thresholds['relative']:.0%}"
    verdict = (f"YES: {' and '.join(result['criteria_met'])} threshold exceeded ({rule})"
               if result["expansion"] else f"no ({rule})")
    lines = [
        f"baseline   {result['baseline_ml']:9.2f} mL  {result.get('baseline', '')}",
        f"follow-up  {result['followup_ml']:9.2f} mL  {result.get('followup', '')}",
        f"growth     {result['growth_ml']:+9.2f} mL  {relative_text}",
        f"expansion  {verdict}",
        *_type_lines(result),
    ]
    return "\n".join(line.rstrip() for line in lines)


def _type_lines(result: dict[str, Any]) -> list[str]:
    """One line per type when both scans are typed; a note when only one is."""
    if "by_type" not in result:
        return []
    if result["by_type"] is None:
        return ["by type    not compared: only one of the scans names its types"]
    lines = [f"{'by type':<10} {'baseline':>9}  {'follow-up':>9}  {'growth':>9}"]
    for name, item in result["by_type"].items():
        relative = item["relative_growth"]
        flag = "  expansion" if item["expansion"] else ""
        lines.append(f"  {name:<8} {item['baseline_ml']:9.2f}  {item['followup_ml']:9.2f}  "
                     f"{item['growth_ml']:+9.2f} mL" + (f" ({relative:+.1%})" if relative is not None else "") + flag)
    return lines
