"""The five hemorrhage types at their usual sites, drawn from a case's random generator.

A :class:`Lesion` is decided once per case (site, size, shape, HU) and paints its blood, and
the edema around a parenchymal clot, on every slab.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ichseg.data.synth.anatomy import (
    LATERAL_VENTRICLES,
    MIDLINE_VENTRICLES,
    PUTAMEN,
    THALAMUS,
    Head,
    rotation,
)
from ichseg.data.synth.lookalikes import unit_direction
from ichseg.data.synth.slab import Slab
from ichseg.data.synth.vocabulary import HEMORRHAGE_TYPES, Tissue

#: What a parenchymal clot fills: brain and the sulcal CSF it effaces (never the ventricles).
PARENCHYMA = (Tissue.GREY, Tissue.WHITE, Tissue.EDEMA, Tissue.CSF)


@dataclass
class Lesion:
    """A hemorrhage: where it is and how it marks the samples of a slab."""

    kind: str
    hu: float
    draw_on: Callable[[Slab], np.ndarray | None] = field(repr=False)
    edema: Callable[[Slab], np.ndarray | None] | None = field(default=None, repr=False)

    def paint(self, slab: Slab) -> None:
        if self.edema is not None:
            rim = self.edema(slab)
            if rim is not None:
                rim &= np.isin(slab.codes, (Tissue.GREY, Tissue.WHITE))  # brain, not CSF
                slab.codes[rim] = Tissue.EDEMA
                slab.hu[rim] = slab.head.hu["edema"]
        blood = self.draw_on(slab)
        if blood is None:
            return
        blood &= slab.cavity
        slab.codes[blood] = Tissue.BLOOD
        slab.hu[blood] = self.hu
        slab.bleed[blood] = HEMORRHAGE_TYPES.index(self.kind) + 1


def _full_mask(slab: Slab, box: tuple[slice, slice, slice], inside: np.ndarray) -> np.ndarray:
    mask = np.zeros(slab.codes.shape, bool)
    mask[box] = inside
    return mask


def _intraparenchymal(rng: np.random.Generator, head: Head) -> Lesion:
    """Irregular lobulated clot in the putamen, thalamus or lobar white matter, often with edema."""
    side = int(rng.choice((-1, 1)))
    site = rng.choice(("putamen", "thalamus", "lobar"), p=(0.4, 0.15, 0.45))
    volume_ml = math.exp(rng.uniform(math.log(3.0), math.log(45.0 if site != "thalamus" else 15.0)))
    radius = (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)
    if site == "lobar":
        direction = unit_direction(rng.uniform(10, 170), rng.uniform(5, 50), side)
        depth = head.subarachnoid_mm + radius + rng.uniform(6, 14)
        center = direction * (head.inner_radius(direction) - depth)
        center[0] = side * max(abs(center[0]), radius + 4.0)  # clear of the falx
    else:
        nominal = PUTAMEN if site == "putamen" else THALAMUS
        center = head.to_local((side * nominal[0], nominal[1], nominal[2])) + rng.uniform(-3, 3, 3)
    stretch = np.exp(rng.uniform(-0.25, 0.25, 3))
    stretch /= stretch.prod() ** (1 / 3)
    orientation = rotation(*rng.uniform(-math.pi, math.pi, 3))
    lobes = rng.normal(size=(3, 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    lobe_freq, lobe_phase = rng.uniform(2.5, 4.5, 3), rng.uniform(0, 2 * math.pi, 3)
    lobe_amp = rng.uniform(0.06, 0.14, 3)
    rim_mm = rng.uniform(2.0, 6.0) if rng.random() < 0.65 else 0.0
    reach = radius * stretch.max() * (1 + lobe_amp.sum()) + rim_mm + 2.0

    def extent(slab: Slab, margin_mm: float) -> np.ndarray | None:
        box = slab.box(head.to_world(center), np.full(3, reach))
        if box is None:
            return None
        offset = [slab.u[box] - np.float32(center[0]), slab.v[box] - np.float32(center[1]),
                  slab.w[box] - np.float32(center[2])]
        q = [sum(np.float32(orientation[j, i]) * offset[j] for j in range(3)) / np.float32(radius * stretch[i])
             for i in range(3)]
        rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + np.float32(1e-6)
        bumps = sum(np.float32(lobe_amp[k]) * np.cos(np.float32(lobe_freq[k])
                    * sum(np.float32(lobes[k, i]) * q[i] for i in range(3)) / rho
                    + np.float32(lobe_phase[k])) for k in range(3))
        inside = rho < 1.0 + bumps + np.float32(margin_mm / radius)
        inside &= slab.un[box] * side > 0.5  # the falx bounds it
        inside &= ~slab.ventricle[box] & np.isin(slab.codes[box], PARENCHYMA)
        return _full_mask(slab, box, inside)

    return Lesion("intraparenchymal", rng.uniform(62, 85), lambda s: extent(s, 0.0),
                   (lambda s: extent(s, rim_mm)) if rim_mm else None)


def _intraventricular(rng: np.random.Generator, head: Head) -> Lesion:
    """Blood layering in the dependent (posterior, the patient lying supine) ventricles."""
    atria = [shape.scaled(head.ventricle_scale) for shape in LATERAL_VENTRICLES[2:4]]
    lowest = max(center[1] + half[1] for center, half in map(head.bounds, atria))  # world y
    level = lowest - rng.uniform(5.0, 14.0)
    cast_third = rng.random() < 0.4

    def draw(slab: Slab) -> np.ndarray:
        dependent = slab.world[1][None, :, None] > np.float32(level)
        blood = slab.ventricle & dependent
        if cast_third:
            found = slab.ellipsoid(MIDLINE_VENTRICLES[0].scaled(head.ventricle_scale))
            if found is not None:
                box, inside = found
                blood[box] |= inside & slab.ventricle[box]
        return blood

    return Lesion("intraventricular", rng.uniform(55, 78), draw)


def _extra_axial(kind: str, rng: np.random.Generator, head: Head) -> Lesion:
    """Subdural crescent or epidural biconvex lens along the inner table of the skull."""
    side = int(rng.choice((-1, 1)))
    if kind == "subdural":
        direction = unit_direction(rng.uniform(45, 135), rng.uniform(-5, 35), side)
        spread = math.radians(rng.uniform(45, 70))
        thickness, power = rng.uniform(5.0, 13.0), 0.7
    else:
        frontal = rng.random() < 0.3
        direction = unit_direction(rng.uniform(15, 40) if frontal else rng.uniform(70, 115),
                          rng.uniform(-5, 25), side)
        spread = math.radians(rng.uniform(16, 26))
        thickness, power = rng.uniform(10.0, 22.0), 0.5
    d = direction.astype(np.float32)
    one_minus_cos = np.float32(1 - math.cos(spread))

    def draw(slab: Slab) -> np.ndarray:
        q = (1.0 - (slab.nu * d[0] + slab.nv * d[1] + slab.nw * d[2])) / one_minus_cos
        profile = np.float32(thickness) * np.maximum(1.0 - q, 0.0) ** np.float32(power)
        blood = (slab.radial_depth < profile) & (q < 1.0)
        if kind == "subdural":  # the falx keeps a subdural hematoma on its own side
            blood &= slab.un * side > 1.0
        return blood

    return Lesion(kind, rng.uniform(58, 82) if kind == "subdural" else rng.uniform(62, 88), draw)


def _subarachnoid(rng: np.random.Generator, head: Head) -> Lesion:
    """Thin blood filling (and widening) the sulci, fissures and cisterns around one or two sites."""
    sites = []
    for _ in range(int(rng.integers(1, 3))):
        site = rng.choice(("basal", "sylvian", "convexity", "interhemispheric"), p=(0.35, 0.3, 0.25, 0.1))
        side = int(rng.choice((-1, 1)))
        if site == "basal":
            center = head.to_local((0.0, 2.0, -20.0))
        elif site == "sylvian":
            center = head.to_local((side * 42.0, -12.0, -5.0))
        elif site == "interhemispheric":
            center = head.to_local((0.0, rng.uniform(-50, 30), rng.uniform(20, 45)))
        else:
            direction = unit_direction(rng.uniform(20, 160), rng.uniform(20, 60), side)
            center = direction * (head.inner_radius(direction) - 8.0)
        sites.append((center, rng.uniform(22.0, 35.0)))
    widen = rng.uniform(1.0, 2.0)
    waves = rng.normal(size=(3, 3)) * (2 * math.pi / 18.0)
    phases = rng.uniform(0, 2 * math.pi, 3)

    def draw(slab: Slab) -> np.ndarray:
        blood = np.zeros(slab.codes.shape, bool)
        for center, radius in sites:
            box = slab.box(head.to_world(center), np.full(3, radius))
            if box is None:
                continue
            u, v, w = slab.u[box], slab.v[box], slab.w[box]
            distance = np.sqrt((u - np.float32(center[0])) ** 2 + (v - np.float32(center[1])) ** 2
                               + (w - np.float32(center[2])) ** 2)
            patches = sum(np.cos(np.float32(k[0]) * u + np.float32(k[1]) * v + np.float32(k[2]) * w
                                 + np.float32(p)) for k, p in zip(waves, phases, strict=True))
            codes = slab.codes[box]
            spaces = ((codes == Tissue.CSF) | (slab.cleft[box] < widen)) & ~slab.ventricle[box]
            spaces &= np.isin(codes, (Tissue.CSF, Tissue.GREY))
            blood[box] |= spaces & (distance < radius * (1.0 + 0.15 * patches)) & (patches > -1.0)
        return blood

    return Lesion("subarachnoid", rng.uniform(55, 78), draw)


def draw_lesions(rng: np.random.Generator, head: Head) -> list[Lesion]:
    """One to three distinct hemorrhage types, drawn with their usual frequencies."""
    n_types = int(rng.choice((1, 2, 3), p=(0.5, 0.35, 0.15)))
    kinds = rng.choice(HEMORRHAGE_TYPES, size=n_types, replace=False, p=(0.3, 0.15, 0.2, 0.1, 0.25))
    lesions = []
    for kind in sorted(map(str, kinds), key=_PAINT_ORDER.index):
        if kind == "intraparenchymal":
            lesions.append(_intraparenchymal(rng, head))
        elif kind == "intraventricular":
            lesions.append(_intraventricular(rng, head))
        elif kind == "subarachnoid":
            lesions.append(_subarachnoid(rng, head))
        else:
            lesions.append(_extra_axial(kind, rng, head))
    return lesions


# Parenchymal blood first, extra-axial collections last: later ones cover earlier ones.
_PAINT_ORDER = ("intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural")
