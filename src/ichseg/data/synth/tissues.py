"""Drawing the anatomy on a slab: scalp, skull, brain folded by sulci, deep structures, HU.

The look-alikes come from :mod:`~ichseg.data.synth.dura` (falx, tentorium, venous sinuses) and
:mod:`~ichseg.data.synth.extracranial` (muscles, scalp vessels, orbits, air spaces).
"""

from __future__ import annotations

import math

import numpy as np

from ichseg.data.synth.anatomy import (
    BRAINSTEM,
    CAUDATE_HEADS,
    CHOROID_CALCIFICATIONS,
    CHOROID_PLEXUS,
    CISTERNS,
    DEEP_GREY,
    FORAMEN_MAGNUM,
    LATERAL_VENTRICLES,
    MEDULLA,
    MIDLINE_VENTRICLES,
    NECK_LEVEL,
    PETROUS_RIDGES,
    PINEAL_CALCIFICATION,
    SINUSES,
    Head,
    cranial_floor_height,
    tentorium_height,
)
from ichseg.data.synth.dura import draw_dural_folds, draw_venous_sinuses
from ichseg.data.synth.extracranial import draw_extracranial
from ichseg.data.synth.slab import Slab
from ichseg.data.synth.vocabulary import Tissue

#: HU of each tissue code, as keys of ``Head.hu`` and ``LookAlikes.hu`` (AIR, SCALP and BONE
#: are set apart: they are layered).
_HU_KEYS = {Tissue.CSF: "csf", Tissue.GREY: "grey", Tissue.WHITE: "white", Tissue.EDEMA: "edema",
            Tissue.CALCIFICATION: "calcification", Tissue.MUSCLE: "muscle",
            Tissue.SCALP_VESSEL: "vessel", Tissue.DURAL_SINUS: "sinus", Tissue.DURA: "dura",
            Tissue.CHOROID_PLEXUS: "choroid", Tissue.OLD_INFARCT: "infarct", Tissue.ORBIT: "fat",
            Tissue.GLOBE: "vitreous", Tissue.LENS: "lens", Tissue.OPTIC_NERVE: "nerve"}


def anatomy_slab(head: Head, z: np.ndarray, y: np.ndarray, x: np.ndarray,
                 z_shift: np.ndarray) -> Slab:
    """The slab of samples at (z, y, x) with the head's anatomy drawn and its HU computed."""
    slab = Slab(head, z, y, x, z_shift)
    _draw_head(slab)
    draw_extracranial(slab)
    _draw_brain(slab)
    _draw_deep_structures(slab)
    _draw_old_infarct(slab)
    draw_venous_sinuses(slab)
    slab.hu = _intensities(slab)
    below_floor = ~slab.cavity & np.isin(slab.codes, (Tissue.CSF, Tissue.WHITE))
    slab.codes[below_floor] = Tissue.SPINAL_CANAL
    return slab


def _draw_head(slab: Slab) -> None:
    """Scalp, vault (and its defect), cranial cavity and skull base; face and neck below it."""
    head, nu, nv, nw = slab.head, slab.nu, slab.nv, slab.nw
    temporalis = head.temporalis_thickness(nu, nw)
    contour_depth = head.contour_radius(nu, nv, nw) - slab.r
    slab.depth_skin = contour_depth + temporalis
    slab.scalp_mm = temporalis + np.float32(head.scalp_mm)
    slab.bone_depth = contour_depth - np.float32(head.scalp_mm)
    slab.skull_mm = head.skull_thickness(nu, nv, nw)
    hole = None if head.defect is None else head.defect.contains(nu, nv, nw)
    defect_kind = None if head.defect is None else head.defect.kind
    if hole is not None and defect_kind == "craniectomy":  # the brain swells into the gap
        slab.skull_mm = np.where(hole, np.float32(0), slab.skull_mm)
    depth_inner = slab.bone_depth - slab.skull_mm
    above_floor = slab.w - cranial_floor_height(slab.un, slab.vn) * np.float32(head.scale[2])
    inside_inner = depth_inner > 0
    slab.radial_depth = depth_inner                            # below the vault's inner table
    slab.depth_inner = np.minimum(depth_inner, above_floor)   # below the nearest bone
    slab.above_floor = above_floor
    slab.cavity = inside_inner & (above_floor > 0)
    skull = (slab.bone_depth > 0) & ~inside_inner
    neck = slab.wn < NECK_LEVEL
    slab.plug = skull & hole if hole is not None and defect_kind == "burr_hole" else None
    if slab.plug is not None:
        skull &= ~slab.plug
    slab.vault = skull & ~neck
    slab.below_base = inside_inner & (above_floor <= -head.base_mm)
    slab.scalp = (slab.depth_skin > 0) & (slab.bone_depth <= 0)
    slab.deep_soft = slab.below_base | (skull & neck)
    base = inside_inner & (above_floor <= 0) & (above_floor > -head.base_mm)
    slab.codes[slab.depth_skin > 0] = Tissue.SCALP
    slab.codes[slab.vault | base] = Tissue.BONE
    for shape in SINUSES:
        slab.paint(shape, Tissue.AIR, slab.below_base)
    slab.paint(FORAMEN_MAGNUM, Tissue.CSF, inside_inner & ~slab.cavity)
    slab.inside_inner = inside_inner


def _draw_brain(slab: Slab) -> None:
    """Cortical ribbon over white matter, folded by sulci and fissures; CSF in the clefts."""
    head, un, vn, wn = slab.head, slab.un, slab.vn, slab.wn
    surface = slab.depth_inner - np.float32(head.subarachnoid_mm)  # depth below the brain
    infratentorial = (wn < tentorium_height(un, vn)) & (vn > 4.0)


    sulci = np.full(un.shape, np.inf, np.float32)
    radial = slab.radial_depth - np.float32(head.subarachnoid_mm)
    band = slab.cavity & (radial < 1.4 * head.sulcus_depth + head.cortex_mm + 2.0) & ~infratentorial
    sulci[band] = _sulci(slab, band, radial[band])


    folds = head.lookalikes
    central = ((vn - 2.0) / 36.0) ** 2 + ((wn - 4.0) / 22.0) ** 2 < 1.0
    falx = ~((central | infratentorial) & ~(infratentorial & (vn > 58.0)))
    fissure = np.abs(un) - np.float32(0.4 + 0.5 * head.sulcus_half_width + folds.falx_mm / head.scale[0])
    fissure[~falx] = np.inf


    side = np.abs(un)
    insular = np.sqrt((side - 34.0) ** 2 + _outside(vn, -28.0, 8.0) + _outside(wn, -14.0, 14.0)) - 1.0
    stem_offset = (vn + 24.0 + 0.36 * (side - 34.0) - 0.8 * (wn + 2.0)) * np.float32(1 / math.sqrt(1.77))
    stem = np.sqrt(stem_offset**2 + np.maximum(34.0 - side, 0.0) ** 2 + _outside(wn, -16.0, 10.0)) - 1.3


    tentorium = (np.sqrt((wn - tentorium_height(un, vn)) ** 2 + np.maximum(4.0 - vn, 0.0) ** 2)
                 - np.float32(0.8 + folds.tentorium_mm / head.scale[2]))


    slab.cleft = np.minimum(np.minimum(surface, sulci), np.minimum(fissure, tentorium))
    slab.cleft = np.minimum(slab.cleft, np.minimum(insular, stem))
    brain = np.where(slab.cleft < 0, np.uint8(Tissue.CSF),
                     np.where((slab.cleft < head.cortex_mm) | infratentorial,
                              np.uint8(Tissue.GREY), np.uint8(Tissue.WHITE)))
    np.copyto(slab.codes, brain, where=slab.cavity)
    draw_dural_folds(slab, falx & slab.cavity)


def _sulci(slab: Slab, band: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Distance to the nearest sulcus (negative inside) for the samples in ``band``.


    Sulci are the zero set of a random wave field on the sphere, so they run inwards from the
    surface as a meandering labyrinth; a slow field bends them and varies their depth.
    """
    head = slab.head
    p = [c[band] for c in (slab.u, slab.v, slab.w)]
    n = [c[band] for c in (slab.nu, slab.nv, slab.nw)]
    slow = [np.sin(sum(np.float32(k[i]) * p[i] for i in range(3)) + np.float32(phase))
            for k, phase in zip(head.warp, head.warp_phases, strict=True)]
    bent = [n[i] + np.float32(0.05) * slow[i] for i in range(3)]
    pattern = np.zeros(depth.shape, np.float32)
    for k, phase in zip(head.waves, head.phases, strict=True):
        pattern += np.cos(sum(np.float32(k[i]) * bent[i] for i in range(3)) + np.float32(phase))
    gradient = float(np.linalg.norm(head.waves[0])) * math.sqrt(len(head.phases) / 2)
    across = np.abs(pattern) * slab.r[band] / np.float32(gradient)
    deepest = np.float32(head.sulcus_depth) * (1.0 + np.float32(0.35) * slow[3])
    below = np.maximum(depth - deepest, 0.0)
    return np.sqrt(across * across + below * below) - np.float32(head.sulcus_half_width)


def _draw_deep_structures(slab: Slab) -> None:
    head, cavity = slab.head, slab.cavity
    for shape in DEEP_GREY:
        slab.paint(shape, Tissue.GREY, cavity)
    for shape in LATERAL_VENTRICLES:
        slab.paint(shape.scaled(head.ventricle_scale), Tissue.CSF, cavity, ventricle=True)
    for shape in CHOROID_PLEXUS:
        slab.paint(shape.scaled(head.lookalikes.choroid_scale), Tissue.CHOROID_PLEXUS,
                   slab.ventricle & (slab.codes == Tissue.CSF))
    for shape in CAUDATE_HEADS:
        slab.paint(shape, Tissue.GREY, cavity, ventricle=False)
    for shape in CISTERNS:
        slab.paint(shape, Tissue.CSF, cavity)
    for shape in BRAINSTEM:
        slab.paint(shape, Tissue.WHITE, cavity)
    for shape in MIDLINE_VENTRICLES:
        slab.paint(shape.scaled(head.ventricle_scale), Tissue.CSF, cavity, ventricle=True)
    if head.calcified_choroid:
        for shape in CHOROID_CALCIFICATIONS:
            slab.paint(shape, Tissue.CALCIFICATION, cavity)
    if head.calcified_pineal:
        slab.paint(PINEAL_CALCIFICATION, Tissue.CALCIFICATION, cavity)
    slab.paint(MEDULLA, Tissue.WHITE, slab.inside_inner)
    inside_head = slab.depth_skin > 0
    for shape in PETROUS_RIDGES:
        slab.paint(shape, Tissue.BONE, inside_head)


def _draw_old_infarct(slab: Slab) -> None:
    """A wedge of hypodense brain from the cortex inwards, narrowing to its apex."""
    infarct = slab.head.lookalikes.infarct
    if infarct is None:
        return
    d = infarct.direction.astype(np.float32)
    cosine = slab.nu * d[0] + slab.nv * d[1] + slab.nw * d[2]
    near = slab.cavity & (cosine > np.float32(math.cos(infarct.half_angle)))
    near &= np.isin(slab.codes, (Tissue.GREY, Tissue.WHITE))
    taper = 1.0 - slab.radial_depth[near] / np.float32(infarct.depth_mm)
    angle = np.arccos(np.clip(cosine[near], -1.0, 1.0))
    wedge = np.zeros_like(near)
    wedge[near] = (taper > 0) & (angle < np.float32(infarct.half_angle) * taper)
    slab.codes[wedge] = Tissue.OLD_INFARCT


def _intensities(slab: Slab) -> np.ndarray:
    """Noise-free HU of every sample: a value per tissue plus skull and soft-tissue layering."""
    hu = {**slab.head.hu, **slab.head.lookalikes.hu}
    table = np.zeros(len(Tissue), np.float32)
    table[Tissue.AIR] = -1000.0
    table[Tissue.SCALP] = hu["fat"]
    table[Tissue.BONE] = hu["base"]
    for tissue, key in _HU_KEYS.items():
        table[tissue] = hu[key]
    values = table[slab.codes]

    vault = slab.vault & (slab.codes == Tissue.BONE)
    fraction = slab.bone_depth[vault] / slab.skull_mm[vault]
    dense = (fraction < 0.3) | (fraction > 0.75)
    values[vault] = np.where(dense, np.float32(hu["table"]), np.float32(hu["diploe"]))

    skin = slab.scalp & (slab.codes == Tissue.SCALP) & (slab.depth_skin < 1.8)
    values[skin] = hu["skin"]
    if slab.plug is not None:
        values[slab.plug & (slab.codes == Tissue.SCALP)] = hu["skin"]
    return values


def _outside(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Squared distance of ``x`` outside the interval [low, high]."""
    below = np.maximum(low - x, 0.0)
    above = np.maximum(x - high, 0.0)
    return below * below + above * above
