"""Gaps in the skull seen from inside, and the caps that seal them.

Over a gap (:mod:`ichseg.postprocessing.skull_rays`) the skull's outer surface is put at the
skin less the soft tissue's thickness (scalp, galea and temporal muscle). After a craniectomy the
brain lies right under that tissue, sunken or bulging, and the skin follows it; the thickness is
the one on the other side of the head, measured along the ray's mirror image in the midsagittal
plane (:mod:`ichseg.postprocessing.midsagittal`), since the temporal muscle, thick on the side of
the head and thin above the temporal line, is no thicker around a lateral gap than over it.
Where the mirror image looks through a gap too (a bifrontal craniectomy), the thickness is
interpolated from around the gap (harmonic interpolation on the neighbour graph of the
directions); where a ray met no skin (a skull cut by the field of view), the outer radius is.

A cap covers everything beyond that surface in the gap's directions and beyond the outer table
in a ring of directions around it, where it meets the bone at the gap's edge.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ichseg.postprocessing.midsagittal import MirrorPlane
from ichseg.postprocessing.skull_rays import SkullRays, SkullView, cast_rays

#: A voxel and its eight neighbours within the slice: the cap widening (across slices a voxel
#: can be several millimetres).
_IN_PLANE_SQUARE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_SQUARE[1] = True
#: A ray whose bone ends this much before its neighbours' met something inside the cavity.
EARLY_MM = 10.0
#: The thickest soft tissue (scalp with the temporal muscle) over the skull taken.
MAX_SCALP_MM = 25.0
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


def mirrored_thickness(view: SkullView, rays: SkullRays, plane: MirrorPlane | None,
                       in_slice: bool = False) -> np.ndarray:
    """Per ray through a gap that met the skin, the soft tissue's thickness (from the outer
    table to the skin) along its mirror image in the midsagittal ``plane``: a ray cast from the
    mirrored centre in the mirrored direction. Where that one leaves the scan or meets no skin
    (a plane turned a little too far across thick slices), or for rays ``in_slice``, the mirror
    image in the plane stood upright, which keeps each slice's height. NaN elsewhere, and where
    the mirror image meets no dense bone or no skin (it looks through a gap too)."""
    thickness = np.full(len(rays.directions), np.nan)
    wanted = rays.gap & ~np.isnan(rays.skin_mm)
    if plane is None or not wanted.any():
        return thickness
    planes = (plane.upright(rays.centre_mm[0]),) if in_slice else (
        plane, plane.upright(rays.centre_mm[0]))
    for mirror_plane in planes:
        todo = np.flatnonzero(wanted & np.isnan(thickness))
        directions = mirror_plane.reflect_direction(rays.directions[todo])
        mirror = cast_rays(view, mirror_plane.reflect(rays.centre_mm), directions)
        measured = np.where(mirror.dense, mirror.skin_mm - mirror.outer_mm, np.nan)
        thickness[todo] = np.clip(measured, 0.0, MAX_SCALP_MM)
    return thickness


def interpolated_outer(rays: SkullRays, thickness: np.ndarray) -> np.ndarray:
    """The skull's outer radius in every direction, or over a gap where it would be.

    Where bone was met, the ray's own radius, unless it ends more than :data:`EARLY_MM` before
    the median of its neighbours' (a ray that grazes a ridge inside the cavity): then that
    median. Over a gap, the skin less the soft tissue's ``thickness``, or where that is NaN,
    less the thickness interpolated from around the gap; where a ray through a gap met no
    skin, the outer radius interpolated from around the gap. Beside a gap, a ray whose bone
    lies more than :data:`MAX_SCALP_MM` inside the skin met bone inside the cavity (a ridge of
    the skull base, seen from a centre near it): it takes the median radius of its neighbours
    on the gap's side, ring by ring.
    """
    neighbours = _neighbours(rays.directions)
    known = ~np.isnan(rays.outer_mm)
    if not known.any():
        return np.full(len(known), np.nan)
    outer = _without_early(rays.outer_mm, known, neighbours)
    if known.all():
        return outer
    scalp = np.clip(rays.skin_mm - outer, 0.0, MAX_SCALP_MM)
    has_scalp = known & ~np.isnan(scalp)
    interpolated = _harmonic(np.where(has_scalp, scalp, 0.0), has_scalp, neighbours)
    under_skin = rays.skin_mm - np.where(np.isnan(thickness), interpolated, thickness)
    over_gap = np.where(np.isnan(rays.skin_mm), _harmonic(outer, known, neighbours), under_skin)
    outer = np.where(known, outer, over_gap)
    inside = known & (rays.skin_mm - rays.outer_mm > MAX_SCALP_MM)
    surface = ~known
    for _ in range(_RINGS):
        beside = known & ~surface & surface[neighbours].any(axis=1)
        with warnings.catch_warnings():  # a ray with no neighbour on the surface: no median
            warnings.simplefilter("ignore", RuntimeWarning)
            around = np.nanmedian(np.where(surface, outer, np.nan)[neighbours], axis=1)
        outer = np.where(beside & inside, around, outer)
        surface |= beside
    return outer


def _without_early(radius: np.ndarray, known: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``radius``, where more than :data:`EARLY_MM` below the median of its ``known``
    neighbours', that median."""
    with warnings.catch_warnings():  # a ray whose neighbours all met no bone has no median
        warnings.simplefilter("ignore", RuntimeWarning)
        around = np.nanmedian(np.where(known[neighbours], radius[neighbours], np.nan), axis=1)
    return np.where(known & (radius < around - EARLY_MM), around, radius)


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
    """``gap`` and :data:`_RINGS` rings of directions around it, so that a cap meets the bone
    at the gap's edge (which rays, some millimetres apart there, can pass obliquely)."""
    neighbours = _neighbours(directions)
    for _ in range(_RINGS):
        gap = gap | gap[neighbours].any(axis=1)
    return gap


def cropped_ends_beside_gaps(rays: SkullRays) -> list[int]:
    """The ends of the scan (0: the first slice, -1: the last) through which rays beside a gap
    leave it: there the gap reaches the end of the scan."""
    beside = widened(rays.gap, rays.directions) & rays.cropped
    downwards = rays.directions[beside, 0] < 0
    return [end for end, seen in ((0, downwards.any()), (-1, (~downwards).any())) if seen]


class VoxelDirections:
    """The voxels of a grid seen from the rays' centre: each one's distance, and the cell of a
    polar/azimuth table its direction falls in; per cell, the nearest rays and their
    inverse-distance weights. Values per ray are interpolated at every voxel by table lookup."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 rays: SkullRays, only_slice: int | None = None):
        """The voxels of the grid of ``shape`` and ``spacing``, or of its slice ``only_slice``."""
        self.rays = rays
        first, count = (0, shape[0]) if only_slice is None else (only_slice, 1)
        self.shape = (count, *shape[1:])
        axes = [(np.arange(first, first + count) * spacing[0] - rays.centre_mm[0]),
                *(np.arange(n) * s - c for n, s, c in zip(shape[1:], spacing[1:],
                                                          rays.centre_mm[1:], strict=True))]
        axes = [axis.astype(np.float32) for axis in axes]
        z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
        self.radius = np.sqrt(z * z + y * y + x * x)
        n_polar, n_azimuth = int(180 / _TABLE_DEGREES), int(360 / _TABLE_DEGREES)
        cos_polar = np.clip(z / np.maximum(self.radius, 1e-6), -1.0, 1.0)
        row = np.minimum((np.arccos(cos_polar) / np.pi * n_polar).astype(np.int32), n_polar - 1)
        column = np.minimum(((np.arctan2(y, x) + np.pi) / (2 * np.pi) * n_azimuth)
                            .astype(np.int32), n_azimuth - 1)
        self.cell = row * n_azimuth + column
        polar = (np.arange(n_polar) + 0.5) * np.pi / n_polar
        azimuth = (np.arange(n_azimuth) + 0.5) * 2 * np.pi / n_azimuth - np.pi
        grid_polar, grid_azimuth = np.meshgrid(polar, azimuth, indexing="ij")
        cells = np.stack([np.cos(grid_polar), np.sin(grid_polar) * np.sin(grid_azimuth),
                          np.sin(grid_polar) * np.cos(grid_azimuth)], axis=-1).reshape(-1, 3)
        distance, self.nearest = cKDTree(rays.directions).query(cells, _INTERPOLATED)
        weights = 1.0 / np.maximum(distance, 1e-6)
        self.weights = weights / weights.sum(axis=1, keepdims=True)

    def interpolated(self, per_ray: np.ndarray) -> np.ndarray:
        """``per_ray`` (one value per ray) at every voxel."""
        table = (per_ray[self.nearest] * self.weights).sum(axis=1).astype(np.float32)
        return table[self.cell]

    def share(self, which: np.ndarray) -> np.ndarray:
        """The voxels whose direction is mostly that of the rays ``which``."""
        return self.interpolated(which.astype(float)) >= 0.5


def paint_caps(voxels: VoxelDirections, thickness: np.ndarray) -> np.ndarray:
    """The caps over the gaps of ``voxels.rays``, on their grid: in the gaps' directions and a
    ring around them (:func:`widened`, less the rays that leave through an end of the scan),
    everything beyond the skull's outer radius (:func:`interpolated_outer`, over the gaps with
    the soft tissue's ``thickness``). Radii vary smoothly between directions (they are
    interpolated from the nearest rays); the cap is widened by a voxel in-plane beyond that
    radius, so that no path slips between it and the bone at the gap's edge."""
    rays = voxels.rays
    capped = widened(rays.gap, rays.directions) & ~rays.cropped
    if not capped.any():
        return np.zeros(voxels.shape, dtype=bool)
    beyond = voxels.radius >= voxels.interpolated(interpolated_outer(rays, thickness))
    return ndimage.binary_dilation(voxels.share(capped) & beyond, _IN_PLANE_SQUARE) & beyond
