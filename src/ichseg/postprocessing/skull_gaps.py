"""Gaps in the skull seen from inside, and the caps that seal them.

Rays leave one point deep in the cranial cavity in evenly spread directions (a Fibonacci
sphere). A ray that meets bone measures the skull in its direction: the radius at which the bone
ends (the outer table, or the inner wall of a sinus behind it). A ray that reaches air first,
leaves the image through its side or runs on for :data:`RAY_MM` without meeting bone looks
through a gap: a craniectomy, a skull cut by the field of view, a missing piece of a
tilt-corrected scan. Rays that leave through the first or last slice look out of a scan cropped
at the vertex or the skull base, which the walled 3D fill seals instead; they are no gaps.

Over a gap the skull's outer surface is put at the skin less the scalp's thickness, which is
interpolated from the directions around the gap (harmonic interpolation on the neighbour graph
of the directions); where no skin was met, at the outer radius interpolated the same way. A cap
covers everything beyond that surface, and beyond the bone's inner surface in a ring of
directions around the gap, so that it overlaps the bone at the gap's edge. After a craniectomy
the brain lies right under the scalp, sunken or bulging, and stays inside; the scalp and the
muscle beyond stay outside, but for where the muscle is thicker over the gap than around it
(the temporal muscle over a lateral defect), which errs on keeping rather than cutting brain.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: Directions cast from the centre (about 4.5 degrees apart).
N_RAYS = 2000
#: How far a ray looks for bone; an adult cranial cavity is at most about 100 mm from its middle.
RAY_MM = 160.0
#: A voxel and its eight neighbours within the slice: the cap thickening (across slices a voxel
#: can be several millimetres, and the cap, open outwards, needs none).
_IN_PLANE_SQUARE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_SQUARE[1] = True
#: A ray whose bone ends this much before its neighbours' met something inside the cavity.
EARLY_MM = 10.0
#: The thickest scalp (with the temporal muscle) taken from around a gap.
MAX_SCALP_MM = 25.0
#: The thickest skull a cap overlaps at the edge of a gap.
MAX_SKULL_MM = 15.0
#: Neighbours of a direction on the sphere (interpolation and widening a gap by one ring).
_NEIGHBOURS = 8
#: Rings of directions a cap reaches beyond a gap.
_RINGS = 2
#: Sweeps of harmonic interpolation over the gap directions.
_SWEEPS = 200
#: Resolution (degrees) of the table that gives a voxel's direction the rays' values.
_TABLE_DEGREES = 1.0
#: Rays whose values are interpolated at a direction.
_INTERPOLATED = 4


@dataclass(frozen=True)
class SkullRays:
    """What the rays from one centre found."""

    directions: np.ndarray
    """(N, 3) unit vectors in (z, y, x) mm."""
    inner_mm: np.ndarray
    """Radius where the ray meets bone (NaN where it meets none)."""
    outer_mm: np.ndarray
    """Radius where the first bone met ends (NaN where the ray met none)."""
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


def cast_rays(shell: np.ndarray, dense: np.ndarray, air: np.ndarray,
              spacing: tuple[float, float, float], centre_mm: np.ndarray,
              step_mm: float) -> SkullRays:
    """Follow every ray from ``centre_mm`` through the bone ``shell``, the ``dense`` bone (a
    skull's tables) and the ``air``.

    The masks lie on the same grid of ``spacing``; positions are in mm from voxel (0, 0, 0).
    """
    directions = fibonacci_directions()
    radii = np.arange(1, int(RAY_MM / step_mm) + 1) * step_mm
    points = centre_mm + radii[None, :, None] * directions[:, None, :]   # (rays, steps, 3)
    index = np.rint(points / np.asarray(spacing)).astype(np.int64)
    shape = np.asarray(shell.shape)
    inside_axis = (index >= 0) & (index < shape)
    inside = inside_axis.all(axis=2)
    safe = np.where(inside[..., None], index, 0)
    bone = inside & shell[safe[..., 0], safe[..., 1], safe[..., 2]]
    reached_air = inside & air[safe[..., 0], safe[..., 1], safe[..., 2]]
    dense_seen = np.cumsum(inside & dense[safe[..., 0], safe[..., 1], safe[..., 2]], axis=1)
    event = bone | reached_air | ~inside
    any_event = event.any(axis=1)
    first = np.argmax(event, axis=1)
    rows = np.arange(len(directions))
    hit = any_event & bone[rows, first]
    left_through_end = any_event & ~inside[rows, first] & ~inside_axis[rows, first, 0]
    cropped = left_through_end & ~hit
    after_bone = ~bone & (np.arange(len(radii)) > first[:, None])
    end = np.where(after_bone.any(axis=1), np.argmax(after_bone, axis=1), len(radii) - 1)
    rows_dense = dense_seen[rows, end] > np.where(first > 0, dense_seen[rows, first - 1], 0)
    inner = np.where(hit, radii[first], np.nan)
    outer = np.where(hit, radii[end], np.nan)
    beyond = reached_air & (np.arange(len(radii)) >= np.where(hit, end, first)[:, None])
    skin = np.where(beyond.any(axis=1), radii[np.argmax(beyond, axis=1)], np.nan)
    return SkullRays(directions, inner, outer, skin, gap=~hit & ~cropped, cropped=cropped,
                     dense=hit & rows_dense)


def interpolated_outer(rays: SkullRays) -> np.ndarray:
    """The skull's outer radius in every direction, or over a gap where it would be.

    Where bone was met, the ray's own radius, unless it ends more than :data:`EARLY_MM` before
    the median of its neighbours' (a ray that grazes a ridge inside the cavity): then that
    median. Over a gap, the skin less the scalp's thickness interpolated from around the gap
    (after a craniectomy the brain lies right under the scalp, sunken or bulging); where a ray
    through a gap met no skin (a skull cut by the field of view), the outer radius
    interpolated from around the gap. Interpolation is harmonic over the directions' neighbours.
    """
    neighbours = _neighbours(rays.directions)
    known = ~np.isnan(rays.outer_mm)
    if not known.any():
        return np.full(len(known), np.nan)
    with warnings.catch_warnings():  # a ray whose neighbours all met no bone has no median
        warnings.simplefilter("ignore", RuntimeWarning)
        around = np.nanmedian(np.where(known[neighbours], rays.outer_mm[neighbours], np.nan),
                              axis=1)
    outer = np.where(known & (rays.outer_mm < around - EARLY_MM), around, rays.outer_mm)
    if known.all():
        return outer
    scalp = np.clip(rays.skin_mm - outer, 0.0, MAX_SCALP_MM)
    has_scalp = known & ~np.isnan(scalp)
    under_skin = rays.skin_mm - _harmonic(np.where(has_scalp, scalp, 0.0), has_scalp, neighbours)
    over_gap = np.where(np.isnan(rays.skin_mm), _harmonic(outer, known, neighbours), under_skin)
    return np.where(known, outer, over_gap)


def _harmonic(values: np.ndarray, known: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``values`` where ``known``; elsewhere their harmonic interpolation over ``neighbours``."""
    if not known.any():
        return np.full(len(values), np.nan)
    values = np.where(known, values, np.median(values[known]))
    for _ in range(_SWEEPS):
        values = np.where(known, values, values[neighbours].mean(axis=1))
    return values


def _neighbours(directions: np.ndarray) -> np.ndarray:
    """The :data:`_NEIGHBOURS` nearest other directions of each direction."""
    return cKDTree(directions).query(directions, _NEIGHBOURS + 1)[1][:, 1:]


def widened(gap: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``gap`` and :data:`_RINGS` rings of directions around it, so that a cap overlaps the bone
    at the gap's edge (which rays, some millimetres apart there, can pass obliquely)."""
    neighbours = _neighbours(directions)
    for _ in range(_RINGS):
        gap = gap | gap[neighbours].any(axis=1)
    return gap


def paint_caps(shape: tuple[int, int, int], spacing: tuple[float, float, float],
               centre_mm: np.ndarray, rays: SkullRays) -> np.ndarray:
    """The caps over the gaps, on the grid of ``shape`` and ``spacing``.

    In a gap's directions a cap covers everything beyond the skull's outer radius
    (:func:`interpolated_outer`); in the ring of directions around the gap, everything beyond the
    bone's inner radius (at most :data:`MAX_SKULL_MM` inside the outer one), so that it overlaps
    the bone at the gap's edge. Radii vary smoothly between directions (they are interpolated
    from the nearest rays), and the cap is thickened by a voxel in-plane, so no path slips
    between neighbouring directions.
    """
    capped = widened(rays.gap, rays.directions)
    if not capped.any():
        return np.zeros(shape, dtype=bool)
    outer = interpolated_outer(rays)
    rim = np.fmax(rays.inner_mm, outer - MAX_SKULL_MM)  # NaN (no bone met) gives the other
    per_ray = np.stack([capped.astype(float), np.where(rays.gap, outer, rim)], axis=1)
    axes = [np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre_mm)]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    radius = np.sqrt(z * z + y * y + x * x)
    share, start = _by_direction(rays.directions, per_ray, z, y, x, radius)
    return ndimage.binary_dilation((share >= 0.5) & (radius >= start), _IN_PLANE_SQUARE)


def _by_direction(directions: np.ndarray, per_ray: np.ndarray, z: np.ndarray, y: np.ndarray,
                  x: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-ray values interpolated at each voxel's direction: inverse-distance weights of
    the nearest rays, tabulated on a polar/azimuth grid and looked up."""
    n_polar, n_azimuth = int(180 / _TABLE_DEGREES), int(360 / _TABLE_DEGREES)
    polar = (np.arange(n_polar) + 0.5) * np.pi / n_polar
    azimuth = (np.arange(n_azimuth) + 0.5) * 2 * np.pi / n_azimuth - np.pi
    grid_polar, grid_azimuth = np.meshgrid(polar, azimuth, indexing="ij")
    table_dirs = np.stack([np.cos(grid_polar), np.sin(grid_polar) * np.sin(grid_azimuth),
                           np.sin(grid_polar) * np.cos(grid_azimuth)], axis=-1).reshape(-1, 3)
    distance, nearest = cKDTree(directions).query(table_dirs, _INTERPOLATED)
    weights = 1.0 / np.maximum(distance, 1e-6)
    table = (per_ray[nearest] * weights[..., None]).sum(axis=1) / weights.sum(axis=1)[:, None]
    table = table.reshape(n_polar, n_azimuth, per_ray.shape[1])
    cos_polar = np.clip(z / np.maximum(radius, 1e-6), -1.0, 1.0)
    row = np.minimum((np.arccos(cos_polar) / np.pi * n_polar).astype(np.int64), n_polar - 1)
    column = np.minimum(((np.arctan2(y, x) + np.pi) / (2 * np.pi) * n_azimuth).astype(np.int64),
                        n_azimuth - 1)
    values = table[row, column]
    return tuple(values[..., k] for k in range(per_ray.shape[1]))
