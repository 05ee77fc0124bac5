"""What a phantom is made of and how large it is: tissue codes, hemorrhage types, size options,
and the case that :func:`~ichseg.data.synth.generate_case` returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ichseg.io.ctimage import CTImage
from ichseg.labels import SUBTYPE_NAMES, SUBTYPES


class Tissue(IntEnum):
    """Tissue codes of :attr:`SyntheticCase.tissues` (the majority tissue of each voxel).

    Codes 0-8 keep their values; the look-alikes and the orbits were appended after them.
    :data:`INTRACRANIAL_TISSUES` says which codes lie inside the dura.
    """

    AIR = 0            # outside the head, paranasal sinuses, pharynx and mastoid air cells
    SCALP = 1          # skin and subcutaneous fat of the scalp, neck and face, fat between
                       # the neck muscles, and the scalp plugging a burr hole
    BONE = 2           # skull vault (dense tables around diploe), skull base, orbital walls,
                       # petrous ridges and the septa of the mastoid air cells
    CSF = 3            # subarachnoid space, sulci, fissures, cisterns, ventricles
    GREY = 4           # cortical ribbon, deep grey nuclei, cerebellum
    WHITE = 5          # white matter and brainstem
    BLOOD = 6          # acute hemorrhage (exactly the labelled voxels)
    EDEMA = 7          # hypodense rim around an intraparenchymal hemorrhage
    CALCIFICATION = 8  # choroid plexus, pineal and falx calcifications
    MUSCLE = 9         # temporalis and the galea over the vault; neck, masticator and
                       # extraocular muscles
    SCALP_VESSEL = 10  # superficial temporal and occipital arteries and veins
    DURAL_SINUS = 11   # superior sagittal, straight, transverse and sigmoid sinuses, torcula
    DURA = 12          # falx cerebri and cerebelli, tentorium
    CHOROID_PLEXUS = 13  # the non-calcified glomus in each atrium
    OLD_INFARCT = 14   # chronic (hypodense) cortical infarct
    ORBIT = 15         # retro-orbital fat
    GLOBE = 16         # vitreous of the eye
    LENS = 17          # lens of the eye
    OPTIC_NERVE = 18
    SPINAL_CANAL = 19  # medulla and CSF below the cranial floor (through the foramen magnum)


#: The codes of the intracranial space (inside the dura, where a hemorrhage can be): brain, CSF
#: spaces and ventricles, blood, edema, the intracranial calcifications (choroid plexus, pineal,
#: falx), the dural venous sinuses, the falx and tentorium, the choroid plexus and an old
#: infarct. Its floor is the surface of the cranial floor, continued across the foramen magnum:
#: below it the medulla and its CSF are SPINAL_CANAL, outside the set. Also outside: bone
#: (the petrous ridges included, though they jut into the cavity), scalp, muscles, scalp
#: vessels, orbits, air (paranasal sinuses, mastoid cells, pharynx) and the neck. On the render
#: samples the set is exactly the cranial cavity less the petrous bone; a voxel's code is its
#: majority tissue, so on voxels the set follows the cavity to within a voxel at its edges.
#: After a craniectomy the space reaches out to the scalp over the defect (the brain swells into
#: it); a burr hole is plugged with scalp and leaves the space as it was.
INTRACRANIAL_TISSUES = frozenset({
    Tissue.CSF, Tissue.GREY, Tissue.WHITE, Tissue.BLOOD, Tissue.EDEMA, Tissue.CALCIFICATION,
    Tissue.DURAL_SINUS, Tissue.DURA, Tissue.CHOROID_PLEXUS, Tissue.OLD_INFARCT,
})

#: The tissues that are not hemorrhage yet fall in or near its 50-90 HU.
BLOOD_LIKE_TISSUES = (Tissue.MUSCLE, Tissue.SCALP_VESSEL, Tissue.DURAL_SINUS, Tissue.DURA,
                      Tissue.CHOROID_PLEXUS)

#: Skull defects :func:`~ichseg.data.synth.generate_case` can cut.
SKULL_DEFECTS = ("craniectomy", "burr_hole")


#: The hemorrhage types, in the order they are listed in ``types`` and ``cases.csv``.
HEMORRHAGE_TYPES = ("intraparenchymal", "intraventricular", "subdural", "epidural",
                    "subarachnoid")

#: Usual abbreviations of the hemorrhage types (the class names of :data:`ichseg.labels.SUBTYPES`).
TYPE_ABBREVIATIONS = {name: abbreviation for abbreviation, name in SUBTYPE_NAMES.items()}


def subtype_value(kind: str) -> int:
    """The label value of a hemorrhage type in :data:`ichseg.labels.SUBTYPES` (1 EDH ... 5 SDH)."""
    return SUBTYPES.value(TYPE_ABBREVIATIONS[kind])


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
    """One phantom: the CT in HU, its hemorrhage labels and the tissue map it was drawn from.

    ``label`` (uint8) marks the voxels at least half filled with blood, except the few that bone
    or calcification also reaches (their mean HU no longer looks like blood). ``typed_label``
    (uint8) gives those voxels the :data:`ichseg.labels.SUBTYPES` value of the bleed with most
    blood in them (1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH); ``label`` is exactly ``typed_label > 0``.
    ``tissues`` holds
    each voxel's :class:`Tissue`: BLOOD where labelled, otherwise the most frequent other tissue;
    ``pure`` marks the voxels made of one tissue only (no partial volume).
    """

    image: CTImage
    label: np.ndarray
    typed_label: np.ndarray
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
