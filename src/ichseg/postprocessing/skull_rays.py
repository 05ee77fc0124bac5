"""Rays from a point deep in the cranial cavity: where each meets the skull, where the skull's
outer table ends and where the skin is.

Rays leave one point in evenly spread directions (a Fibonacci sphere). A ray that meets bone
measures the skull in its direction. A ray that reaches air first, leaves the image through its
side or runs on for :data:`RAY_MM` without meeting bone looks through a gap: a craniectomy, a
skull cut by the field of view, a missing piece of a tilt-corrected scan. Rays that leave
through the first or last slice look out of a scan cropped at the vertex or the skull base;
they are no gaps.

Whether a ray meets bone is read on the working grid's closed bone (robust to thin and porous
bone); where the outer table ends and where the skin begins are read on the input's own voxels,
at the edges of the dense bone and of the air: a bone threshold low enough to keep thin plates
takes the partial volume beyond the table with it, and a block of the working grid with any bone
or air in it would move both edges by up to a block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Directions cast from the centre (about 4.5 degrees apart).
N_RAYS = 2000
#: Directions cast within a slice (1 degree apart).
N_CIRCLE = 360
#: How far a ray looks for bone; an adult cranial cavity is at most about 100 mm from its middle.
RAY_MM = 160.0


@dataclass(frozen=True)
class SkullView:
    """What rays look through: the skull's ``shell`` (its bone, closed) on a working grid of
    ``spacing``, and on the input's grid of ``fine_spacing`` its ``dense`` bone (a skull's
    tables) and the ``air``. Positions are in mm from the working grid's voxel (0, 0, 0), whose
    middle lies ``fine_offset`` mm from the input's voxel (0, 0, 0)."""

    shell: np.ndarray
    spacing: tuple[float, float, float]
    dense: np.ndarray
    air: np.ndarray
    fine_spacing: tuple[float, float, float]
    fine_offset: tuple[float, float, float]


@dataclass(frozen=True)
class SkullRays:
    """What the rays from one centre found."""

    centre_mm: np.ndarray
    """Where the rays start (z, y, x mm)."""
    directions: np.ndarray
    """(N, 3) unit vectors in (z, y, x) mm."""
    inner_mm: np.ndarray
    """Radius where the ray meets bone (NaN where it meets none)."""
    outer_mm: np.ndarray
    """Radius where the dense bone of the first bone met ends, or without dense bone, where that
    bone ends: the outer table, or the inner wall of a sinus behind it (NaN where the ray met
    no bone)."""
    skin_mm: np.ndarray
    """Radius of the first air beyond the bone, or of the air that stopped a ray through a gap:
    the skin (NaN where the ray met none)."""
    gap: np.ndarray
    """Rays that look through a gap in the skull."""
    cropped: np.ndarray
    """Rays that leave the scan through its first or last slice before meeting bone."""
    dense: np.ndarray
    """Rays whose first bone holds dense bone (a table of the skull, not partial volume)."""

    @property
    def dense_share(self) -> float:
        """The share of the rays not lost to cropping that meet dense bone."""
        seen = ~self.cropped
        return float(self.dense[seen].mean()) if seen.any() else 0.0


def fibonacci_directions(n: int = N_RAYS) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere, as (z, y, x)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * k / n)
    azimuth = np.pi * (1.0 + 5.0 ** 0.5) * k
    return np.stack([np.cos(polar), np.sin(polar) * np.sin(azimuth),
                     np.sin(polar) * np.cos(azimuth)], axis=1)


def circle_directions(n: int = N_CIRCLE) -> np.ndarray:
    """``n`` unit vectors spread evenly over the circle within a slice, as (z, y, x)."""
    angle = 2 * np.pi * (np.arange(n) + 0.5) / n
    return np.stack([np.zeros(n), np.sin(angle), np.cos(angle)], axis=1)


def cast_rays(view: SkullView, centre_mm: np.ndarray,
              directions: np.ndarray | None = None) -> SkullRays:
    """Follow rays from ``centre_mm`` in ``directions`` (by default :func:`fibonacci_directions`)
    through the ``view`` in steps of half a working voxel."""
    directions = fibonacci_directions() if directions is None else directions
    step_mm = min(view.spacing) / 2
    radii = np.arange(1, int(RAY_MM / step_mm) + 1) * step_mm
    points = centre_mm + radii[None, :, None] * directions[:, None, :]   # (rays, steps, 3)
    (bone,), inside, inside_axis = _sampled((view.shell,), points, view.spacing)
    (reached_air, dense), _, _ = _sampled((view.air, view.dense),
                                          points + np.asarray(view.fine_offset), view.fine_spacing)
    event = bone | reached_air | ~inside
    any_event = event.any(axis=1)
    first = np.argmax(event, axis=1)
    rows, steps = np.arange(len(directions)), np.arange(len(radii))
    hit = any_event & bone[rows, first]
    cropped = any_event & ~inside[rows, first] & ~inside_axis[rows, first, 0] & ~hit
    after_bone = ~bone & (steps > first[:, None])
    end = np.where(after_bone.any(axis=1), np.argmax(after_bone, axis=1), len(radii) - 1)
    in_run = dense & (steps >= first[:, None]) & (steps < end[:, None])
    has_dense = hit & in_run.any(axis=1)
    outer_step = np.where(has_dense, len(radii) - 1 - np.argmax(in_run[:, ::-1], axis=1), end)
    inner = np.where(hit, radii[first], np.nan)
    outer = np.where(hit, radii[outer_step] + np.where(has_dense, step_mm / 2, 0.0), np.nan)
    beyond = reached_air & (steps > np.where(hit, outer_step, first - 1)[:, None])
    skin = np.where(beyond.any(axis=1), radii[np.argmax(beyond, axis=1)], np.nan)
    return SkullRays(centre_mm, directions, inner, outer, skin, gap=~hit & ~cropped,
                     cropped=cropped, dense=has_dense)


def _sampled(masks: tuple[np.ndarray, ...], points: np.ndarray,
             spacing: tuple[float, float, float]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Each of ``masks`` (one grid of ``spacing``) at the voxels nearest ``points`` (mm; False
    outside the image), whether the points lie inside the image, and along which axes."""
    shape = np.asarray(masks[0].shape)
    index = np.rint(points / np.asarray(spacing)).astype(np.int32)
    inside_axis = (index >= 0) & (index < shape)
    inside = inside_axis.all(axis=-1)
    flat = np.where(inside, np.ravel_multi_index(tuple(np.moveaxis(np.where(
        inside[..., None], index, 0), -1, 0)), tuple(shape)), 0)
    return [inside & mask.ravel()[flat] for mask in masks], inside, inside_axis
