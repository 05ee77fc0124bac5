"""Outside the dura: scalp muscle and vessels, neck, orbits and the air spaces of the skull.

These are the look-alikes a model must leave alone because they are outside the skull: the
temporalis and the galea under the scalp fat, the superficial temporal and occipital vessels in
it, the muscles of the neck (layered by fat planes around the spine) below the skull base, the
extraocular muscles. The orbits (globe, lens, optic nerve, fat, bony walls), the frontal sinus
between the tables of the frontal bone, the mastoid air cells and the pharynx complete the skull
base that a full-size stack reaches.
"""

from __future__ import annotations

import math

import numpy as np

from ichseg.data.synth.anatomy import (
    GLOBES,
    LENSES,
    MASTOIDS,
    OPTIC_NERVES,
    ORBITS,
    PHARYNX,
    RECTUS_MUSCLES,
)
from ichseg.data.synth.lookalikes import ScalpVessel
from ichseg.data.synth.slab import Slab
from ichseg.data.synth.vocabulary import Tissue

SKIN_MM = 1.8   # skin over the subcutaneous fat
GALEA_MM = 1.5  # galea and occipitofrontalis under the fat, over the temporalis
NECK_FAT_PLANES_MM = (22.0, 34.0)  # radii of the fat planes between the layers of neck muscles
CORTEX_MM = 2.0  # bone left around the mastoid air cells
SPINE_V = 27.0  # nominal v of the spinal canal, behind the pharynx


def draw_extracranial(slab: Slab) -> None:
    _scalp(slab)
    _neck(slab)
    _air_spaces(slab)
    _orbits(slab)


def _scalp(slab: Slab) -> None:
    """Muscle under the fat (the temporalis thickens it on the sides) and the vessels in the fat."""
    head = slab.head
    fat_end = np.float32(head.scalp_mm - GALEA_MM)
    slab.codes[slab.scalp & (slab.depth_skin > fat_end)] = Tissue.MUSCLE
    middle = np.float32((SKIN_MM + fat_end) / 2)
    widest = max(vessel.radius_mm for vessel in head.lookalikes.vessels)
    near = slab.scalp & (np.abs(slab.depth_skin - middle) < np.float32(widest))
    if not near.any():
        return
    n = [c[near] for c in (slab.nu, slab.nv, slab.nw)]
    depth2 = (slab.depth_skin[near] - middle) ** 2
    r = slab.r[near]
    vessel = np.zeros(depth2.shape, bool)
    for tube in head.lookalikes.vessels:
        vessel |= _vessel(tube, n, r, depth2)
    found = np.zeros_like(near)
    found[near] = vessel
    slab.codes[found] = Tissue.SCALP_VESSEL


def _vessel(tube: ScalpVessel, n: list[np.ndarray], r: np.ndarray, depth2: np.ndarray) -> np.ndarray:
    """Samples (unit directions ``n`` at radius ``r``) inside one vessel."""
    start, normal = tube.start.astype(np.float32), tube.normal.astype(np.float32)
    along = np.cross(normal, start).astype(np.float32)
    t = np.arctan2(sum(a * c for a, c in zip(along, n, strict=True)), sum(s * c for s, c in zip(start, n, strict=True)))
    amplitude, cycles, phase = tube.wave
    wave = np.float32(amplitude) * np.sin(np.float32(2 * math.pi * cycles / tube.arc) * t + np.float32(phase))
    across = (sum(m * c for m, c in zip(normal, n, strict=True)) - wave) * r
    return (t > 0) & (t < np.float32(tube.arc)) & (across * across + depth2 < np.float32(tube.radius_mm ** 2))


def _neck(slab: Slab) -> None:
    """Muscle below the skull base, in layers split by fat planes around the spine; fat in front."""
    soft = slab.deep_soft & (slab.codes == Tissue.SCALP)
    if not soft.any():
        return
    head = slab.head
    posterior = slab.vn > -35.0 + 0.01 * slab.un * slab.un  # behind the face
    slab.codes[soft & posterior] = Tissue.MUSCLE
    spine_v = np.float32(SPINE_V * head.scale[1])
    behind = soft & (slab.v > spine_v)
    radius = np.sqrt(slab.u[behind] ** 2 + (slab.v[behind] - spine_v) ** 2)
    fat = np.abs(slab.u[behind]) < 1.0
    for plane in NECK_FAT_PLANES_MM:
        fat |= np.abs(radius - np.float32(plane)) < 1.0
    planes = np.zeros_like(behind)
    planes[behind] = fat
    slab.codes[planes] = Tissue.SCALP


def _air_spaces(slab: Slab) -> None:
    """The frontal sinus between the tables, the mastoid air cells in the temporal bone, the pharynx."""
    head = slab.head
    if head.lookalikes.frontal_sinus_mm > 0:
        bone = slab.vault & (slab.codes == Tissue.BONE) & (slab.nv < -0.8)
        fraction = slab.bone_depth[bone] / slab.skull_mm[bone]
        extent = head.frontal_sinus_extent(slab.nu[bone], slab.nv[bone], slab.nw[bone])
        air = np.zeros_like(bone)
        air[bone] = (extent > 0.35) & (fraction > 0.2) & (fraction < 0.8)
        slab.codes[air] = Tissue.AIR
    if head.lookalikes.mastoid is not None:
        cell_mm, phases = head.lookalikes.mastoid
        k = np.float32(2 * math.pi / cell_mm)
        # cells inside the cortex of the temporal bone: its outer table and its inner plate
        # against the posterior fossa stay bone
        temporal_bone = (slab.bone_depth > CORTEX_MM) & (slab.depth_inner < -CORTEX_MM)
        for shape in MASTOIDS:
            found = slab.ellipsoid(shape)
            if found is None:
                continue
            box, inside = found
            inside &= temporal_bone[box]
            waves = sum(np.cos(k * c[box] + np.float32(p))
                        for c, p in zip((slab.u, slab.v, slab.w), phases, strict=True))
            slab.codes[box][inside] = np.where(np.abs(waves[inside]) < 0.35, np.uint8(Tissue.BONE),
                                               np.uint8(Tissue.AIR))
    slab.paint(PHARYNX, Tissue.AIR, slab.deep_soft)


def _orbits(slab: Slab) -> None:
    """Bony walls behind the globe's equator, fat, recti, optic nerve, globe and lens."""
    walls = [shape.scaled(1.15) for shape in ORBITS]
    if all(slab.ellipsoid(shape) is None for shape in walls):  # the slab is above the orbits
        return
    head_inside = (slab.depth_skin > 0) & ~slab.cavity
    for wall, fat in zip(walls, ORBITS, strict=True):
        slab.paint(wall, Tissue.BONE, head_inside & (slab.vn > np.float32(GLOBES[0].center[1])))
        slab.paint(fat, Tissue.ORBIT, head_inside)
    for shape in RECTUS_MUSCLES:
        slab.paint(shape, Tissue.MUSCLE, slab.codes == Tissue.ORBIT)
    for shape in OPTIC_NERVES:
        slab.paint(shape, Tissue.OPTIC_NERVE, slab.codes == Tissue.ORBIT)
    for shape in GLOBES:
        slab.paint(shape, Tissue.GLOBE, head_inside)
    for shape in LENSES:
        slab.paint(shape, Tissue.LENS, head_inside)
