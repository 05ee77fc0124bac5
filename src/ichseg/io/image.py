"""CT volumes with their geometry, read from and written to NIfTI (and other SimpleITK formats).

A :class:`CTImage` carries the voxel array together with spacing, origin and direction, so that
geometry cannot be lost between reading a scan and writing its mask. Arrays are (z, y, x); spacing
is (z, y, x) in mm; origin and direction are SimpleITK's physical (LPS) values.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ichseg.atomic import atomic_file
from ichseg.errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".mha", ".mhd")

#: The orientation every volume is turned into before it meets a model (SimpleITK/DICOM code).
CANONICAL_ORIENTATION = "LPS"


@dataclass(frozen=True)
class CTImage:
    """A 3D volume and where it lies in the patient."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    source: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm³ / 1000)."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def name(self) -> str:
        """The case name: the file name without its image extension, or the folder name."""
        if self.source is None:
            return "case"
        return case_name(self.source)

    def with_array(self, array: np.ndarray) -> CTImage:
        """The same geometry holding another array of the same shape (a mask, a vote map)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} does not match image shape {self.array.shape}")
        return replace(self, array=array)

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(tuple(float(s) for s in self.spacing[::-1]))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: Path | None = None,
                  metadata: dict[str, Any] | None = None) -> CTImage:
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(float(s) for s in image.GetSpacing()[::-1]),  # type: ignore[arg-type]
            origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
            direction=tuple(float(d) for d in image.GetDirection()),
            source=source,
            metadata=dict(metadata or {}),
        )

    def same_geometry(self, other: CTImage, tol: float = 1e-3) -> bool:
        """True when both images share shape, spacing, origin and direction (within ``tol``)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 10)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    @property
    def orientation(self) -> str:
        """Three-letter orientation code of the array axes (x, y, z), e.g. ``LPS`` or ``RAS``."""
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(self.direction)

    def reoriented(self, orientation: str = CANONICAL_ORIENTATION) -> CTImage:
        """The same voxels with axes permuted and flipped to ``orientation`` (no resampling)."""
        if self.orientation == orientation:
            return self
        turned = sitk.DICOMOrient(self.to_sitk(), orientation)
        return CTImage.from_sitk(turned, self.source, self.metadata)


def case_name(path: str | os.PathLike) -> str:
    """Name of a case from its file or folder name, image extensions removed."""
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _check_nifti_file(path: Path) -> None:
    """Checks SimpleITK and nibabel skip: zero or NaN voxel sizes (both read them as 1.0 mm), and
    voxel data cut short (SimpleITK fills the missing part with garbage)."""
    import gzip

    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as handle:
            header = nib.Nifti1Header.from_fileobj(handle, check=False)
    except Exception as exc:  # nibabel raises several types for broken headers
        raise InputError(f"{path}: not a readable NIfTI file ({_first_line(exc)})") from None
    dims = int(header["dim"][0])
    if dims != 3 and not (dims == 4 and int(header["dim"][4]) == 1):
        raise InputError(f"{path}: expected a 3D image, found {dims} dimensions")
    pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise InputError(f"{path}: invalid voxel spacing {pixdim.tolist()} in the header")
    expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    if path.name.lower().endswith(".gz"):
        size = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(1 << 22):
                    size += len(chunk)
        except (EOFError, OSError, gzip.BadGzipFile):
            raise InputError(f"{path}: truncated or corrupt compressed file") from None
    else:
        size = path.stat().st_size
    if size < expected:
        raise InputError(f"{path}: truncated file ({size} of {expected} bytes)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_image(path: str | os.PathLike) -> CTImage:
    """Read a 3D image file, checking it is readable, 3D, scalar and has a valid spacing.

    A folder is read as a DICOM series (see :mod:`ichseg.io.dicom`).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        from ichseg.io.dicom import load_dicom_series

        return load_dicom_series(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        _check_nifti_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot be read as an image ({_sitk_reason(exc)})") from None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3D image, found {image.GetDimension()} dimensions")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected one value per voxel, found "
                         f"{image.GetNumberOfComponentsPerPixel()}")
    spacing = image.GetSpacing()
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{path}: invalid voxel spacing {list(spacing)}")
    if min(image.GetSize()) < 1:
        raise InputError(f"{path}: empty image of size {list(image.GetSize())}")
    return CTImage.from_sitk(image, source=path)


def _sitk_reason(exc: RuntimeError) -> str:
    """SimpleITK's messages span many lines; keep the informative one."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Exception thrown", "/")) and "sitk::ERROR" not in line:
            return line
    for line in str(exc).splitlines():
        if "sitk::ERROR" in line:
            return line.split("sitk::ERROR:", 1)[-1].strip()
    return "unknown format or truncated file"


def save_image(image: CTImage, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``image`` (compressed where the format allows) atomically."""
    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        sitk.WriteImage(image.to_sitk(), str(tmp), useCompression=True)
    return path


def save_mask(reference: CTImage, mask: np.ndarray, path: str | os.PathLike,
              overwrite: bool = False) -> Path:
    """Write a label array in the geometry of ``reference`` as uint8."""
    return save_image(reference.with_array(np.asarray(mask, dtype=np.uint8)), path, overwrite)
