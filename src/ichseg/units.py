"""The voxel volume, in the units every measure of ichseg reports (mm³ and mL).

One place for the formula, so that the metrics, the clinical measures, the postprocessing rules
and :attr:`ichseg.io.ctimage.CTImage.voxel_volume_ml` count a mask's volume the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MM3_PER_ML = 1000.0


def voxel_volume_mm3(spacing: Sequence[float]) -> float:
    """The product of the three spacings (mm)."""
    return float(math.prod(float(s) for s in spacing))


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """The volume of one voxel in millilitres."""
    return voxel_volume_mm3(spacing) / MM3_PER_ML
