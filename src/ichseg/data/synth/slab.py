"""The rendering grid of a case and the slab of render samples behind one output slice.

Each output slice is drawn on ``sub_slices`` sub-slices and, for the small sizes, on sub-pixels;
:class:`Slab` holds their coordinates in world, local and nominal head space and the geometry
helpers that paint ellipsoids on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ichseg.data.synth.anatomy import Ellipsoid, Head
from ichseg.data.synth.vocabulary import Tissue


@dataclass(frozen=True)
class Grid:
    """The output grid and the finer (or, in-plane for ``full``, coarser) grid it is drawn on."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    first: tuple[float, float, float]   # world (z, y, x) of voxel (0, 0, 0)
    sub_slices: int
    render_factor: float

    @property
    def block(self) -> int:
        """Render pixels averaged into one output pixel along x and y (1 when interpolating)."""
        return round(self.render_factor) if self.render_factor >= 1 else 1

    def render_axis(self, axis: int) -> np.ndarray:
        """World coordinates of the render samples along ``axis`` (0 = z)."""
        factor = self.sub_slices if axis == 0 else self.render_factor
        n = round(self.shape[axis] * factor)
        k = np.arange(n, dtype=np.float64)
        return (self.first[axis] + self.spacing[axis] * ((k + 0.5) / factor - 0.5)).astype(np.float32)

    def z_shifts(self) -> np.ndarray:
        """Per render pixel, a shift (mm) of its sub-slices in an ordered 2 x 2 pattern.

        The four pixels of each tile sample four different sets of heights, so a thin oblique
        structure is sampled four times more finely in z and blurs instead of breaking into
        stripes, one per sub-slice.
        """
        tile = (np.array([[0, 2], [3, 1]]) + 0.5) / 4 - 0.5
        ny, nx = len(self.render_axis(1)), len(self.render_axis(2))
        sub_slice = self.spacing[0] / self.sub_slices
        return (np.tile(tile, (ny // 2 + 1, nx // 2 + 1))[:ny, :nx] * sub_slice).astype(np.float32)


class Slab:
    """The render samples of one output slice: their coordinates, tissue codes and layers.

    :func:`ichseg.data.synth.tissues.anatomy_slab` draws the anatomy and sets the layers below;
    the lesions of :mod:`ichseg.data.synth.lesions` read them and paint blood over the codes.
    """

    depth_skin: np.ndarray    # mm below the skin
    scalp_mm: np.ndarray      # scalp thickness along each sample's direction
    bone_depth: np.ndarray    # mm below the outer table
    skull_mm: np.ndarray      # vault thickness along each sample's direction
    radial_depth: np.ndarray  # mm below the vault's inner table
    depth_inner: np.ndarray   # mm below the nearest bone (vault or cranial floor)
    above_floor: np.ndarray   # mm above the cranial floor
    cavity: np.ndarray        # inside the cranial cavity
    inside_inner: np.ndarray  # inside the vault's inner table, above or below the floor
    vault: np.ndarray         # skull vault
    below_base: np.ndarray    # within the inner table but below the skull base
    scalp: np.ndarray         # between skin and outer table
    deep_soft: np.ndarray     # soft tissue of face and neck
    plug: np.ndarray | None   # scalp filling a burr hole
    cleft: np.ndarray         # mm to the nearest CSF cleft (surface, sulci, fissures), < 0 inside
    hu: np.ndarray            # noise-free HU of every sample

    def __init__(self, head: Head, z: np.ndarray, y: np.ndarray, x: np.ndarray,
                 z_shift: np.ndarray):
        self.head = head
        self.world = (z, y, x)
        self.z_shift = float(np.abs(z_shift).max())
        rot = head.rotation.astype(np.float32)
        dx = (x - np.float32(head.center[0]))[None, None, :]
        dy = (y - np.float32(head.center[1]))[None, :, None]
        dz = (z - np.float32(head.center[2]))[:, None, None] + z_shift[None]
        self.u, self.v, self.w = ((rot[i, 0] * dx + rot[i, 1] * dy) + rot[i, 2] * dz for i in range(3))
        su, sv, sw = (np.float32(s) for s in head.scale)
        self.un, self.vn, self.wn = self.u / su, self.v / sv, self.w / sw
        self.r = np.sqrt(self.u * self.u + self.v * self.v + self.w * self.w) + np.float32(1e-3)
        self.nu, self.nv, self.nw = self.u / self.r, self.v / self.r, self.w / self.r
        shape = self.u.shape
        self.codes = np.zeros(shape, np.uint8)
        self.ventricle = np.zeros(shape, bool)
        self.bleed = np.zeros(shape, np.uint8)   # 1 + index into HEMORRHAGE_TYPES, 0 for none

    # ---- geometry helpers -------------------------------------------------------------------

    def box(self, center: np.ndarray, half: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box of the samples within ``half`` of ``center`` (both world x, y, z)."""
        bounds = []
        for axis, coords in enumerate(self.world):
            c = center[2 - axis]
            reach = half[2 - axis] + (self.z_shift if axis == 0 else 0.0)
            lo = np.searchsorted(coords, c - reach, "left")
            hi = np.searchsorted(coords, c + reach, "right")
            if hi <= lo:
                return None
            bounds.append(slice(int(lo), int(hi)))
        return tuple(bounds)  # type: ignore[return-value]

    def ellipsoid(self, shape: Ellipsoid) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """The box around a nominal ellipsoid and the mask of samples inside it."""
        center, half = self.head.bounds(shape)
        box = self.box(center, half + 1.0)
        if box is None:
            return None
        du = self.un[box] - np.float32(shape.center[0])
        dv = self.vn[box] - np.float32(shape.center[1])
        dw = self.wn[box] - np.float32(shape.center[2])
        inside = np.zeros(du.shape, np.float32)
        frame = shape.frame()
        for axis, length in enumerate(shape.axes):
            f = frame[:, axis].astype(np.float32)
            inside += ((f[0] * du + f[1] * dv + f[2] * dw) / np.float32(length)) ** 2
        return box, inside < 1.0

    def paint(self, shape: Ellipsoid, code: Tissue, within: np.ndarray,
              ventricle: bool | None = None) -> None:
        """Set the tissue inside ``shape`` where ``within`` holds."""
        found = self.ellipsoid(shape)
        if found is None:
            return
        box, inside = found
        inside &= within[box]
        self.codes[box][inside] = code
        if ventricle is not None:
            self.ventricle[box][inside] = ventricle
