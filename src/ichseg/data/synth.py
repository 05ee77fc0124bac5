"""Synthetic non-contrast head CTs with hemorrhage labels, for demos, tests and benchmarks.

A phantom is a head in patient coordinates built from smooth shapes: scalp, a skull of dense
tables around diploe with a skull base, subarachnoid CSF, a folded cortical ribbon over white
matter, the interhemispheric and Sylvian fissures, deep grey nuclei, ventricles, cisterns and the
posterior fossa, and zero to three of the five hemorrhage types at their usual sites. Each slice
is rendered on sub-slices (and, for the small sizes, sub-pixels) and averaged, so edges blur
across thick slices the way they do on a 5 mm CT; the label marks the voxels at least half filled
with blood. Everything follows from one seed, and case ``i`` of a data set is seeded from
``(seed, i)``, so it is the same whatever the number of cases asked for.

The volume is rendered one output slice at a time on coordinate grids (no loops over voxels), so
a ``tiny`` case takes a fraction of a second and a ``full`` 512 x 512 case a few seconds.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
from scipy import ndimage

from ichseg.atomic import atomic_dir, refuse_existing, write_text
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.io.nifti import save_image, save_mask
from ichseg.progress import make_progress

# --------------------------------------------------------------------------------------------
# Public vocabulary
# --------------------------------------------------------------------------------------------


class Tissue(IntEnum):
    """Tissue codes of :attr:`SyntheticCase.tissues` (the majority tissue of each voxel)."""

    AIR = 0            # outside the head and in the paranasal sinuses
    SCALP = 1          # skin, subcutaneous fat, muscle and the soft tissue below the skull base
    BONE = 2           # skull vault (dense tables around diploe) and skull base
    CSF = 3            # subarachnoid space, sulci, fissures, cisterns, ventricles
    GREY = 4           # cortical ribbon, deep grey nuclei, cerebellum
    WHITE = 5          # white matter and brainstem
    BLOOD = 6          # acute hemorrhage (exactly the labelled voxels)
    EDEMA = 7          # hypodense rim around an intraparenchymal hemorrhage
    CALCIFICATION = 8  # choroid plexus and pineal calcifications


#: The hemorrhage types, in the order they are listed in ``types`` and ``cases.csv``.
HEMORRHAGE_TYPES = ("intraparenchymal", "intraventricular", "subdural", "epidural",
                    "subarachnoid")

#: Usual abbreviations of the hemorrhage types, for captions.
TYPE_ABBREVIATIONS = {"intraparenchymal": "IPH", "intraventricular": "IVH", "subdural": "SDH",
                      "epidural": "EDH", "subarachnoid": "SAH"}


@dataclass(frozen=True)
class SizeSpec:
    """Grid of one size option and how finely it is rendered before averaging.

    The in-plane spacing is ``fov_mm / matrix``. The slice spacing is drawn from ``slice_mm`` or,
    when that is None, chosen so that the slices span ``coverage_mm`` (skull base to vertex).
    ``render_factor`` is the number of render pixels per output pixel along x and y: above 1 the
    render pixels are averaged (partial volume), below 1 the rendered slice is interpolated up.
    Each slice is rendered on ``sub_slices`` sub-slices.
    """

    matrix: int
    slices: tuple[int, int]
    fov_mm: tuple[float, float]
    slice_mm: tuple[float, float] | None
    coverage_mm: tuple[float, float] | None
    render_factor: float
    sub_slices: int = 5


#: ``tiny``: unit tests and seconds-long training; ``small``: demos; ``full``: INSTANCE-like.
#: tiny/small keep a head-sized field of view of 215-240 mm (3.4-3.75 mm and 1.7-1.9 mm pixels)
#: and slices spanning 145-160 mm from the vertex to the skull base (9.1-10.0 mm slices for
#: tiny, 4.5-6.7 mm for small); full uses INSTANCE's 0.40-0.50 mm pixels and 4.3-5.4 mm slices
#: from the vertex down, at most MAX_COVERAGE_MM.
SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(64, (16, 16), (215.0, 240.0), None, (145.0, 160.0), 2.0),
    "small": SizeSpec(128, (24, 32), (215.0, 240.0), None, (145.0, 160.0), 2.0),
    "full": SizeSpec(512, (20, 40), (205.0, 256.0), (4.3, 5.4), None, 0.5),
}

#: A ``full`` stack reaches at most this far below the vertex (to the upper neck).
MAX_COVERAGE_MM = 190.0

#: Share of generated cases without hemorrhage when ``hemorrhage`` is not forced.
NO_HEMORRHAGE_RATE = 0.12


@dataclass(frozen=True)
class SyntheticCase:
    """One phantom: the CT in HU, its hemorrhage label and the tissue map it was drawn from.

    ``label`` (uint8) marks the voxels at least half filled with blood, except the few that bone
    or calcification also reaches (their mean HU no longer looks like blood). ``tissues`` holds
    each voxel's :class:`Tissue`: BLOOD where labelled, otherwise the most frequent other tissue;
    ``pure`` marks the voxels made of one tissue only (no partial volume).
    """

    image: CTImage
    label: np.ndarray
    tissues: np.ndarray
    pure: np.ndarray
    types: tuple[str, ...]
    volume_ml: float

    @property
    def caption(self) -> str:
        """A short description (types and volume) for previews."""
        if not self.types:
            return "no hemorrhage"
        kinds = "+".join(TYPE_ABBREVIATIONS[t] for t in self.types)
        return f"{kinds} {self.volume_ml:.1f} mL"


@dataclass(frozen=True)
class CaseRecord:
    """One written case, as listed in ``cases.csv``."""

    name: str
    image_path: Path
    label_path: Path
    types: tuple[str, ...]
    volume_ml: float
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]


CSV_COLUMNS = ("name", "types", "volume_ml", "spacing_z", "spacing_y", "spacing_x",
               "shape_z", "shape_y", "shape_x")


# --------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------
#
# Local head coordinates (u, v, w) in mm point along the patient's left, posterior and superior
# (the LPS axes of the image before the head's small rotation), with the origin at the middle of
# the head near the foramen of Monro. Brain landmarks are given for a nominal head whose inner
# table has semi-axes NOMINAL_INNER and are scaled to each case's head.

NOMINAL_INNER = (62.5, 80.5, 76.5)
SULCAL_RADIUS = 70.0  # radius at which the sulcal pattern's wavelength is measured


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _cranial_floor(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (nominal w) of the floor of the anterior, middle and posterior cranial fossae.

    The anterior fossa rises forwards over the domed orbital roofs, either side of a lower
    olfactory groove.
    """
    side = np.abs(u)
    orbital_roofs = 8.0 * np.exp(-(((side - 24.0) / 12.0) ** 2))
    anterior = -31.0 + orbital_roofs - 0.2 * np.minimum(v + 30.0, 0.0)
    middle_bowl = -49.0 + 0.008 * ((side - 36.0) ** 2 + (v + 12.0) ** 2)
    posterior_bowl = -70.0 + 0.005 * (u * u + (v - 35.0) ** 2)
    posterior = _sigmoid((v - 8.0) / 6.0)
    middle = _sigmoid((side - 19.0) / 4.0) * _sigmoid((v + 28.0) / 4.0) * _sigmoid((6.0 - v) / 4.0)
    return (anterior + (posterior_bowl - anterior) * posterior
            + (middle_bowl - anterior) * middle * (1.0 - posterior))


def _tentorium(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (nominal w) of the tentorium, sloping down towards the occiput and the sides."""
    return -16.0 - 0.32 * np.maximum(v - 4.0, 0.0) - 0.004 * u * u


@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid in nominal head coordinates, turned by ``yaw`` degrees about the w axis."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    yaw: float = 0.0

    def mirrored(self) -> _Ellipsoid:
        u, v, w = self.center
        return _Ellipsoid((-u, v, w), self.axes, -self.yaw)

    def frame(self) -> np.ndarray:
        """Columns: the ellipsoid's (u, v, w) axis directions in head coordinates."""
        t = math.radians(self.yaw)
        return np.array([[math.cos(t), math.sin(t), 0.0],
                         [-math.sin(t), math.cos(t), 0.0],
                         [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> _Ellipsoid:
        return _Ellipsoid(self.center, tuple(a * factor for a in self.axes), self.yaw)


def _pair(shape: _Ellipsoid) -> tuple[_Ellipsoid, _Ellipsoid]:
    return shape, shape.mirrored()


# Nominal landmarks (mm). Painted in this order; later shapes cover earlier ones.
DEEP_GREY = (*_pair(_Ellipsoid((21.0, -3.0, 1.0), (5.5, 14.0, 9.0), -6.0)),  # lentiform nuclei
             *_pair(_Ellipsoid((9.0, 12.0, 3.0), (7.5, 11.0, 8.0), 10.0)))   # thalami
LATERAL_VENTRICLES = (*_pair(_Ellipsoid((7.5, -6.0, 12.0), (4.5, 26.0, 7.5), 12.0)),   # bodies
                      *_pair(_Ellipsoid((17.0, 26.0, 9.0), (6.5, 15.0, 8.0), -12.0)),  # atria
                      *_pair(_Ellipsoid((27.0, 2.0, -18.0), (3.0, 13.0, 3.5), 10.0)))  # temporal
CAUDATE_HEADS = _pair(_Ellipsoid((12.5, -14.0, 10.0), (4.5, 9.0, 8.0)))
MIDLINE_VENTRICLES = (_Ellipsoid((0.0, 6.0, 0.0), (2.2, 12.0, 9.0)),     # third ventricle
                      _Ellipsoid((0.0, 36.0, -44.0), (5.5, 3.5, 6.0)))   # fourth ventricle
CISTERNS = (_Ellipsoid((0.0, 12.0, -20.0), (13.5, 13.0, 7.0)),    # perimesencephalic
            _Ellipsoid((0.0, 26.0, -14.0), (7.0, 5.0, 5.0)),      # quadrigeminal
            _Ellipsoid((0.0, -8.0, -24.0), (10.0, 7.0, 4.0)))     # suprasellar
BRAINSTEM = (_Ellipsoid((0.0, 12.0, -20.0), (10.5, 10.0, 8.0)),   # midbrain
             _Ellipsoid((0.0, 22.0, -42.0), (12.0, 11.0, 14.0)))  # pons
PETROUS_RIDGES = _pair(_Ellipsoid((32.0, 14.0, -49.0), (5.0, 24.0, 6.0), 55.0))
ORBITS = _pair(_Ellipsoid((28.0, -56.0, -50.0), (15.0, 20.0, 14.0)))
GLOBES = _pair(_Ellipsoid((30.0, -64.0, -50.0), (11.0, 11.0, 11.0)))
SINUSES = (_Ellipsoid((0.0, -46.0, -52.0), (9.0, 24.0, 14.0)),     # ethmoid
           *_pair(_Ellipsoid((24.0, -50.0, -80.0), (12.0, 15.0, 14.0))),  # maxillary
           _Ellipsoid((0.0, -16.0, -60.0), (12.0, 10.0, 9.0)))     # sphenoid
FORAMEN_MAGNUM = _Ellipsoid((0.0, 30.0, -95.0), (13.0, 14.0, 28.0))
MEDULLA = _Ellipsoid((0.0, 27.0, -85.0), (8.0, 8.0, 32.0))
CHOROID_CALCIFICATIONS = _pair(_Ellipsoid((18.0, 27.0, 10.0), (2.2, 2.6, 2.2)))
PINEAL_CALCIFICATION = _Ellipsoid((0.0, 22.0, 4.0), (2.0, 2.0, 2.0))
PUTAMEN = (21.0, -3.0, 1.0)
THALAMUS = (9.0, 12.0, 3.0)
NECK_LEVEL = -85.0  # nominal height below which the skull gives way to the soft tissue of the neck


@dataclass(frozen=True)
class _Head:
    """Every anatomical parameter of one case, drawn once from its random generator."""

    center: np.ndarray        # world (x, y, z) of the local origin, mm
    rotation: np.ndarray      # local = rotation @ (world - center)
    skin: tuple[float, float, float, float]  # semi-axes: lateral, AP, upwards, downwards
    ripple: tuple[float, float, float]        # low-order departures from an ellipsoid
    scalp_mm: float
    temporalis_mm: float
    skull_mm: float
    base_mm: float
    subarachnoid_mm: float
    cortex_mm: float
    sulcus_half_width: float
    sulcus_depth: float
    waves: np.ndarray         # (K, 3) wave vectors of the sulcal pattern on the unit sphere
    phases: np.ndarray        # (K,)
    warp: np.ndarray          # (4, 3) wave vectors bending the sulci and varying their depth, 1/mm
    warp_phases: np.ndarray   # (4,)
    scale: tuple[float, float, float]  # case inner table / nominal inner table
    ventricle_scale: float
    calcified_choroid: bool
    calcified_pineal: bool
    hu: dict[str, float]

    @staticmethod
    def draw(rng: np.random.Generator) -> _Head:
        yaw, roll, pitch = (math.radians(rng.uniform(-6, 6)), math.radians(rng.uniform(-4, 4)),
                            math.radians(rng.uniform(-12, 8)))
        skin = (rng.uniform(70, 78), rng.uniform(86, 95), rng.uniform(84, 92), rng.uniform(110, 125))
        scalp, skull = rng.uniform(4.0, 6.5), rng.uniform(5.5, 7.5)
        inner = (skin[0] - scalp - skull, skin[1] - scalp - skull, skin[2] - scalp - skull)
        n_waves = 10
        wavelength = rng.uniform(24.0, 30.0) / SULCAL_RADIUS
        return _Head(
            center=np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), 0.0]),
            rotation=_rotation(yaw, roll, pitch),
            skin=skin,
            ripple=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.0, 0.04)),
            scalp_mm=scalp,
            temporalis_mm=rng.uniform(3.0, 7.0),
            skull_mm=skull,
            base_mm=rng.uniform(2.5, 4.0),
            subarachnoid_mm=rng.uniform(0.8, 2.2),
            cortex_mm=rng.uniform(3.0, 3.8),
            sulcus_half_width=rng.uniform(0.7, 1.4),
            sulcus_depth=rng.uniform(8.0, 13.0),
            waves=_random_directions(rng, n_waves) * (2 * math.pi / wavelength),
            phases=rng.uniform(0, 2 * math.pi, n_waves),
            warp=_random_directions(rng, 4) * (2 * math.pi / rng.uniform(50.0, 70.0)),
            warp_phases=rng.uniform(0, 2 * math.pi, 4),
            scale=tuple(i / n for i, n in zip(inner, NOMINAL_INNER)),
            ventricle_scale=rng.uniform(0.85, 1.35),
            calcified_choroid=bool(rng.random() < 0.6),
            calcified_pineal=bool(rng.random() < 0.5),
            hu={
                "skin": rng.uniform(25, 40), "fat": rng.uniform(-95, -75),
                "muscle": rng.uniform(30, 40), "vitreous": rng.uniform(5, 15),
                "csf": rng.uniform(3, 12), "grey": rng.uniform(39, 44),
                "white": rng.uniform(23, 28), "edema": rng.uniform(12, 19),
                "calcification": rng.uniform(350, 700), "table": rng.uniform(1500, 1850),
                "diploe": rng.uniform(500, 900), "base": rng.uniform(900, 1300),
                "noise": rng.uniform(3.0, 6.0),
            },
        )

    def skin_radius(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """Distance from the origin to the skin along the unit directions (nu, nv, nw)."""
        a, b, up, down = self.skin
        inv_c2 = np.where(nw > 0, np.float32(1 / up**2), np.float32(1 / down**2))
        radius = 1.0 / np.sqrt(nu * nu / a**2 + nv * nv / b**2 + nw * nw * inv_c2)
        r1, r2, r3 = self.ripple
        anterior = np.maximum(-nv, 0.0)
        return radius * (1.0 + r1 * nu * nv + r2 * nv * nw - r3 * anterior * anterior * anterior)

    def scalp_thickness(self, nu: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """Scalp, thicker over the temporalis muscles low on the sides."""
        nu2 = nu * nu
        return self.scalp_mm + np.where(nw < 0.4, np.float32(self.temporalis_mm), np.float32(0)) * nu2 * nu2

    def skull_thickness(self, nu: np.ndarray, nv: np.ndarray) -> np.ndarray:
        """Vault thickness: thicker frontally and occipitally, thinner over the temporal squama."""
        return self.skull_mm * (1.0 + 0.3 * nv * nv - 0.35 * nu * nu)

    def inner_radius(self, direction: np.ndarray) -> float:
        """Distance from the origin to the inner table along one unit direction."""
        nu, nv, nw = (np.float32(c) for c in direction)
        return float(self.skin_radius(nu, nv, nw) - self.scalp_thickness(nu, nw)
                     - self.skull_thickness(nu, nv))

    def to_local(self, nominal: tuple[float, float, float]) -> np.ndarray:
        """Nominal landmark coordinates to this head's local coordinates."""
        return np.asarray(nominal) * np.asarray(self.scale)

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """Local coordinates to world (x, y, z)."""
        return self.rotation.T @ local + self.center

    def bounds(self, shape: _Ellipsoid) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y, z) centre and half size of the bounding box of a nominal ellipsoid."""
        scale = np.diag(self.scale)
        to_world = self.rotation.T @ scale @ shape.frame() @ np.diag(shape.axes)
        return self.to_world(scale @ np.asarray(shape.center)), np.sqrt((to_world**2).sum(axis=1))

    def world_half_extent(self) -> np.ndarray:
        """Half size of the head's bounding box along world (x, y, z), generously rounded up."""
        a, b, up, down = self.skin
        axes = np.diag((a, b, max(up, down))) * (1.0 + sum(abs(r) for r in self.ripple))
        return np.sqrt(((self.rotation.T @ axes) ** 2).sum(axis=1)) + 2.0


def _random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    directions = rng.normal(size=(n, 3))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _rotation(yaw: float, roll: float, pitch: float) -> np.ndarray:
    cz, sz, cy, sy, cx, sx = (math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll),
                              math.cos(pitch), math.sin(pitch))
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return about_z @ about_y @ about_x


# --------------------------------------------------------------------------------------------
# Rendering grid and slabs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
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


class _Slab:
    """The render samples of one output slice with the anatomy drawn on them."""

    def __init__(self, head: _Head, z: np.ndarray, y: np.ndarray, x: np.ndarray,
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
        self._draw_head()
        self._draw_brain()
        self._draw_deep_structures()
        self.hu = self._intensities()

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

    def ellipsoid(self, shape: _Ellipsoid) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
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

    def paint(self, shape: _Ellipsoid, code: Tissue, within: np.ndarray,
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

    # ---- anatomy ----------------------------------------------------------------------------

    def _draw_head(self) -> None:
        """Scalp, vault, cranial cavity and skull base; face and neck below it."""
        head, nu, nv, nw = self.head, self.nu, self.nv, self.nw
        self.depth_skin = head.skin_radius(nu, nv, nw) - self.r
        self.scalp_mm = head.scalp_thickness(nu, nw)
        self.bone_depth = self.depth_skin - self.scalp_mm
        self.skull_mm = head.skull_thickness(nu, nv)
        depth_inner = self.bone_depth - self.skull_mm
        above_floor = self.w - _cranial_floor(self.un, self.vn) * np.float32(head.scale[2])
        inside_inner = depth_inner > 0
        self.radial_depth = depth_inner                            # below the vault's inner table
        self.depth_inner = np.minimum(depth_inner, above_floor)   # below the nearest bone
        self.cavity = inside_inner & (above_floor > 0)
        skull = (self.bone_depth > 0) & ~inside_inner
        neck = self.wn < NECK_LEVEL
        self.vault = skull & ~neck
        self.below_base = inside_inner & (above_floor <= -head.base_mm)
        self.scalp = (self.depth_skin > 0) & (self.bone_depth <= 0)
        self.deep_soft = self.below_base | (skull & neck)
        base = inside_inner & (above_floor <= 0) & (above_floor > -head.base_mm)
        self.codes[self.depth_skin > 0] = Tissue.SCALP
        self.codes[self.vault | base] = Tissue.BONE
        for shape in SINUSES:
            self.paint(shape, Tissue.AIR, self.below_base)
        self.paint(FORAMEN_MAGNUM, Tissue.CSF, inside_inner & ~self.cavity)
        self.inside_inner = inside_inner

    def _draw_brain(self) -> None:
        """Cortical ribbon over white matter, folded by sulci and fissures; CSF in the clefts."""
        head, un, vn, wn = self.head, self.un, self.vn, self.wn
        surface = self.depth_inner - np.float32(head.subarachnoid_mm)  # depth below the brain
        infratentorial = (wn < _tentorium(un, vn)) & (vn > 4.0)

        sulci = np.full(un.shape, np.inf, np.float32)
        radial = self.radial_depth - np.float32(head.subarachnoid_mm)
        band = self.cavity & (radial < 1.4 * head.sulcus_depth + head.cortex_mm + 2.0) & ~infratentorial
        sulci[band] = self._sulci(band, radial[band])

        central = ((vn - 2.0) / 36.0) ** 2 + ((wn - 4.0) / 22.0) ** 2 < 1.0
        fissure = np.abs(un) - np.float32(0.4 + 0.5 * head.sulcus_half_width)
        fissure[(central | infratentorial) & ~(infratentorial & (vn > 58.0))] = np.inf

        side = np.abs(un)
        insular = np.sqrt((side - 34.0) ** 2 + _outside(vn, -28.0, 8.0) + _outside(wn, -14.0, 14.0)) - 1.0
        stem_offset = (vn + 24.0 + 0.36 * (side - 34.0) - 0.8 * (wn + 2.0)) * np.float32(1 / math.sqrt(1.77))
        stem = np.sqrt(stem_offset**2 + np.maximum(34.0 - side, 0.0) ** 2 + _outside(wn, -16.0, 10.0)) - 1.3

        tentorium = np.sqrt((wn - _tentorium(un, vn)) ** 2 + np.maximum(4.0 - vn, 0.0) ** 2) - 0.8

        self.cleft = np.minimum(np.minimum(surface, sulci), np.minimum(fissure, tentorium))
        self.cleft = np.minimum(self.cleft, np.minimum(insular, stem))
        brain = np.where(self.cleft < 0, np.uint8(Tissue.CSF),
                         np.where((self.cleft < head.cortex_mm) | infratentorial,
                                  np.uint8(Tissue.GREY), np.uint8(Tissue.WHITE)))
        np.copyto(self.codes, brain, where=self.cavity)

    def _sulci(self, band: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Distance to the nearest sulcus (negative inside) for the samples in ``band``.

        Sulci are the zero set of a random wave field on the sphere, so they run inwards from the
        surface as a meandering labyrinth; a slow field bends them and varies their depth.
        """
        head = self.head
        p = [c[band] for c in (self.u, self.v, self.w)]
        n = [c[band] for c in (self.nu, self.nv, self.nw)]
        slow = [np.sin(sum(np.float32(k[i]) * p[i] for i in range(3)) + np.float32(phase))
                for k, phase in zip(head.warp, head.warp_phases)]
        bent = [n[i] + np.float32(0.05) * slow[i] for i in range(3)]
        pattern = np.zeros(depth.shape, np.float32)
        for k, phase in zip(head.waves, head.phases):
            pattern += np.cos(sum(np.float32(k[i]) * bent[i] for i in range(3)) + np.float32(phase))
        gradient = float(np.linalg.norm(head.waves[0])) * math.sqrt(len(head.phases) / 2)
        across = np.abs(pattern) * self.r[band] / np.float32(gradient)
        deepest = np.float32(head.sulcus_depth) * (1.0 + np.float32(0.35) * slow[3])
        below = np.maximum(depth - deepest, 0.0)
        return np.sqrt(across * across + below * below) - np.float32(head.sulcus_half_width)

    def _draw_deep_structures(self) -> None:
        head, cavity = self.head, self.cavity
        for shape in DEEP_GREY:
            self.paint(shape, Tissue.GREY, cavity)
        for shape in LATERAL_VENTRICLES:
            self.paint(shape.scaled(head.ventricle_scale), Tissue.CSF, cavity, ventricle=True)
        for shape in CAUDATE_HEADS:
            self.paint(shape, Tissue.GREY, cavity, ventricle=False)
        for shape in CISTERNS:
            self.paint(shape, Tissue.CSF, cavity)
        for shape in BRAINSTEM:
            self.paint(shape, Tissue.WHITE, cavity)
        for shape in MIDLINE_VENTRICLES:
            self.paint(shape.scaled(head.ventricle_scale), Tissue.CSF, cavity, ventricle=True)
        if head.calcified_choroid:
            for shape in CHOROID_CALCIFICATIONS:
                self.paint(shape, Tissue.CALCIFICATION, cavity)
        if head.calcified_pineal:
            self.paint(PINEAL_CALCIFICATION, Tissue.CALCIFICATION, cavity)
        self.paint(MEDULLA, Tissue.WHITE, self.inside_inner)
        inside_head = self.depth_skin > 0
        for shape in PETROUS_RIDGES:
            self.paint(shape, Tissue.BONE, inside_head)

    def _intensities(self) -> np.ndarray:
        """Noise-free HU of every sample: a value per tissue plus skull and soft-tissue layering."""
        hu = self.head.hu
        table = np.zeros(len(Tissue), np.float32)
        table[Tissue.AIR] = -1000.0
        table[Tissue.SCALP] = hu["fat"]
        table[Tissue.BONE] = hu["base"]
        for tissue, key in ((Tissue.CSF, "csf"), (Tissue.GREY, "grey"), (Tissue.WHITE, "white"),
                            (Tissue.EDEMA, "edema"), (Tissue.CALCIFICATION, "calcification")):
            table[tissue] = hu[key]
        values = table[self.codes]

        vault = self.vault & (self.codes == Tissue.BONE)
        fraction = self.bone_depth[vault] / self.skull_mm[vault]
        dense = (fraction < 0.3) | (fraction > 0.75)
        values[vault] = np.where(dense, np.float32(hu["table"]), np.float32(hu["diploe"]))

        scalp = self.scalp & (self.codes == Tissue.SCALP)
        depth = self.depth_skin[scalp]
        values[scalp] = np.where(depth < 1.8, np.float32(hu["skin"]),
                                 np.where(depth > self.scalp_mm[scalp] - 1.5, np.float32(hu["muscle"]),
                                          np.float32(hu["fat"])))
        soft = self.deep_soft & (self.codes == Tissue.SCALP)
        values[soft] = hu["muscle"]
        for shapes, key in ((ORBITS, "fat"), (GLOBES, "vitreous")):
            for shape in shapes:
                found = self.ellipsoid(shape)
                if found is not None:
                    box, inside = found
                    values[box][inside & soft[box]] = hu[key]
        return values


def _outside(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Squared distance of ``x`` outside the interval [low, high]."""
    below = np.maximum(low - x, 0.0)
    above = np.maximum(x - high, 0.0)
    return below * below + above * above


# --------------------------------------------------------------------------------------------
# Hemorrhages
# --------------------------------------------------------------------------------------------


#: What a parenchymal clot fills: brain and the sulcal CSF it effaces (never the ventricles).
PARENCHYMA = (Tissue.GREY, Tissue.WHITE, Tissue.EDEMA, Tissue.CSF)


@dataclass
class _Lesion:
    """A hemorrhage: where it is and how it marks the samples of a slab."""

    kind: str
    hu: float
    draw_on: Callable[[_Slab], np.ndarray | None] = field(repr=False)
    edema: Callable[[_Slab], np.ndarray | None] | None = field(default=None, repr=False)

    def paint(self, slab: _Slab) -> None:
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


def _unit(azimuth_deg: float, elevation_deg: float, side: int) -> np.ndarray:
    """Direction at ``azimuth`` from straight ahead towards ``side`` (+1 left, -1 right)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([side * math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e), math.sin(e)])


def _full_mask(slab: _Slab, box: tuple[slice, slice, slice], inside: np.ndarray) -> np.ndarray:
    mask = np.zeros(slab.codes.shape, bool)
    mask[box] = inside
    return mask


def _intraparenchymal(rng: np.random.Generator, head: _Head) -> _Lesion:
    """Irregular lobulated clot in the putamen, thalamus or lobar white matter, often with edema."""
    side = int(rng.choice((-1, 1)))
    site = rng.choice(("putamen", "thalamus", "lobar"), p=(0.4, 0.15, 0.45))
    volume_ml = math.exp(rng.uniform(math.log(3.0), math.log(45.0 if site != "thalamus" else 15.0)))
    radius = (3 * volume_ml * 1000 / (4 * math.pi)) ** (1 / 3)
    if site == "lobar":
        direction = _unit(rng.uniform(10, 170), rng.uniform(5, 50), side)
        depth = head.subarachnoid_mm + radius + rng.uniform(6, 14)
        center = direction * (head.inner_radius(direction) - depth)
        center[0] = side * max(abs(center[0]), radius + 4.0)  # clear of the falx
    else:
        nominal = PUTAMEN if site == "putamen" else THALAMUS
        center = head.to_local((side * nominal[0], nominal[1], nominal[2])) + rng.uniform(-3, 3, 3)
    stretch = np.exp(rng.uniform(-0.25, 0.25, 3))
    stretch /= stretch.prod() ** (1 / 3)
    orientation = _rotation(*rng.uniform(-math.pi, math.pi, 3))
    lobes = rng.normal(size=(3, 3))
    lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
    lobe_freq, lobe_phase = rng.uniform(2.5, 4.5, 3), rng.uniform(0, 2 * math.pi, 3)
    lobe_amp = rng.uniform(0.06, 0.14, 3)
    rim_mm = rng.uniform(2.0, 6.0) if rng.random() < 0.65 else 0.0
    reach = radius * stretch.max() * (1 + lobe_amp.sum()) + rim_mm + 2.0

    def extent(slab: _Slab, margin_mm: float) -> np.ndarray | None:
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

    return _Lesion("intraparenchymal", rng.uniform(62, 85), lambda s: extent(s, 0.0),
                   (lambda s: extent(s, rim_mm)) if rim_mm else None)


def _intraventricular(rng: np.random.Generator, head: _Head) -> _Lesion:
    """Blood layering in the dependent (posterior, the patient lying supine) ventricles."""
    atria = [shape.scaled(head.ventricle_scale) for shape in LATERAL_VENTRICLES[2:4]]
    lowest = max(center[1] + half[1] for center, half in map(head.bounds, atria))  # world y
    level = lowest - rng.uniform(5.0, 14.0)
    cast_third = rng.random() < 0.4

    def draw(slab: _Slab) -> np.ndarray:
        dependent = slab.world[1][None, :, None] > np.float32(level)
        blood = slab.ventricle & dependent
        if cast_third:
            found = slab.ellipsoid(MIDLINE_VENTRICLES[0].scaled(head.ventricle_scale))
            if found is not None:
                box, inside = found
                blood[box] |= inside & slab.ventricle[box]
        return blood

    return _Lesion("intraventricular", rng.uniform(55, 78), draw)


def _extra_axial(kind: str, rng: np.random.Generator, head: _Head) -> _Lesion:
    """Subdural crescent or epidural biconvex lens along the inner table of the skull."""
    side = int(rng.choice((-1, 1)))
    if kind == "subdural":
        direction = _unit(rng.uniform(45, 135), rng.uniform(-5, 35), side)
        spread = math.radians(rng.uniform(45, 70))
        thickness, power = rng.uniform(5.0, 13.0), 0.7
    else:
        frontal = rng.random() < 0.3
        direction = _unit(rng.uniform(15, 40) if frontal else rng.uniform(70, 115),
                          rng.uniform(-5, 25), side)
        spread = math.radians(rng.uniform(16, 26))
        thickness, power = rng.uniform(10.0, 22.0), 0.5
    d = direction.astype(np.float32)
    one_minus_cos = np.float32(1 - math.cos(spread))

    def draw(slab: _Slab) -> np.ndarray:
        q = (1.0 - (slab.nu * d[0] + slab.nv * d[1] + slab.nw * d[2])) / one_minus_cos
        profile = np.float32(thickness) * np.maximum(1.0 - q, 0.0) ** np.float32(power)
        blood = (slab.radial_depth < profile) & (q < 1.0)
        if kind == "subdural":  # the falx keeps a subdural hematoma on its own side
            blood &= slab.un * side > 1.0
        return blood

    return _Lesion(kind, rng.uniform(58, 82) if kind == "subdural" else rng.uniform(62, 88), draw)


def _subarachnoid(rng: np.random.Generator, head: _Head) -> _Lesion:
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
            direction = _unit(rng.uniform(20, 160), rng.uniform(20, 60), side)
            center = direction * (head.inner_radius(direction) - 8.0)
        sites.append((center, rng.uniform(22.0, 35.0)))
    widen = rng.uniform(1.0, 2.0)
    waves = rng.normal(size=(3, 3)) * (2 * math.pi / 18.0)
    phases = rng.uniform(0, 2 * math.pi, 3)

    def draw(slab: _Slab) -> np.ndarray:
        blood = np.zeros(slab.codes.shape, bool)
        for center, radius in sites:
            box = slab.box(head.to_world(center), np.full(3, radius))
            if box is None:
                continue
            u, v, w = slab.u[box], slab.v[box], slab.w[box]
            distance = np.sqrt((u - np.float32(center[0])) ** 2 + (v - np.float32(center[1])) ** 2
                               + (w - np.float32(center[2])) ** 2)
            patches = sum(np.cos(np.float32(k[0]) * u + np.float32(k[1]) * v + np.float32(k[2]) * w
                                 + np.float32(p)) for k, p in zip(waves, phases))
            codes = slab.codes[box]
            spaces = ((codes == Tissue.CSF) | (slab.cleft[box] < widen)) & ~slab.ventricle[box]
            spaces &= np.isin(codes, (Tissue.CSF, Tissue.GREY))
            blood[box] |= spaces & (distance < radius * (1.0 + 0.15 * patches)) & (patches > -1.0)
        return blood

    return _Lesion("subarachnoid", rng.uniform(55, 78), draw)


def _draw_lesions(rng: np.random.Generator, head: _Head) -> list[_Lesion]:
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


# --------------------------------------------------------------------------------------------
# Case generation
# --------------------------------------------------------------------------------------------


def _size_spec(size: str) -> SizeSpec:
    try:
        return SIZES[size]
    except KeyError:
        raise InputError(f"unknown size '{size}' (choose from {', '.join(SIZES)})") from None


def _draw_grid(rng: np.random.Generator, spec: SizeSpec, head: _Head) -> _Grid:
    """Spacing, shape and placement: the top slice at the vertex, the stack going down."""
    pixel = round(rng.uniform(*spec.fov_mm) * 2) / 2 / spec.matrix
    if spec.coverage_mm is not None:
        n_slices = int(rng.integers(spec.slices[0], spec.slices[1] + 1))
        slice_mm = round(rng.uniform(*spec.coverage_mm) / n_slices, 1)
    else:
        slice_mm = round(rng.uniform(*spec.slice_mm), 1)
        most = min(spec.slices[1], int(MAX_COVERAGE_MM // slice_mm))
        n_slices = int(rng.integers(spec.slices[0], most + 1))
    shape = (n_slices, spec.matrix, spec.matrix)
    spacing = (slice_mm, pixel, pixel)
    a, b, up, _ = head.skin
    top_half = np.sqrt(((head.rotation.T @ np.diag((a, b, up))) ** 2).sum(axis=1))[2]
    top_edge = head.center[2] + top_half + rng.uniform(-2.0, 3.0)
    first_z = top_edge - slice_mm * (n_slices - 0.5)
    first = (first_z, -(spec.matrix - 1) / 2 * pixel, -(spec.matrix - 1) / 2 * pixel)
    return _Grid(shape, spacing, first, spec.sub_slices, spec.render_factor)


@dataclass
class _Rendered:
    """Per output voxel: what the samples inside it add up to."""

    hu: np.ndarray        # mean HU, noise-free
    blood: np.ndarray     # share of samples that are blood
    dense: np.ndarray     # share of samples that are bone or calcification
    tissues: np.ndarray   # most frequent tissue other than blood
    pure: np.ndarray      # every sample the same tissue
    dominant: np.ndarray  # 1 + index of the lesion with most samples, 0 for none

    def label(self) -> np.ndarray:
        """Voxels at least half blood, leaving out those that bone or calcification brightens."""
        return (self.blood >= 0.5) & (self.dense <= 0.0)


def _render(head: _Head, grid: _Grid, lesions: list[_Lesion]) -> _Rendered:
    """Draw every output slice's samples and add them up per output voxel.

    Only the samples around the head are drawn; the rest of the field of view is air. The
    samples are counted per (tissue, pixel) with ``np.bincount``.
    """
    zs, ys, xs = (grid.render_axis(axis) for axis in range(3))
    block = grid.block
    crop = _head_crop(head, (ys, xs), block)
    ys, xs = ys[crop[0]], xs[crop[1]]
    z_shift = grid.z_shifts()[crop]
    ny, nx = len(ys) // block, len(xs) // block
    pixels = ny * nx
    pixel_of_sample = np.broadcast_to(
        (np.arange(len(ys)) // block * nx)[:, None] + np.arange(len(xs)) // block,
        (grid.sub_slices, len(ys), len(xs))).ravel()
    samples_per_pixel = grid.sub_slices * block * block
    n_codes, n_bleeds = len(Tissue), len(HEMORRHAGE_TYPES) + 1
    kinds = [HEMORRHAGE_TYPES.index(lesion.kind) + 1 for lesion in lesions]

    shape = (grid.shape[0], round(len(grid.render_axis(1)) / block),
             round(len(grid.render_axis(2)) / block))
    out = _Rendered(hu=np.full(shape, -1000.0, np.float32), blood=np.zeros(shape, np.float32),
                    dense=np.zeros(shape, np.float32), tissues=np.zeros(shape, np.uint8),
                    pure=np.ones(shape, bool), dominant=np.zeros(shape, np.uint8))
    head_box = (slice(None), slice(crop[0].start // block, crop[0].start // block + ny),
                slice(crop[1].start // block, crop[1].start // block + nx))
    hu, blood, dense, tissues, pure, dominant = (
        getattr(out, name)[head_box] for name in ("hu", "blood", "dense", "tissues", "pure", "dominant"))
    for k in range(grid.shape[0]):
        slab = _Slab(head, zs[k * grid.sub_slices:(k + 1) * grid.sub_slices], ys, xs, z_shift)
        for lesion in lesions:
            lesion.paint(slab)
        hu[k] = np.bincount(pixel_of_sample, weights=slab.hu.ravel(),
                            minlength=pixels).reshape(ny, nx) / samples_per_pixel
        counts = np.bincount(slab.codes.ravel().astype(np.intp) * pixels + pixel_of_sample,
                             minlength=n_codes * pixels).reshape(n_codes, ny, nx)
        blood[k] = counts[Tissue.BLOOD] / samples_per_pixel
        dense[k] = (counts[Tissue.BONE] + counts[Tissue.CALCIFICATION]) / samples_per_pixel
        pure[k] = counts.max(axis=0) == samples_per_pixel
        counts[Tissue.BLOOD] = -1
        tissues[k] = np.argmax(counts, axis=0)
        if kinds:
            bleeds = np.bincount(slab.bleed.ravel().astype(np.intp) * pixels + pixel_of_sample,
                                 minlength=n_bleeds * pixels).reshape(n_bleeds, ny, nx)
            per_lesion = bleeds[kinds]
            dominant[k] = np.where(per_lesion.any(axis=0), np.argmax(per_lesion, axis=0) + 1, 0)
    if grid.render_factor < 1:
        up = round(1 / grid.render_factor)
        out.hu, out.blood, out.dense = (_upsample(a, up) for a in (out.hu, out.blood, out.dense))
        out.tissues, out.pure, out.dominant = (a.repeat(up, axis=1).repeat(up, axis=2)
                                               for a in (out.tissues, out.pure, out.dominant))
    return out


def _head_crop(head: _Head, axes: tuple[np.ndarray, np.ndarray], block: int) -> tuple[slice, slice]:
    """Render index ranges along y and x that hold the head, in whole output pixels."""
    half = head.world_half_extent()
    crop = []
    for coords, center, extent in zip(axes, head.center[1::-1], half[1::-1]):
        lo = int(np.searchsorted(coords, center - extent)) // block * block
        hi = -(-int(np.searchsorted(coords, center + extent, "right")) // block) * block
        crop.append(slice(lo, min(hi, len(coords))))
    return crop[0], crop[1]


def _upsample(values: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation over the last two axes onto a grid ``factor`` times finer.

    Pixel edges stay aligned (output pixel j samples input position (j + 0.5) / factor - 0.5)
    and the border pixels are extended, as ``scipy.ndimage.zoom(..., grid_mode=True,
    mode="nearest")`` does, only much faster.
    """
    for axis in (values.ndim - 2, values.ndim - 1):
        a = np.moveaxis(values, axis, -1)
        before = np.concatenate((a[..., :1], a[..., :-1]), axis=-1)
        after = np.concatenate((a[..., 1:], a[..., -1:]), axis=-1)
        out = np.empty((*a.shape[:-1], a.shape[-1] * factor), values.dtype)
        for phase in range(factor):
            offset = (phase + 0.5) / factor - 0.5
            neighbour = before if offset < 0 else after
            out[..., phase::factor] = a + (neighbour - a) * np.float32(abs(offset))
        values = np.moveaxis(out, -1, axis)
    return np.ascontiguousarray(values)


def _ct_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_hu: float,
              correlation_px: float) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma_hu``, correlated over a pixel or so in-plane."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, (0, correlation_px, correlation_px))
    impulse = np.zeros((1, 15, 15), np.float32)
    impulse[0, 7, 7] = 1.0
    gain = float(np.sqrt((ndimage.gaussian_filter(impulse, (0, correlation_px, correlation_px)) ** 2).sum()))
    return smooth * np.float32(sigma_hu / gain)


def generate_case(seed: int, size: str = "small", hemorrhage: bool | None = None) -> SyntheticCase:
    """Draw one head CT (int16 HU) with its hemorrhage label; the same seed gives the same case.

    ``hemorrhage`` forces a case with (True) or without (False) bleeding; None draws it, about
    :data:`NO_HEMORRHAGE_RATE` of cases having none.
    """
    spec = _size_spec(size)
    if seed < 0:
        raise InputError(f"seed {seed}: must be zero or positive")
    rng = np.random.default_rng(seed)
    head = _Head.draw(rng)
    grid = _draw_grid(rng, spec, head)
    bleeding = (rng.random() >= NO_HEMORRHAGE_RATE) if hemorrhage is None else hemorrhage
    for _attempt in range(8):
        lesions = _draw_lesions(rng, head) if bleeding else []
        rendered = _render(head, grid, lesions)
        label = rendered.label()
        if label.any() or not bleeding:
            break
    else:
        raise RuntimeError(f"seed {seed}: no hemorrhage large enough to label after 8 draws")
    tissues = rendered.tissues
    tissues[label] = Tissue.BLOOD
    present = {lesions[i - 1].kind for i in np.unique(rendered.dominant[label]) if i > 0}
    types = tuple(sorted(present, key=HEMORRHAGE_TYPES.index))

    correlation = 0.8 if spec.render_factor < 1 else 0.5
    hu = rendered.hu + _ct_noise(rng, rendered.hu.shape, head.hu["noise"], correlation)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    origin = (grid.first[2], grid.first[1], grid.first[0])
    image = CTImage(array=array, spacing=grid.spacing, origin=origin,
                    metadata={"synthetic_seed": seed, "synthetic_size": size})
    volume_ml = float(label.sum()) * image.voxel_volume_ml
    return SyntheticCase(image, label.astype(np.uint8), tissues, rendered.pure, types, volume_ml)


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a data set seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def synthesize(out_dir: str | os.PathLike, n_cases: int, seed: int = 0, size: str = "small",
               overwrite: bool = False, preview: Path | None = None,
               progress: bool = True) -> list[CaseRecord]:
    """Write ``n_cases`` phantoms in the INSTANCE 2022 layout and return what was written.

    ``OUT/data/NAME.nii.gz`` (int16 HU), ``OUT/label/NAME.nii.gz`` (uint8) and ``OUT/cases.csv``
    appear together or not at all. ``preview`` names a PNG showing the first cases (up to 12).
    """
    _size_spec(size)
    if n_cases < 1:
        raise InputError(f"number of cases must be at least 1, got {n_cases}")
    if seed < 0:
        raise InputError(f"seed {seed}: must be zero or positive")
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    if preview is not None:
        refuse_existing(Path(preview), overwrite)

    width = max(3, len(str(n_cases - 1)))
    records: list[CaseRecord] = []
    panels: list[tuple[CTImage, np.ndarray, str]] = []
    with atomic_dir(out_dir, overwrite) as tmp, \
            make_progress(progress) as bar:
        task = bar.add_task(f"synthesising {size} cases", total=n_cases)
        for index in range(n_cases):
            name = f"ich_{index:0{width}d}"
            case = generate_case(case_seed(seed, index), size)
            save_image(case.image, tmp / "data" / f"{name}.nii.gz")
            save_mask(case.image, case.label, tmp / "label" / f"{name}.nii.gz")
            records.append(CaseRecord(name, out_dir / "data" / f"{name}.nii.gz",
                                      out_dir / "label" / f"{name}.nii.gz", case.types,
                                      case.volume_ml, case.image.spacing, case.image.shape))
            if preview is not None and len(panels) < 12:
                panels.append((case.image, case.label, f"{name}: {case.caption}"))
            bar.advance(task)
        write_text(tmp / "cases.csv", _cases_csv(records))
    if preview is not None:
        from ichseg.report.preview import save_case_grid

        save_case_grid(panels, preview, overwrite=overwrite)
    return records


def _cases_csv(records: list[CaseRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r.name, ";".join(r.types), f"{r.volume_ml:.6f}",
                         *(f"{s:.10g}" for s in r.spacing), *r.shape])
    return buffer.getvalue()
