"""The dense dura and the blood in it: falx, tentorium and the dural venous sinuses.

All of them lie inside the cranial cavity (inside the dura, where a hemorrhage can be), and all
read 40-70 HU like blood (see :mod:`~ichseg.data.synth.lookalikes`). The superior sagittal sinus
is a triangle against the inner table along the midline, growing from the front to the torcula;
the transverse sinuses run from the torcula along the tentorium's attachment to the occipital
bone and turn into the sigmoid sinuses down to the jugular foramina; the straight sinus joins
the vein of Galen to the torcula along the junction of falx and tentorium.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ichseg.data.synth.anatomy import (
    GALEN,
    SIGMOID_PATH,
    TORCULA_DIRECTION,
    Ellipsoid,
    tentorium_height,
)
from ichseg.data.synth.slab import Slab
from ichseg.data.synth.vocabulary import Tissue

_FRONT_ANGLE = math.atan2(-0.97, -0.24)  # sagittal angle from the vertex where the sinus begins


def draw_dural_folds(slab: Slab, falx_plane: np.ndarray) -> None:
    """The falx in the middle of the interhemispheric fissure (where ``falx_plane`` allows it),
    the tentorium in the middle of its cleft, and a calcified plaque on the falx if any."""
    head, folds = slab.head, slab.head.lookalikes
    falx = falx_plane & (np.abs(slab.u) < np.float32(folds.falx_mm))
    tentorium = slab.cavity & (slab.vn > 4.0) & (
        np.abs(slab.w - tentorium_height(slab.un, slab.vn) * np.float32(head.scale[2]))
        < np.float32(folds.tentorium_mm))
    slab.codes[falx | tentorium] = Tissue.DURA
    if folds.falx_plaque is not None:
        center, radius = folds.falx_plaque
        plaque = Ellipsoid(center, (2.0 * folds.falx_mm, radius, radius))
        slab.paint(plaque, Tissue.CALCIFICATION, slab.codes == Tissue.DURA)


def draw_venous_sinuses(slab: Slab) -> None:
    """Superior sagittal, transverse, sigmoid and straight sinuses and the torcula."""
    head, folds = slab.head, slab.head.lookalikes
    direction = np.asarray(TORCULA_DIRECTION) / np.linalg.norm(TORCULA_DIRECTION)
    torcula_mm = 1.2 * max(folds.transverse_mm)
    torcula = direction * (head.inner_radius(direction) - 0.5 * torcula_mm)
    _superior_sagittal(slab, math.atan2(direction[1], direction[2]))
    _transverse(slab)
    for side, radius in zip((1, -1), folds.transverse_mm, strict=True):
        path = [head.to_local((side * u, v, w)) for u, v, w in SIGMOID_PATH]
        for start, end in itertools.pairwise(path):
            _capsule(slab, start, end, radius,
                     slab.cavity & (slab.depth_inner < np.float32(1.8 * radius)))
    _capsule(slab, torcula, torcula, torcula_mm, slab.cavity)
    _capsule(slab, head.to_local(GALEN), torcula, folds.straight_mm, slab.cavity)


def _superior_sagittal(slab: Slab, back_angle: float) -> None:
    """A triangle, base on the inner table, that grows from the front to the torcula."""
    half_width, height = slab.head.lookalikes.sagittal_sinus_mm
    near = slab.cavity & (np.abs(slab.u) < np.float32(half_width)) & (slab.radial_depth < height)
    angle = np.arctan2(slab.v[near], slab.w[near])
    growth = np.clip((angle - _FRONT_ANGLE) / np.float32(back_angle - _FRONT_ANGLE), 0.0, 1.0)
    size = np.float32(0.3) + np.float32(0.7) * growth
    depth = slab.radial_depth[near] / (np.float32(height) * size)
    inside = ((angle > _FRONT_ANGLE) & (angle < back_angle) & (depth < 1.0)
              & (np.abs(slab.u[near]) < np.float32(half_width) * size * (1.0 - depth)))
    sinus = np.zeros_like(near)
    sinus[near] = inside
    slab.codes[sinus] = Tissue.DURAL_SINUS


def _transverse(slab: Slab) -> None:
    """Half-ellipses on the occipital inner table along the attachment of the tentorium."""
    head = slab.head
    radius = np.where(slab.u > 0, np.float32(head.lookalikes.transverse_mm[0]),
                      np.float32(head.lookalikes.transverse_mm[1]))
    near = slab.cavity & (slab.vn > 30.0) & (slab.radial_depth < radius)
    height = slab.w[near] - tentorium_height(slab.un[near], slab.vn[near]) * np.float32(head.scale[2])
    r = radius[near]
    inside = (height / r) ** 2 + (slab.radial_depth[near] / (0.8 * r)) ** 2 < 1.0
    sinus = np.zeros_like(near)
    sinus[near] = inside
    slab.codes[sinus] = Tissue.DURAL_SINUS


def _capsule(slab: Slab, start: np.ndarray, end: np.ndarray, radius: float,
             within: np.ndarray) -> None:
    """Paint the sinus within ``radius`` of the segment from ``start`` to ``end`` (local mm)."""
    head = slab.head
    center = head.to_world((start + end) / 2)
    half = np.abs(head.rotation.T @ (end - start)) / 2 + radius
    box = slab.box(center, half)
    if box is None:
        return
    axis = (end - start).astype(np.float32)
    length2 = np.float32(max(float(axis @ axis), 1e-6))
    offset = [slab.u[box] - np.float32(start[0]), slab.v[box] - np.float32(start[1]),
              slab.w[box] - np.float32(start[2])]
    t = np.clip(sum(o * a for o, a in zip(offset, axis, strict=True)) / length2, 0.0, 1.0)
    distance2 = sum((o - t * a) ** 2 for o, a in zip(offset, axis, strict=True))
    inside = (distance2 < np.float32(radius * radius)) & within[box]
    slab.codes[box][inside] = Tissue.DURAL_SINUS
