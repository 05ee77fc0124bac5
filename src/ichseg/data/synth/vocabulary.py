"""What a phantom is made of and how large it is: tissue codes, hemorrhage types, size options,
and the case that :func:`~ichseg.data.synth.generate_case` returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ichseg.io.ctimage import CTImage


class Tissue(IntEnum):
    """Tissue codes of :attr:`SyntheticCase.tissues` (the majority tissue of each voxel)."""

    AIR = 0            # outside the head and in the paranasal sinuses
    SCALP = 1          # skin, subcutaneous fat, muscle and the soft tissue below the skull base
    BONE = 2           # skull vault (dense tables around diploe) and skull base
    CSF = 3            # subarachnoid space, sulci, fissures, cisterns, ventricles
    GREY = 4           # cortical ribbon, deep grey nuclei, cerebellum
    WHITE = 5          # white matter and brainstem
    BLOOD = 6          # acute hemorrhage (exactly the labelled voxels)
    EDEMA = 7          # hypodense rim around an intraparenchymal hemorrhage
    CALCIFICATION = 8  # choroid plexus and pineal calcifications


#: The hemorrhage types, in the order they are listed in ``types`` and ``cases.csv``.
HEMORRHAGE_TYPES = ("intraparenchymal", "intraventricular", "subdural", "epidural",
                    "subarachnoid")

#: Usual abbreviations of the hemorrhage types, for captions.
TYPE_ABBREVIATIONS = {"intraparenchymal": "IPH", "intraventricular": "IVH", "subdural": "SDH",
                      "epidural": "EDH", "subarachnoid": "SAH"}


@dataclass(frozen=True)
class SizeSpec:
    """Grid of one size option and how finely it is rendered before averaging.

    The in-plane spacing is ``fov_mm / matrix``. The slice spacing is drawn from ``slice_mm`` or,
    when that is None, chosen so that the slices span ``coverage_mm`` (skull base to vertex).
    ``render_factor`` is the number of render pixels per output pixel along x and y: above 1 the
    render pixels are averaged (partial volume), below 1 the rendered slice is interpolated up.
    Each slice is rendered on ``sub_slices`` sub-slices.
    """

    matrix: int
    slices: tuple[int, int]
    fov_mm: tuple[float, float]
    slice_mm: tuple[float, float] | None
    coverage_mm: tuple[float, float] | None
    render_factor: float
    sub_slices: int = 5


#: ``tiny``: unit tests and seconds-long training; ``small``: demos; ``full``: INSTANCE-like.
#: tiny/small keep a head-sized field of view of 215-240 mm (3.4-3.75 mm and 1.7-1.9 mm pixels)
#: and slices spanning 145-160 mm from the vertex to the skull base (9.1-10.0 mm slices for
#: tiny, 4.5-6.7 mm for small); full uses INSTANCE's 0.40-0.50 mm pixels and 4.3-5.4 mm slices
#: from the vertex down, at most MAX_COVERAGE_MM.
SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(64, (16, 16), (215.0, 240.0), None, (145.0, 160.0), 2.0),
    "small": SizeSpec(128, (24, 32), (215.0, 240.0), None, (145.0, 160.0), 2.0),
    "full": SizeSpec(512, (20, 40), (205.0, 256.0), (4.3, 5.4), None, 0.5),
}

#: A ``full`` stack reaches at most this far below the vertex (to the upper neck).
MAX_COVERAGE_MM = 190.0

#: Share of generated cases without hemorrhage when ``hemorrhage`` is not forced.
NO_HEMORRHAGE_RATE = 0.12


@dataclass(frozen=True)
class SyntheticCase:
    """One phantom: the CT in HU, its hemorrhage label and the tissue map it was drawn from.

    ``label`` (uint8) marks the voxels at least half filled with blood, except the few that bone
    or calcification also reaches (their mean HU no longer looks like blood). ``tissues`` holds
    each voxel's :class:`Tissue`: BLOOD where labelled, otherwise the most frequent other tissue;
    ``pure`` marks the voxels made of one tissue only (no partial volume).
    """

    image: CTImage
    label: np.ndarray
    tissues: np.ndarray
    pure: np.ndarray
    types: tuple[str, ...]
    volume_ml: float

    @property
    def caption(self) -> str:
        """A short description (types and volume) for previews."""
        if not self.types:
            return "no hemorrhage"
        kinds = "+".join(TYPE_ABBREVIATIONS[t] for t in self.types)
        return f"{kinds} {self.volume_ml:.1f} mL"
