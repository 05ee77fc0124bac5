"""What a head has besides the brain and bleeds: the look-alikes of blood and the orbits.

Acute blood reads 50-90 HU; a model that never saw the tissues below in that range marks them.
A real non-contrast head CT shows, with the HU ranges drawn here:

* skeletal muscle (temporalis, neck, extraocular): 40-60 HU;
* flowing blood in the scalp arteries and veins and in the dural venous sinuses: 40-60 HU,
  up to about 70 with a high haematocrit (above about 70 a sinus thrombosis is suspected);
* the falx and tentorium: dense dura, 40-60 HU where a slice catches them flat, less where CSF
  shares the voxel; calcified plaques on the falx (calcification 100 HU and more);
* the non-calcified choroid plexus glomus: 35-50 HU, with calcification in most adults, as
  the pineal gland has in about half;
* partial volume of the inner table: bone (over 1000 HU) averaged with brain or CSF passes through
  every value between them, 50-90 HU included, in a rim one voxel thick;
* beam hardening next to thick bone: the brain reads 5-20 HU higher in a band a few millimetres
  wide along the skull base and the posterior fossa, and a dark band (10-30 HU lower) joins
  the petrous ridges across the pons (the interpetrous "Hounsfield bar");
* an old infarct: hypodense encephalomalacia of 5-20 HU, close to CSF;
* the orbits: vitreous 5-15 HU, lens 100-130 HU, retro-orbital fat -100 to -80 HU, optic nerve
  30-40 HU; the paranasal sinuses and mastoid air cells: air (-1000 HU) with bone septa.

:class:`LookAlikes` holds one head's draw of them; it comes from its own random generator, so
the bleeds a seed draws do not depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def unit_direction(azimuth_deg: float, elevation_deg: float, side: int) -> np.ndarray:
    """Head direction at ``azimuth`` from straight ahead towards ``side`` (+1 left, -1 right)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([side * math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e), math.sin(e)])


@dataclass(frozen=True)
class ScalpVessel:
    """A scalp artery or vein: a wavy tube in the subcutaneous fat along a great-circle arc."""

    start: np.ndarray     # unit direction where it begins
    normal: np.ndarray    # unit normal of its great circle
    arc: float            # radians from ``start`` along the circle
    radius_mm: float
    wave: tuple[float, float, float]  # amplitude (radians), cycles along the arc, phase


@dataclass(frozen=True)
class OldInfarct:
    """A wedge of encephalomalacia from the cortex inwards around one direction."""

    direction: np.ndarray
    half_angle: float     # radians at the surface
    depth_mm: float


@dataclass(frozen=True)
class BeamHardening:
    """HU added next to thick bone and the dark band between the petrous ridges."""

    vault_hu: float       # rise at the vault's inner table
    vault_mm: float       # its decay length
    base_hu: float        # rise at the floor of the middle and posterior fossae
    base_mm: float
    bar_hu: float         # depth of the interpetrous band (subtracted)
    bar_mm: float         # its half width


@dataclass(frozen=True)
class LookAlikes:
    """One head's look-alikes: sizes (mm), their HU and which optional ones it has."""

    hu: dict[str, float]
    falx_mm: float                  # half thickness of the falx
    tentorium_mm: float             # half thickness of the tentorium
    sagittal_sinus_mm: tuple[float, float]   # half width and height at the torcula
    transverse_mm: tuple[float, float]       # radius of the left and right transverse sinus
    straight_mm: float              # radius of the straight sinus
    falx_plaque: tuple[tuple[float, float, float], float] | None  # nominal centre, radius
    choroid_scale: float
    infarct: OldInfarct | None
    vessels: tuple[ScalpVessel, ...]
    beam: BeamHardening
    mastoid: tuple[float, np.ndarray] | None  # air cell size (mm) and three phases
    frontal_sinus_mm: float         # depth of the frontal sinus, 0 when absent

    @staticmethod
    def draw(rng: np.random.Generator) -> LookAlikes:
        dominant = rng.uniform(3.5, 5.0)
        other = dominant * rng.uniform(0.55, 1.0)
        left_dominant = rng.random() < 0.3  # the right transverse sinus is usually the larger
        return LookAlikes(
            hu={"vessel": rng.uniform(42, 58), "sinus": rng.uniform(45, 68),
                "dura": rng.uniform(45, 62), "choroid": rng.uniform(38, 52),
                "infarct": rng.uniform(5, 18), "lens": rng.uniform(100, 130),
                "nerve": rng.uniform(28, 38)},
            falx_mm=rng.uniform(0.5, 0.8),
            tentorium_mm=rng.uniform(0.45, 0.65),
            sagittal_sinus_mm=(rng.uniform(4.0, 6.0), rng.uniform(6.0, 9.0)),
            transverse_mm=(dominant, other) if left_dominant else (other, dominant),
            straight_mm=rng.uniform(2.0, 3.0),
            falx_plaque=(((0.0, rng.uniform(-40, 30), rng.uniform(30, 50)), rng.uniform(3.0, 7.0))
                         if rng.random() < 0.2 else None),
            choroid_scale=rng.uniform(0.8, 1.2),
            infarct=_old_infarct(rng) if rng.random() < 0.15 else None,
            vessels=tuple(_scalp_vessels(rng)),
            beam=BeamHardening(vault_hu=rng.uniform(3.0, 8.0), vault_mm=rng.uniform(1.5, 3.0),
                               base_hu=rng.uniform(8.0, 18.0), base_mm=rng.uniform(3.0, 6.0),
                               bar_hu=rng.uniform(10.0, 25.0), bar_mm=rng.uniform(2.0, 4.0)),
            mastoid=((rng.uniform(3.0, 5.0), rng.uniform(0, 2 * math.pi, 3))
                     if rng.random() < 0.9 else None),
            frontal_sinus_mm=rng.uniform(6.0, 14.0) if rng.random() < 0.85 else 0.0,
        )


def _old_infarct(rng: np.random.Generator) -> OldInfarct:
    side = int(rng.choice((-1, 1)))
    return OldInfarct(unit_direction(rng.uniform(40, 140), rng.uniform(0, 40), side),
                      math.radians(rng.uniform(10, 18)), rng.uniform(12, 28))


# Superficial temporal artery (frontal and parietal branches) and occipital artery:
# (azimuth, elevation) of where each begins and ends, before a random shift of a few degrees.
_VESSEL_PATHS = (((95, 0), (45, 40)), ((95, -25), (115, 50)), ((150, -20), (165, 40)))


def _scalp_vessels(rng: np.random.Generator) -> list[ScalpVessel]:
    vessels = []
    for side in (-1, 1):
        for start, end in _VESSEL_PATHS:
            a = unit_direction(start[0] + rng.uniform(-8, 8), start[1] + rng.uniform(-6, 6), side)
            b = unit_direction(end[0] + rng.uniform(-8, 8), end[1] + rng.uniform(-6, 6), side)
            normal = np.cross(a, b)
            arc = math.atan2(float(np.linalg.norm(normal)), float(a @ b))
            vessels.append(ScalpVessel(a, normal / np.linalg.norm(normal), arc,
                                       rng.uniform(0.7, 1.3),
                                       (rng.uniform(0.01, 0.03), rng.uniform(1.5, 3.5),
                                        rng.uniform(0, 2 * math.pi))))
    return vessels
