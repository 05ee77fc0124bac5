"""Surface distances between two masks, computed as the INSTANCE 2022 organizers computed them.

The organizers' evaluation follows DeepMind's ``surface-distance``: the surface of a mask is the
set of corner points of the voxel grid whose 2×2×2 neighbourhood is partly inside the mask, and
each such point carries the area of the marching-cubes surface through its cube. Distances are
Euclidean, in mm, from every surface point of one mask to the nearest surface point of the other;
HD95 and NSD weigh each point by its area, so anisotropic voxels count by their true surface.

Two choices make this fast without changing a value:

- Only the bounding box of both masks, plus one voxel of background on every side, is examined.
  Every surface point is a corner of a foreground voxel, so none lies outside that box, and the
  distance between two points does not depend on what else is around them. Outside the array
  counts as background, as in the reference implementation, so masks touching the border close
  there too.
- The nearest surface point is found by whichever exact method is cheaper: scipy's Euclidean
  distance transform of the box (what the reference does, on the whole box) when the box is
  small next to the surface, or a k-d tree over the surface points when the box is mostly empty,
  as with a false positive far from the hemorrhage. With the tree, each distance is evaluated
  from the integer voxel offset with the same floating-point operations as scipy's transform, so
  a distance of exactly one pixel meets a tolerance of the same size (INSTANCE's 0.42 mm) exactly
  as it does there; the two methods can differ only by rounding where two nearest points are
  equally far.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

from ichseg.metrics._surfel_normals import NORMALS_IN_EIGHTHS

Spacing = tuple[float, float, float]

#: Above this many box voxels per surface point a k-d tree beats a distance transform of the box
#: (measured on one core: ~0.1 µs per box voxel against ~1.7 µs per point).
TREE_ABOVE_VOXELS_PER_POINT = 16.0


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surface element of one mask to the other surface, with areas (mm²).

    Each direction is sorted by distance, then area, as the reference sorts it; an empty mask
    has no elements, and the elements of the other mask are then infinitely far.
    """

    ref_to_pred: np.ndarray
    ref_areas: np.ndarray
    pred_to_ref: np.ndarray
    pred_areas: np.ndarray

    @property
    def both_empty(self) -> bool:
        return self.ref_areas.size == 0 and self.pred_areas.size == 0


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every foreground voxel of a 3D boolean mask; None when empty."""
    planes = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if planes.size == 0:
        return None
    footprint = np.any(mask[planes[0]:planes[-1] + 1], axis=0)
    rows = np.flatnonzero(footprint.any(axis=1))
    columns = np.flatnonzero(footprint.any(axis=0))
    return (slice(planes[0], planes[-1] + 1), slice(rows[0], rows[-1] + 1),
            slice(columns[0], columns[-1] + 1))


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Spacing) -> SurfaceDistances:
    """Surface elements of two boolean masks of one shape, with distances to the other surface."""
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    box = bounding_box(pred | ref)
    if box is None:
        empty = np.empty(0)
        return SurfaceDistances(empty, empty, empty, empty)
    pred_points, pred_areas = _surface_elements(pred[box], spacing)
    ref_points, ref_areas = _surface_elements(ref[box], spacing)
    grid = tuple(side.stop - side.start + 1 for side in box)  # corner points of the box
    ref_to_pred = _nearest_distances(ref_points, pred_points, grid, spacing)
    pred_to_ref = _nearest_distances(pred_points, ref_points, grid, spacing)
    return SurfaceDistances(*_sorted(ref_to_pred, ref_areas), *_sorted(pred_to_ref, pred_areas))


def hausdorff_distance(distances: SurfaceDistances, percent: float = 100.0) -> float:
    """Symmetric (robust) Hausdorff distance in mm.

    The area-weighted ``percent`` percentile of each direction, then the larger of the two: 100
    gives the maximum surface distance (INSTANCE's HD), 95 the HD95 of the reference
    implementation. Percentiles take the first element whose cumulative area share reaches
    ``percent``, without interpolation. One empty mask gives inf; two give 0.
    """
    if distances.both_empty:
        return 0.0
    return max(_directed_percentile(distances.ref_to_pred, distances.ref_areas, percent),
               _directed_percentile(distances.pred_to_ref, distances.pred_areas, percent))


def surface_dice(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """Normalised surface Dice: the share of both surfaces' area within ``tolerance_mm`` of the
    other.

    Distances equal to the tolerance count as within it. One empty mask gives 0; two give 1.
    """
    if distances.both_empty:
        return 1.0
    within = (np.sum(distances.ref_areas[distances.ref_to_pred <= tolerance_mm])
              + np.sum(distances.pred_areas[distances.pred_to_ref <= tolerance_mm]))
    return float(within / (np.sum(distances.ref_areas) + np.sum(distances.pred_areas)))


def _surface_elements(mask: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, np.ndarray]:
    """Corner-grid coordinates and areas (mm²) of a mask's surface elements.

    The neighbourhood code of a corner packs its eight adjacent voxels into one byte (bit 7 for
    the voxel before it on every axis, bit 0 for the one after it on every axis), built axis by
    axis from shifted views of the mask padded with one background voxel on each side.
    """
    padded = np.pad(mask, 1).view(np.uint8)
    pairs = (padded[:, :, :-1] << 1) | padded[:, :, 1:]
    quads = (pairs[:, :-1] << 2) | pairs[:, 1:]
    codes = (quads[:-1] << 4) | quads[1:]
    on_surface = (codes != 0) & (codes != 255)
    return np.argwhere(on_surface), _area_table(spacing)[codes[on_surface]]


@lru_cache(maxsize=64)
def _area_table(spacing: Spacing) -> np.ndarray:
    """Surface area (mm²) inside the cube of each neighbourhood code at this voxel spacing.

    An area vector scales with the product of the spacings of the two axes it does not point
    along. The operations and their order follow the reference so the areas are bit-identical.
    """
    s0, s1, s2 = spacing
    table = np.zeros(256)
    for code, normals in enumerate(NORMALS_IN_EIGHTHS):
        area = 0.0
        for n0, n1, n2 in normals:
            vector = np.array([n0 / 8 * s1 * s2, n1 / 8 * s0 * s2, n2 / 8 * s0 * s1])
            area += float(np.linalg.norm(vector))
        table[code] = area
    return table


def _nearest_distances(points: np.ndarray, targets: np.ndarray, grid: tuple[int, ...],
                       spacing: Spacing) -> np.ndarray:
    """Distance (mm) from each point to the nearest target point; inf when there is no target."""
    if targets.size == 0:
        return np.full(len(points), np.inf)
    if points.size == 0:
        return np.empty(0)
    if np.prod(grid) > TREE_ABOVE_VOXELS_PER_POINT * len(points):
        return _distances_by_tree(points, targets, spacing)
    background = np.ones(grid, dtype=bool)
    background[tuple(targets.T)] = False
    return distance_transform_edt(background, sampling=spacing)[tuple(points.T)]


def _distances_by_tree(points: np.ndarray, targets: np.ndarray, spacing: Spacing) -> np.ndarray:
    """Nearest-target distances from a k-d tree, rounded as scipy's distance transform rounds."""
    scale = np.asarray(spacing, dtype=np.float64)
    tree = cKDTree(targets * scale, leafsize=32, balanced_tree=False)
    _, nearest = tree.query(points * scale, k=1)
    offsets = (points - targets[nearest]) * scale
    squared = offsets * offsets
    return np.sqrt(squared[:, 0] + squared[:, 1] + squared[:, 2])


def _sorted(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def _directed_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return float("inf")
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, distances.size - 1)])
