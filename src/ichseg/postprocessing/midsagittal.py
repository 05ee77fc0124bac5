"""The head's plane of symmetry, from its bone.

A head is nearly mirror-symmetric about its midsagittal plane, and a scan holds it turned by some
degrees (yaw and roll) and shifted. The plane is the one in which the bone's surface, mirrored,
lies closest to itself: the mean distance (capped at :data:`CAP_MM`, so that what a defect or
the edge of the field of view leaves without a mirror image weighs little) from the mirrored
surface points to the surface, minimised from the scan's left-right plane through a given point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

#: Mirrored points farther than this (mm) from the surface count as this far.
CAP_MM = 10.0
#: Surface points the fit uses at most (spread evenly over the surface).
MAX_POINTS = 1500
#: The grid (mm in-plane, at least) on which the surface is compared with its mirror image.
GRID_MM = 2.0
#: Fewer surface points than this: no plane.
MIN_POINTS = 200
#: The plane's turn from the scan's left-right plane (degrees) and shift (mm) searched.
MAX_TURN_DEGREES = 30.0


@dataclass(frozen=True)
class MirrorPlane:
    """The plane of points ``p`` (z, y, x mm) with ``p @ normal == offset``."""

    normal: np.ndarray
    offset: float

    def reflect(self, points: np.ndarray) -> np.ndarray:
        """``points`` (..., 3) mirrored in the plane."""
        distance = points @ self.normal - self.offset
        return points - 2.0 * distance[..., None] * self.normal

    def reflect_direction(self, directions: np.ndarray) -> np.ndarray:
        """``directions`` (..., 3) mirrored in the plane."""
        return directions - 2.0 * (directions @ self.normal)[..., None] * self.normal

    def upright(self, height_mm: float) -> MirrorPlane:
        """The plane turned about its line at ``height_mm`` (along the first axis) until it is
        parallel to that axis: its mirror images stay in their slice."""
        across = np.array([0.0, self.normal[1], self.normal[2]])
        length = float(np.linalg.norm(across))
        return MirrorPlane(across / length, (self.offset - self.normal[0] * height_mm) / length)


def midsagittal_plane(surface: np.ndarray, spacing: tuple[float, float, float],
                      through: np.ndarray) -> MirrorPlane | None:
    """The plane about which the ``surface`` voxels of a skull (on a grid of ``spacing``) are
    most nearly symmetric, starting from the left-right plane ``through`` a point (mm), or None
    when there are too few of them."""
    original = np.asarray(spacing)
    surface, spacing = _coarse(surface, spacing)
    points = np.argwhere(surface)
    if len(points) < MIN_POINTS:
        return None
    scale = np.asarray(spacing)
    points = points[:: max(1, len(points) // MAX_POINTS)] * scale + (scale - original) / 2
    distance = ndimage.distance_transform_edt(~surface, sampling=spacing)

    def mismatch(parameters: np.ndarray) -> float:
        mirrored = (_plane(parameters, through).reflect(points) - (scale - original) / 2) / scale
        found = ndimage.map_coordinates(distance, mirrored.T, order=1, mode="constant",
                                        cval=CAP_MM)
        return float(np.mean(np.minimum(found, CAP_MM)))

    limit = np.radians(MAX_TURN_DEGREES)
    bounds = [(-limit, limit), (-limit, limit), (-2 * CAP_MM, 2 * CAP_MM)]
    best = optimize.minimize(mismatch, np.zeros(3), method="Powell", bounds=bounds,
                             options={"xtol": 1e-2, "ftol": 1e-3})
    return _plane(best.x, through)


def _coarse(surface: np.ndarray, spacing: tuple[float, float, float]
            ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``surface`` pooled in-plane into blocks of about :data:`GRID_MM` (a block with any of it
    is surface), and the blocks' spacing."""
    factor = max(1, int(GRID_MM / min(spacing[1:])))
    if factor == 1:
        return surface, spacing
    nz, ny, nx = surface.shape
    padded = np.pad(surface, ((0, 0), (0, -ny % factor), (0, -nx % factor)))
    blocks = np.asarray(padded.reshape(nz, padded.shape[1] // factor, factor, padded.shape[2] // factor,
                                       factor).any(axis=(2, 4)))
    return blocks, (spacing[0], spacing[1] * factor, spacing[2] * factor)


def _plane(parameters: np.ndarray, through: np.ndarray) -> MirrorPlane:
    """The left-right plane through ``through`` turned by ``yaw`` about the z axis and ``roll``
    about the y axis, then shifted by ``shift`` mm along its normal."""
    yaw, roll, shift = parameters
    normal = np.array([np.sin(roll), np.cos(roll) * np.sin(yaw), np.cos(roll) * np.cos(yaw)])
    return MirrorPlane(normal, float(np.asarray(through) @ normal + shift))
