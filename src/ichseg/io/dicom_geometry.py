"""Where a DICOM series' slices lie, and the orthogonal, equidistant grid ichseg reads them onto.

Scanners do not always stack slices the way a volume needs them. With gantry tilt the image
planes are parallel, but the table moved along the patient's z rather than along the planes'
normal, so each slice is shifted within its plane (the stack is sheared); sequential head
protocols change the slice step along the head (thin slices in the posterior fossa, thick ones
above). Both are measured here from ImagePositionPatient against ImageOrientationPatient, never
from GantryDetectorTilt, which the standard calls nominal, and corrected as dcm2niix corrects them
(its ``_Tilt`` and ``_Eq`` outputs):

- each slice is moved by its in-plane shift, with linear interpolation, onto a grid that keeps
  the in-plane axes and takes the plane normal as slice axis, widened so that no slice's field
  of view is cropped (the new border holds air, or the series' padding value);
- steps that vary are interpolated linearly along the normal onto planes at the smallest step.

A gap that is a whole multiple of the step around it means missing files, not a protocol: it is
refused, naming the files, unless ``allow_gaps``. A series that needs neither correction is
returned exactly as stacked. The answers go back the other way: :func:`mask_on_source_slices`
puts a mask on the grid back onto every source slice, :func:`nearest_source_slices` finds the
slice a grid plane shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage

#: Two slices closer than this (mm) along the normal occupy the same position.
SAME_POSITION_MM = 1e-3
#: Steps may differ from their run's step by this much (mm, or this share of it, the larger).
STEP_TOLERANCE_MM = 0.05
STEP_TOLERANCE_SHARE = 0.02
#: In-plane shifts up to this share of a pixel are header rounding, not a shear.
SHEAR_TOLERANCE_PIXELS = 0.25
#: A slice reaching this share of a pixel past the grid does not widen it.
_ROUNDING_PX = 0.01
#: An equidistant grid holds at most this many times the source slices (dcm2niix's limit).
MAX_PLANES_PER_SLICE = 2
#: What fills the grid where no slice reaches, without a PixelPaddingValue (air, in HU).
AIR_HU = -1024.0

CORRECTION_TILT = "gantry tilt"
CORRECTION_EQUIDISTANT = "equidistant slices"


@dataclass(frozen=True)
class SourceSlice:
    """One image plane as the series sent it: a file, or one frame of an enhanced CT file."""

    file: Path
    sop_instance_uid: str
    sop_class_uid: str
    frame: int | None
    """The frame number (from 1) in a multi-frame file; None for a single-frame file."""
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    """ImageOrientationPatient: the row, then the column direction cosines."""
    pixel_spacing: tuple[float, float]
    """PixelSpacing: between rows, then between columns (mm)."""
    rows: int
    columns: int

    @property
    def name(self) -> str:
        """The file name, and the frame for a multi-frame file, for messages."""
        return self.file.name if self.frame is None else f"{self.file.name} frame {self.frame}"

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON types, for ``CTImage.metadata["dicom"]["source_slices"]``."""
        return {"file": str(self.file), "SOPInstanceUID": self.sop_instance_uid,
                "SOPClassUID": self.sop_class_uid, "frame": self.frame,
                "position": list(self.position), "orientation": list(self.orientation),
                "pixel_spacing": list(self.pixel_spacing), "rows": self.rows, "columns": self.columns}

    @classmethod
    def from_metadata(cls, record: Mapping[str, Any]) -> SourceSlice:
        return cls(Path(record["file"]), str(record["SOPInstanceUID"]), str(record["SOPClassUID"]),
                   record["frame"], tuple(record["position"]), tuple(record["orientation"]),
                   tuple(record["pixel_spacing"]), int(record["rows"]), int(record["columns"]))


def header_point(values: Iterable[Any]) -> tuple[float, float, float]:
    """A header's three decimal strings (ImagePositionPatient) as a point in mm."""
    x, y, z = (float(v) for v in values)
    return x, y, z


def header_pair(values: Iterable[Any]) -> tuple[float, float]:
    """A header's two decimal strings (PixelSpacing: between rows, between columns) as floats."""
    first, second = (float(v) for v in values)
    return first, second


def slice_axes(orientation: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and normal unit vectors, made exactly orthonormal (headers round them)."""
    row = np.asarray([float(v) for v in orientation[:3]])
    col = np.asarray([float(v) for v in orientation[3:]])
    row /= np.linalg.norm(row)
    col -= (col @ row) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def sort_along_normal(slices: Sequence[SourceSlice]) -> list[SourceSlice]:
    """The slices ordered by their position along the first slice's normal (stable)."""
    normal = slice_axes(slices[0].orientation)[2]
    depths = np.array([np.asarray(s.position) @ normal for s in slices])
    return [slices[i] for i in np.argsort(depths, kind="stable")]


@dataclass(frozen=True)
class SliceGrid:
    """The grid a series is read onto, and how each source slice reaches it.

    ``shifts`` (source slices × (rows, columns), in pixels) are where each slice's pixel (0, 0)
    lies on the grid, None when no slice is shifted; ``depths`` (mm from the first slice along
    the normal) are the grid's planes, None when they are the source slices themselves.
    """

    axes: np.ndarray
    origin: np.ndarray
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    source_depths: np.ndarray
    shifts: np.ndarray | None
    depths: np.ndarray | None
    tilt_deg: float | None
    steps_mm: tuple[float, ...]
    missing_slices: int = 0

    @property
    def corrections(self) -> list[str]:
        return ([CORRECTION_TILT] if self.shifts is not None else []) + (
            [CORRECTION_EQUIDISTANT] if self.depths is not None else [])

    @property
    def direction(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.axes.ravel())

    def describe(self) -> dict[str, Any]:
        """What was done, in plain JSON types (``metadata["dicom"]["geometry"]``)."""
        described: dict[str, Any] = {"correction": self.corrections}
        if self.tilt_deg is not None:
            described["tilt_deg"] = round(self.tilt_deg, 2)
        described["source_steps_mm"] = sorted({round(step, 2) for step in self.steps_mm})
        if self.missing_slices:
            described["missing_slices"] = self.missing_slices
        described["grid"] = {"spacing": [round(s, 4) for s in self.spacing], "shape": list(self.shape)}
        return described

    def resample(self, stack: np.ndarray, fill: float = AIR_HU) -> np.ndarray:
        """The source slices (stacked in order along the normal) on this grid; ``stack`` itself
        when nothing is corrected. Voxels no slice reaches hold ``fill``."""
        if self.shifts is not None:
            stack = _shift_slices(stack, self.shifts, self.shape[1:], fill)
        if self.depths is not None:
            stack = _interpolate_planes(stack, self.source_depths, self.depths)
        return stack


def plan_grid(slices: Sequence[SourceSlice], where: str, *, allow_gaps: bool = False) -> SliceGrid:
    """The grid for ``slices`` (ordered along the normal, sharing orientation and pixel spacing).

    Refuses, with one line naming ``where`` and the files: fewer than two slices, two slices at
    one position, and missing slices unless ``allow_gaps``.
    """
    if len(slices) < 2:
        raise InputError(f"{where}: only one slice, a volume needs at least two")
    row, col, normal = slice_axes(slices[0].orientation)
    positions = np.array([s.position for s in slices], float)
    offsets = positions - positions[0]
    depths = offsets @ normal
    gaps = np.diff(depths)
    if np.any(gaps < SAME_POSITION_MM):
        i = int(np.argmin(gaps))
        raise InputError(f"{where}: files {slices[i].name} and {slices[i + 1].name} lie at the same "
                         f"position (several acquisitions in one series?)")
    runs = _step_runs(gaps)
    missing = _missing_slices(runs, gaps, slices, where, allow_gaps)
    pixel = np.asarray(slices[0].pixel_spacing, float)
    in_plane = np.column_stack([offsets @ col, offsets @ row])  # (y, x) mm from the first slice
    shifts_px = in_plane / pixel
    sheared = np.max(np.abs(shifts_px)) > SHEAR_TOLERANCE_PIXELS
    pad_before, pad_after = _padding(shifts_px) if sheared else (np.zeros(2, int), np.zeros(2, int))
    grid_depths = _equidistant(depths) if len(runs) > 1 else None
    n_planes = len(grid_depths) if grid_depths is not None else len(slices)
    step = (grid_depths[1] - grid_depths[0]) if grid_depths is not None else depths[-1] / (len(depths) - 1)
    rows, columns = (int(n) for n in np.array([slices[0].rows, slices[0].columns]) + pad_before + pad_after)
    return SliceGrid(
        axes=np.column_stack([row, col, normal]),
        origin=positions[0] - pad_before[1] * pixel[1] * row - pad_before[0] * pixel[0] * col,
        spacing=(float(step), float(pixel[0]), float(pixel[1])),
        shape=(n_planes, rows, columns),
        source_depths=depths,
        shifts=shifts_px + pad_before if sheared else None,
        depths=grid_depths,
        tilt_deg=_tilt_deg(in_plane, depths) if sheared else None,
        steps_mm=tuple(float(np.mean(gaps[start:end])) for start, end in runs),
        missing_slices=missing,
    )


def _step_tolerance(step: float) -> float:
    return max(STEP_TOLERANCE_MM, STEP_TOLERANCE_SHARE * step)


def _step_runs(gaps: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive gaps of one step, as (first, end) index ranges into ``gaps``."""
    median = float(np.median(gaps))
    if np.all(np.abs(gaps - median) <= _step_tolerance(median)):
        return [(0, len(gaps))]
    runs, start = [], 0
    for i in range(1, len(gaps)):
        step = float(np.mean(gaps[start:i]))
        if abs(gaps[i] - step) > _step_tolerance(step):
            runs.append((start, i))
            start = i
    return [*runs, (start, len(gaps))]


def _missing_slices(runs: list[tuple[int, int]], gaps: np.ndarray, slices: Sequence[SourceSlice],
                    where: str, allow_gaps: bool) -> int:
    """Missing slices: a single gap that is k ≥ 2 times the step of the runs on both sides
    (or of the one run beside it, at an end). Refused unless ``allow_gaps``; else counted."""
    holes = []  # (gap index, missing slices, the step around it)
    for r, (start, end) in enumerate(runs):
        beside = [float(np.mean(gaps[a:b])) for a, b in runs[max(r - 1, 0):r + 2] if a != start]
        k = _whole_multiple(float(gaps[start]), beside) if end - start == 1 and beside else 0
        if k >= 2:
            holes.append((start, k - 1, beside[0]))
    if holes and not allow_gaps:
        i, missing, step = holes[0]
        more = f"; {len(holes)} such gaps in all" if len(holes) > 1 else ""
        raise InputError(f"{where}: {missing} missing slice(s) between files {slices[i].name} and "
                         f"{slices[i + 1].name} (gap {gaps[i]:.2f} mm, spacing {step:.2f} mm){more}; "
                         f"ichseg predict --allow-gaps interpolates across them")
    return sum(missing for _, missing, _ in holes)


def _whole_multiple(gap: float, steps: Sequence[float]) -> int:
    """k when ``gap`` is k times each of ``steps`` (within tolerance), else 0."""
    multiples = {round(gap / step) for step in steps}
    k = multiples.pop() if len(multiples) == 1 else 0
    return k if all(abs(gap - k * step) <= _step_tolerance(step) for step in steps) else 0


def _equidistant(depths: np.ndarray) -> np.ndarray:
    """Planes at the smallest step from the first slice until the last lies within half a step
    (at most :data:`MAX_PLANES_PER_SLICE` per source slice, then at a step that spans them)."""
    step = float(np.min(np.diff(depths)))
    n_planes = math.floor(depths[-1] / step + 0.5) + 1
    limit = MAX_PLANES_PER_SLICE * len(depths)
    if n_planes > limit:
        n_planes, step = limit, float(depths[-1]) / (limit - 1)
    return np.arange(n_planes) * step


def _padding(shifts_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns to add before and after, so that every shifted slice fits on the grid."""
    before = np.ceil(np.maximum(-shifts_px.min(axis=0) - _ROUNDING_PX, 0)).astype(int)
    after = np.ceil(np.maximum(shifts_px.max(axis=0) - _ROUNDING_PX, 0)).astype(int)
    return before, after


def _tilt_deg(in_plane: np.ndarray, depths: np.ndarray) -> float:
    """The shear's angle: in-plane shift per mm along the normal, fitted over every slice."""
    slope = (in_plane.T @ depths) / float(depths @ depths)
    return float(np.degrees(np.arctan(np.linalg.norm(slope))))


def _shift_slices(stack: np.ndarray, shifts: np.ndarray, shape: tuple[int, int], fill: float) -> np.ndarray:
    """Each slice moved so that its pixel (0, 0) lands at ``shifts[k]`` on a ``shape`` plane."""
    out = np.empty((len(stack), *shape), np.float32)
    for k, (plane, shift) in enumerate(zip(stack, shifts, strict=True)):
        ndimage.affine_transform(plane.astype(np.float32, copy=False), np.ones(2), offset=-shift,
                                 output_shape=shape, output=out[k], order=1, mode="constant", cval=fill)
    return out


def _interpolate_planes(stack: np.ndarray, source_depths: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Linear interpolation along the normal; planes past the last slice repeat it."""
    out = np.empty((len(depths), *stack.shape[1:]), np.float32)
    upper = np.clip(np.searchsorted(source_depths, depths), 1, len(source_depths) - 1)
    for j, (depth, hi) in enumerate(zip(depths, upper, strict=True)):
        lo = hi - 1
        weight = float(np.clip((depth - source_depths[lo]) / (source_depths[hi] - source_depths[lo]), 0, 1))
        out[j] = (1 - weight) * stack[lo] + weight * stack[hi]
    return out


def source_slices(image: CTImage) -> list[SourceSlice]:
    """The slices a DICOM series was read from, ordered along the normal."""
    records = (image.metadata.get("dicom") or {}).get("source_slices")
    if not records:
        raise InputError(f"{image.name}: not read from a DICOM series, it has no source slices")
    return [SourceSlice.from_metadata(record) for record in records]


def mask_on_source_slices(mask: np.ndarray, image: CTImage, slices: Sequence[SourceSlice]) -> np.ndarray:
    """``mask`` (on ``image``'s grid, whatever it is) at every pixel of every source slice: the
    value of the voxel nearest the pixel's world position (a class map keeps its classes), 0
    outside the grid. (slices, rows, columns), uint8."""
    to_index = np.linalg.inv(np.asarray(image.direction, float).reshape(3, 3)
                             * np.asarray(image.spacing[::-1], float))
    origin = np.asarray(image.origin, float)
    size = mask.shape[::-1]  # (x, y, z), as the index vectors
    out = np.zeros((len(slices), slices[0].rows, slices[0].columns), np.uint8)
    for k, plane in enumerate(slices):
        row, col, _ = slice_axes(plane.orientation)
        base = to_index @ (np.asarray(plane.position) - origin)
        down = to_index @ (plane.pixel_spacing[0] * col) * np.arange(plane.rows)[:, None]
        across = to_index @ (plane.pixel_spacing[1] * row) * np.arange(plane.columns)[:, None]
        inside = np.ones((plane.rows, plane.columns), bool)
        nearest = []
        for axis in range(3):  # x, y, z index of every pixel, and whether it lies on the grid
            index = np.add.outer(base[axis] + down[:, axis], across[:, axis])
            inside &= (index > -0.5 - _ROUNDING_PX) & (index < size[axis] - 0.5 + _ROUNDING_PX)
            nearest.append(np.clip(np.rint(index), 0, size[axis] - 1).astype(np.intp))
        x, y, z = nearest
        out[k] = np.where(inside, mask[z, y, x], 0)
    return out


def nearest_source_slices(image: CTImage, planes: Sequence[int]) -> list[SourceSlice]:
    """For each plane (z index) of ``image``, the source slice nearest its centre."""
    slices = source_slices(image)
    axes = np.asarray(image.direction, float).reshape(3, 3)
    normals = np.array([slice_axes(s.orientation)[2] for s in slices])
    offsets = np.array([np.asarray(s.position) @ n for s, n in zip(slices, normals, strict=True)])
    centre = (np.asarray(image.shape[::-1], float) - 1) / 2 * np.asarray(image.spacing[::-1])
    nearest = []
    for plane in planes:
        point = np.asarray(image.origin) + axes @ (centre * [1, 1, 0] + [0, 0, plane * image.spacing[0]])
        nearest.append(slices[int(np.argmin(np.abs(normals @ point - offsets)))])
    return nearest
