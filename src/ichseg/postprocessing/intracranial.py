"""The intracranial space, found from the CT itself: what the skull's inner table encloses.

Hemorrhage is intracranial by definition, so a mask voxel outside this space (scalp, temporal
muscle, the bone itself) is a false positive. The space is found from the bone alone: no model,
no atlas.

Bone is every voxel at or above :func:`bone_threshold`: 136 HU for 5 mm slices, between 100 HU
(above the densest acute blood, about 90-100 HU) and 180 HU (thin slices). It is the value a
voxel of soft tissue reaches when a 1 mm plate of cortical bone (the orbital roofs, the
cribriform plate, the temporal squama) lies across it and the next slice: a higher threshold
loses such plates in thick slices and lets the cavity leak into the orbits and the face. Blood,
brain and muscle stay below it with room for noise and beam hardening. What lies above it inside
the cavity (calcifications, streaks) does no harm: islands are filled back at the end.

The steps, on a working grid of about 1 mm in-plane (blocks of the input's pixels; a block with
any bone is bone, so thin bone stays whole):

1. close the bone over :data:`CLOSING_MM`: sutures, burr holes, small foramina, partial volume;
2. cast rays from the head's deepest point; where they reach air or leave through the side of
   the image before meeting bone (a craniectomy, a skull cut by the field of view), lay caps
   over the gaps (:mod:`ichseg.postprocessing.skull_gaps`);
3. fill the bone and caps in 3D with the first and last slices walled, so that a scan cropped at
   the vertex or through the posterior fossa still encloses its cavity, and slice by slice, where
   an axial ring of bone encloses the cavity even where it is open below (the foramen magnum);
4. keep the enclosed component around the rays' start, grow it back without crossing bone into
   what the closing took (narrow spaces against the bone, where epidural and subdural bleeds
   lie), fill its islands, and bring it back to the input's grid.

When there is too little bone, when the rays meet dense bone (a skull's tables, at least
:data:`DENSE_HU`) in too few directions, or when too little is enclosed (a skull-stripped image,
a scan that is not of a head), the space is not found and :attr:`IntracranialSpace.reason` says
why. A full-size head CT (512 x 512 x 35) takes about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ichseg.io.ctimage import CTImage
from ichseg.postprocessing.midsagittal import midsagittal_plane
from ichseg.postprocessing.skull_gaps import (
    VoxelDirections,
    cropped_ends_beside_gaps,
    mirrored_thickness,
    paint_caps,
)
from ichseg.postprocessing.skull_rays import SkullRays, SkullView, cast_rays, circle_directions
from ichseg.units import voxel_volume_ml

#: The bone threshold's bounds (HU); see :func:`bone_threshold`.
BONE_HU = (100.0, 180.0)
#: The thinnest plate of cortical bone (mm, HU) that must stay bone in any slice thickness.
THIN_PLATE = (1.0, 1000.0)
#: Grey matter and the densest acute blood are below this (HU).
SOFT_TISSUE_HU = 40.0
#: Voxels below this are air (outside the head, sinuses); padding outside the field of view too.
AIR_HU = -300.0
#: Gaps in the bone up to about twice this wide are closed before filling.
CLOSING_MM = 6.0
#: The working grid's pixel size in-plane and slice thickness (at least; whole input voxels).
WORKING_MM = (2.0, 1.0, 1.0)
#: Less bone than this: no skull in the image.
MIN_BONE_ML = 10.0
#: Less enclosed than this: no cranial cavity (an adult's is about 1200-1700 mL).
MIN_SPACE_ML = 100.0
#: Pieces of bone smaller than this are not skull (calcifications, a dense clot, streaks).
MIN_PIECE_ML = 1.0
#: A skull's tables reach this even in thick slices; the partial volume at a skull-stripped
#: brain's edge, a calcification's rim or a dense bleed do not form a shell of it.
DENSE_HU = 600.0
#: Rays (not lost to a cropped end) that must meet dense bone for the skull to count as found.
MIN_DENSE_SHARE = 0.5

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
_IN_PLANE_SQUARE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_SQUARE[1] = True
_SIX = ndimage.generate_binary_structure(3, 1)
_DOWNWARDS = np.zeros((3, 3, 3), dtype=bool)  # a voxel and the one below it (axis 0 runs upwards)
_DOWNWARDS[0, 1, 1] = _DOWNWARDS[1, 1, 1] = True


@dataclass(frozen=True)
class IntracranialSpace:
    """The space found, or why not.

    ``mask`` is True inside the skull, in the geometry of the image given (None when not found).
    ``capped_share`` is the share of directions from the cavity where a gap in the skull was
    sealed by a cap (0 for an intact skull). ``bone_rim`` holds the voxels of ``mask`` that touch
    its outside and read as bone (at least :func:`bone_threshold`): the inner table's partial
    volume, which the space keeps so that it loses no intracranial tissue, but where a voxel is
    too dense to be only blood.
    """

    mask: np.ndarray | None
    reason: str | None
    volume_ml: float = 0.0
    capped_share: float = 0.0
    bone_rim: np.ndarray | None = None

    @property
    def found(self) -> bool:
        return self.mask is not None

    @property
    def room(self) -> np.ndarray | None:
        """Where a hemorrhage can be: the space less its bone rim (None when not found)."""
        if self.mask is None:
            return None
        return self.mask if self.bone_rim is None else self.mask & ~self.bone_rim


def find_intracranial_space(image: CTImage | np.ndarray,
                            spacing: Sequence[float] | None = None) -> IntracranialSpace:
    """The intracranial space of a head CT in HU.

    ``image`` is a :class:`CTImage` in any orientation, or a (z, y, x) array in the canonical
    LPS orientation (first axis from feet to head) with its ``spacing`` in mm.
    """
    if isinstance(image, CTImage):
        canonical = image.reoriented()
        z, y, x = canonical.spacing
        space = _find_canonical(np.asarray(canonical.array), (z, y, x))
        if space.mask is None or canonical is image:
            return space
        def back(array: np.ndarray) -> np.ndarray:
            return canonical.with_array(array.view(np.uint8)).reoriented(image.orientation).array.astype(bool)

        rim = None if space.bone_rim is None else back(space.bone_rim)
        return IntracranialSpace(back(space.mask), None, space.volume_ml, space.capped_share, rim)
    if spacing is None or len(spacing) != 3:
        raise ValueError(f"a bare array needs its (z, y, x) spacing, got {spacing!r}")
    z, y, x = (float(s) for s in spacing)
    return _find_canonical(np.asarray(image), (z, y, x))


def bone_threshold(slice_mm: float) -> float:
    """The HU at and above which a voxel is bone, for slices ``slice_mm`` thick.

    A plate of :data:`THIN_PLATE` (1 mm of 1000 HU bone: the orbital roof, the temporal squama)
    lying across two slices fills half a millimetre of each; the threshold is what such a voxel
    of soft tissue reaches, kept between 100 HU (above the densest acute blood, about 90-100
    HU) and 180 HU (where thin slices resolve the plate anyway): 136 HU for 5 mm slices.
    """
    plate_mm, plate_hu = THIN_PLATE
    share = plate_mm / (2.0 * slice_mm)
    low, high = BONE_HU
    return float(np.clip(SOFT_TISSUE_HU + (plate_hu - SOFT_TISSUE_HU) * share, low, high))


@dataclass(frozen=True)
class _Grid:
    """The working grid: how many input voxels make one working voxel along each axis."""

    factors: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @classmethod
    def for_spacing(cls, spacing: tuple[float, float, float]) -> _Grid:
        factors = tuple(max(1, int(target / s)) for target, s in zip(WORKING_MM, spacing, strict=True))
        return cls(factors, tuple(s * f for s, f in zip(spacing, factors, strict=True)))  # type: ignore[arg-type]

    @property
    def offset(self) -> tuple[float, float, float]:
        """Where (mm) the middle of the block pooled into working voxel (0, 0, 0) lies from
        input voxel (0, 0, 0)."""
        return tuple((f - 1) * s / f / 2 for f, s in zip(self.factors, self.spacing, strict=True))  # type: ignore[return-value]

    def pool(self, mask: np.ndarray) -> np.ndarray:
        """True where any input voxel of the block is."""
        if self.factors == (1, 1, 1):
            return mask
        padded = np.pad(mask, [(0, -n % f) for n, f in zip(mask.shape, self.factors, strict=True)])
        (nz, ny, nx), (fz, fy, fx) = padded.shape, self.factors
        return np.asarray(padded.reshape(nz // fz, fz, ny // fy, fy, nx // fx, fx).any(axis=(1, 3, 5)))

    def refined(self, mask: np.ndarray, bone: np.ndarray) -> np.ndarray:
        """Back to the input's grid: each block's value on all its voxels, then grown into the
        voxels (not ``bone``) of the blocks that pooling gave to the bone at its edge."""
        if self.factors == (1, 1, 1):
            return mask
        mask = self.repeated(mask, bone.shape)
        room = self.repeated(self.pool(bone), bone.shape) & ~bone
        return ndimage.binary_dilation(mask, _IN_PLANE_SQUARE, iterations=max(self.factors),
                                       mask=room) | mask

    def repeated(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Each block's value on all its voxels, on an input grid of ``shape``."""
        for axis, factor in enumerate(self.factors):
            mask = np.repeat(mask, factor, axis=axis)
        return mask[: shape[0], : shape[1], : shape[2]]


def _find_canonical(hu: np.ndarray, spacing: tuple[float, float, float]) -> IntracranialSpace:
    if hu.ndim != 3:
        raise ValueError(f"expected a 3D image, got shape {hu.shape}")
    threshold = bone_threshold(spacing[0])
    bone_full = hu >= threshold
    bone_ml = float(np.count_nonzero(bone_full)) * voxel_volume_ml(spacing)
    if bone_ml < MIN_BONE_ML:
        return IntracranialSpace(None, f"no skull: {bone_ml:.1f} mL of bone (>= {threshold:.0f} "
                                       f"HU), less than {MIN_BONE_ML:g} mL")
    grid = _Grid.for_spacing(spacing)
    bone = grid.pool(bone_full)
    closed = _closed(bone, grid.spacing)
    air = grid.pool(hu < AIR_HU) & ~bone
    head = ndimage.binary_fill_holes(~air, structure=_IN_PLANE)
    centre = _centre(head, closed, grid.spacing)
    view = SkullView(_without_islands(closed, grid.spacing), grid.spacing, hu >= DENSE_HU,
                     hu < AIR_HU, spacing, grid.offset)
    rays = cast_rays(view, centre)
    if rays.dense_share < MIN_DENSE_SHARE:
        return IntracranialSpace(None, f"no skull: dense bone (>= {DENSE_HU:g} HU) around the "
                                       f"head's centre in only {100 * rays.dense_share:.0f}% of "
                                       f"directions")
    shell = closed | _caps(view, rays, bone, head & ~closed)
    cavity = _component_at(_enclosed(shell), centre, grid.spacing)
    cavity = _grown_back(cavity, closed & ~bone, ~shell & ~cavity, grid.spacing)
    volume_ml = float(np.count_nonzero(cavity)) * voxel_volume_ml(grid.spacing)
    if volume_ml < MIN_SPACE_ML:
        return IntracranialSpace(None, f"no cranial cavity: the skull encloses only "
                                       f"{volume_ml:.0f} mL, less than {MIN_SPACE_ML:g} mL")
    mask = grid.refined(cavity, bone_full)
    mask |= ndimage.binary_dilation(mask, _IN_PLANE) & bone_full & (hu < DENSE_HU)
    rim = mask & bone_full & ~ndimage.binary_erosion(mask, _SIX, border_value=1)
    return IntracranialSpace(mask, None, float(np.count_nonzero(mask)) * voxel_volume_ml(spacing),
                             float(rays.gap.mean()), rim)


def _closed(bone: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Bone closed by a box of about 2 x :data:`CLOSING_MM` (separable filters: fast)."""
    size = tuple(2 * max(1, round(CLOSING_MM / s)) + 1 for s in spacing)
    as_bytes = bone.view(np.uint8)
    dilated = ndimage.maximum_filter(as_bytes, size=size, mode="nearest")
    return ndimage.minimum_filter(dilated, size=size, mode="nearest").astype(bool) | bone


def _enclosed(shell: np.ndarray) -> np.ndarray:
    """What the shell encloses in 3D (its first and last slices walled) or within a slice."""
    walled = np.pad(shell, ((1, 1), (0, 0), (0, 0)), constant_values=True)
    in_3d = ndimage.binary_fill_holes(walled)[1:-1]
    in_slices = ndimage.binary_fill_holes(shell, structure=_IN_PLANE)
    return (in_3d | in_slices) & ~shell


def _without_islands(bone: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The bone less its pieces under :data:`MIN_PIECE_ML` (calcifications, dense clot): the
    rays look for the skull, not for what lies inside it."""
    labels, _ = ndimage.label(bone, structure=ndimage.generate_binary_structure(3, 3))
    sizes = np.bincount(labels.ravel()) * voxel_volume_ml(spacing)
    sizes[0] = 0.0
    return (sizes >= MIN_PIECE_ML)[labels]


def _caps(view: SkullView, rays: SkullRays, bone: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """The caps over the gaps the ``rays`` found, the soft tissue over them as thick as on the
    other side of the head. Where a gap reaches the first or last slice, the rays from the
    centre leave through the end before they meet the skin beside the gap: there each slice,
    from the end inwards while they do, is capped by rays within it from the deepest point of
    its ``soft`` tissue (inside the head, not bone), in the directions (from the centre) that
    leave through the end."""
    shape, spacing = bone.shape, view.spacing
    if not rays.gap.any():
        return np.zeros(shape, dtype=bool)
    surface = bone & ~ndimage.binary_erosion(bone, _IN_PLANE)
    plane = midsagittal_plane(surface, spacing, rays.centre_mm)
    seen = VoxelDirections(shape, spacing, rays)
    caps = paint_caps(seen, mirrored_thickness(view, rays, plane))
    ends = cropped_ends_beside_gaps(rays)
    if not ends:
        return caps
    cropped = seen.share(rays.cropped) & soft
    for end in ends:
        for z in (range(shape[0]) if end == 0 else range(shape[0] - 1, -1, -1)):
            if not cropped[z].any():
                break
            centre = np.array([z * spacing[0], *_deepest_point(soft[z], spacing[1:])])
            within = cast_rays(view, centre, circle_directions())
            caps[z] |= paint_caps(VoxelDirections(shape, spacing, within, z),
                                  mirrored_thickness(view, within, plane, in_slice=True)
                                  )[0] & cropped[z]
    return caps


def _centre(head: np.ndarray, closed: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Where the rays start: the deepest point of the head (what is not air, its slices
    filled), which lies in the cranium; a craniectomy leaves the skin, so it does not move it.
    Should that point be bone, the deepest point of the non-bone part of the head."""
    centre = _deepest_point(head, spacing)
    index = tuple(np.clip(np.rint(centre / spacing).astype(int), 0, np.array(closed.shape) - 1))
    return centre if not closed[index] else _deepest_point(head & ~closed, spacing)


def _deepest_point(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The point (mm) of ``mask`` (a volume or a slice) farthest from its edge, found on a grid
    of about 4 mm. A volume's first and last slices are no edge: they go on beyond it (a scan
    cropped at the vertex or the skull base)."""
    step = tuple(max(1, round(4.0 / s)) for s in spacing)
    coarse = mask[tuple(slice(None, None, k) for k in step)]
    if mask.ndim == 3:
        coarse = np.pad(coarse, ((1, 1), (0, 0), (0, 0)), mode="edge")
    depth = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=[
        s * k for s, k in zip(spacing, step, strict=True)])[(slice(1, -1),) * mask.ndim]
    if mask.ndim == 3:
        depth = depth[1:-1]
    index = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.array([i * k * s for i, k, s in zip(index, step, spacing, strict=True)], dtype=float)


def _component_at(enclosed: np.ndarray, centre_mm: np.ndarray,
                  spacing: tuple[float, float, float]) -> np.ndarray:
    """The component of ``enclosed`` holding the centre, or the largest if none does."""
    labels, count = ndimage.label(enclosed, structure=_SIX)
    index = tuple(np.clip(np.rint(centre_mm / spacing).astype(int), 0,
                          np.array(enclosed.shape) - 1))
    label = labels[index]
    if label == 0 and count > 0:
        label = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return labels == label if label else enclosed


def _grown_back(cavity: np.ndarray, room: np.ndarray, outside: np.ndarray,
                spacing: tuple[float, float, float]) -> np.ndarray:
    """The cavity grown within ``room`` (never through bone) by about :data:`CLOSING_MM`, within
    the slices and downwards (into the folds of the skull base; not upwards, where the slices
    that cut the vault's top obliquely hold partial-volume bone), and its islands
    (calcifications, streaks) filled. What lies ``outside`` grows into the room in step with it:
    a channel the closing sealed through the bone (a burr hole) is shared between them, a fold
    (which only the cavity reaches) is the cavity's."""
    grown, rival = cavity, outside
    for structure, step in ((_IN_PLANE, min(spacing[1:])), (_DOWNWARDS, spacing[0])):
        for _ in range(max(1, round(CLOSING_MM / step))):
            free = room & ~grown & ~rival
            rival = rival | (ndimage.binary_dilation(rival, _SIX) & free)
            grown = grown | (ndimage.binary_dilation(grown, structure) & free & ~rival)
    walled = np.pad(grown, ((1, 1), (0, 0), (0, 0)), constant_values=True)
    return ndimage.binary_fill_holes(walled)[1:-1]
