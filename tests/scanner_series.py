"""CT series written the way scanners write them (gantry tilt, slice steps that change), sampled
from an analytic head, so that what ichseg reads can be checked against the head itself and
against dcm2niix run on the same files, in world coordinates."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ichseg.io.ctimage import CTImage
from ichseg.io.dicom import write_ct_series
from orthanc import require_binary

HEAD_RADII = np.array([40.0, 46.0, 40.0])
SKULL_MM = 6.0
BLEED_OFFSET = np.array([15.0, 10.0, 5.0])
BLEED_RADIUS_MM = 10.0
#: Width (mm) of the head's edges: smooth enough for linear interpolation to follow them.
EDGE_MM = 1.5


def _edge(signed_mm: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(signed_mm / EDGE_MM))


@dataclass(frozen=True)
class Acquisition:
    """Slices at table positions ``steps_mm`` apart; with ``tilt_deg`` the gantry is tilted about
    the patient's x axis. The tilt is written as scanners write it: a tilted image orientation
    whose slices step along the patient's z, or (``sheared_axial``) axial images whose positions
    shift along y."""

    steps_mm: tuple[float, ...] = (5.0,) * 18
    tilt_deg: float = 0.0
    sheared_axial: bool = False
    rows: int = 104
    columns: int = 96
    pixel_mm: tuple[float, float] = (1.3, 1.4)

    @property
    def table_mm(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.steps_mm)])

    @property
    def head_centre(self) -> np.ndarray:
        return np.array([2.0, 0.0, self.table_mm[-1] / 2])

    @property
    def bleed_centre(self) -> np.ndarray:
        return self.head_centre + BLEED_OFFSET

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """The image's row and column directions (LPS)."""
        tilt = np.radians(self.tilt_deg)
        column = np.array([0.0, 1.0, 0.0]) if self.sheared_axial else np.array([0.0, np.cos(tilt), np.sin(tilt)])
        return np.array([1.0, 0.0, 0.0]), column

    def positions(self) -> np.ndarray:
        """ImagePositionPatient of each slice: its field of view centred on the table's axis."""
        row, column = self.axes()
        shift = np.tan(np.radians(self.tilt_deg)) * (self.table_mm - self.table_mm[-1] / 2)
        centres = np.column_stack([0 * shift, shift if self.sheared_axial else 0 * shift, self.table_mm])
        half = (self.columns - 1) / 2 * self.pixel_mm[1] * row + (self.rows - 1) / 2 * self.pixel_mm[0] * column
        return centres - half

    def pixel_centres(self, position: np.ndarray) -> np.ndarray:
        """World positions (rows, columns, 3) of a slice's pixels."""
        row, column = self.axes()
        i, j = np.meshgrid(np.arange(self.rows), np.arange(self.columns), indexing="ij")
        return position + j[..., None] * self.pixel_mm[1] * row + i[..., None] * self.pixel_mm[0] * column

    def head_hu(self, points: np.ndarray) -> np.ndarray:
        """Air, skull, brain and a bleed, with smooth edges."""
        relative = (points - self.head_centre) / HEAD_RADII
        inside_mm = (1 - np.linalg.norm(relative, axis=-1)) * HEAD_RADII.mean()
        bleed_mm = BLEED_RADIUS_MM - np.linalg.norm(points - self.bleed_centre, axis=-1)
        return -1000 + 1800 * _edge(inside_mm) - 768 * _edge(inside_mm - SKULL_MM) + 38 * _edge(bleed_mm)

    def in_bleed(self, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - self.bleed_centre, axis=-1) < BLEED_RADIUS_MM

    def write(self, folder: Path, **options: object) -> Path:
        """The series, one file per slice (``options``: :func:`write_ct_series`'s)."""
        row, column = self.axes()
        positions = self.positions()
        planes = np.stack([self.head_hu(self.pixel_centres(p)) for p in positions]).astype(np.float32)
        image = CTImage(planes, spacing=(min(self.steps_mm), *self.pixel_mm), origin=tuple(positions[0]),
                        direction=tuple(np.column_stack([row, column, np.cross(row, column)]).ravel()))
        attributes = {"GantryDetectorTilt": f"{-self.tilt_deg:g}", **options.pop("attributes", {})}
        return write_ct_series(image, folder, positions=positions, attributes=attributes, **options)


def voxel_centres(image: CTImage) -> np.ndarray:
    """World positions (LPS) of every voxel, (z, y, x, 3)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in image.shape), indexing="ij")
    index = np.stack([x, y, z], axis=-1) * np.asarray(image.spacing[::-1])
    return np.asarray(image.origin) + index @ np.asarray(image.direction).reshape(3, 3).T


def covered(acquisition: Acquisition, image: CTImage) -> np.ndarray:
    """Voxels of a grid whose planes are the source slices that lie within their slice's field
    of view (read from the acquisition, not from ichseg)."""
    row, column = acquisition.axes()
    world = voxel_centres(image)
    inside = np.zeros(image.shape, bool)
    for k, position in enumerate(acquisition.positions()):
        i = (world[k] - position) @ column / acquisition.pixel_mm[0]
        j = (world[k] - position) @ row / acquisition.pixel_mm[1]
        inside[k] = (i > -1e-3) & (i < acquisition.rows - 1 + 1e-3) & (j > -1e-3) & (j < acquisition.columns - 1 + 1e-3)
    return inside


def dcm2niix(folder: Path, out: Path) -> dict[str, Path]:
    """dcm2niix's NIfTI files for ``folder``, by suffix ('' for the plain conversion, '_Tilt',
    '_Eq', ...). Skipped when dcm2niix is missing, failed under CI=true."""
    binary = require_binary("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([binary, "-z", "n", "-f", "ct", "-o", str(out), str(folder)], check=True,
                   capture_output=True, timeout=120)
    return {path.name[len("ct"):-len(".nii")].replace("_1", ""): path for path in out.glob("ct*.nii")}


def sample_nifti(path: Path, world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A NIfTI file's values at world points (LPS, (..., 3)), by linear interpolation through its
    affine (nibabel: sheared affines too); where the points lie inside it; their voxel indices."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj, np.float32)
    ras = world.reshape(-1, 3) * [-1, -1, 1]
    index = (np.linalg.inv(image.affine) @ np.column_stack([ras, np.ones(len(ras))]).T)[:3]
    inside = np.all((index > -1e-3) & (index < np.asarray(data.shape)[:, None] - 1 + 1e-3), axis=0)
    values = ndimage.map_coordinates(data, index, order=1, mode="nearest")
    shape = world.shape[:-1]
    return values.reshape(shape), inside.reshape(shape), index.T.reshape(*shape, 3)


def dciodvfy_errors(path: Path) -> list[str]:
    """The errors dciodvfy reports for a DICOM file (skipped when it is missing, failed under
    CI=true)."""
    run = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120,
                         check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
