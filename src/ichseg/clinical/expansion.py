"""Hematoma expansion between a baseline and a follow-up scan.

Expansion is growth by more than 6 mL or by more than 33 % of the baseline volume, the usual
definition in ICH trials; both thresholds are parameters. Each scan is a mask (NIfTI or any
image :func:`ichseg.io.load_image` reads) or a case JSON written by
:func:`ichseg.report.outputs.write_case_outputs`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import InputError

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


def scan_volume_ml(path: str | os.PathLike) -> float:
    """Hemorrhage volume of a mask image (non-zero voxels) or of a case JSON's measures."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _json_volume(path)
    from ichseg.io import load_image

    mask = load_image(path)
    return int(np.count_nonzero(mask.array)) * mask.voxel_volume_ml


def _json_volume(path: Path) -> float:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        case = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    volume = case.get("measures", {}).get("volume_ml") if isinstance(case, dict) else None
    if not isinstance(volume, (int, float)) or isinstance(volume, bool) or volume < 0:
        raise InputError(f"{path}: no measures.volume_ml in this JSON (is it an ichseg case JSON?)")
    return float(volume)


def compare_files(baseline: str | os.PathLike, followup: str | os.PathLike,
                  **thresholds: float) -> dict[str, Any]:
    """:func:`compare_scans` on two masks or case JSONs, with the files named in the result."""
    result = compare_scans(scan_volume_ml(baseline), scan_volume_ml(followup), **thresholds)
    return {"baseline": str(baseline), "followup": str(followup), **result}


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
    ]
    return "\n".join(line.rstrip() for line in lines)
