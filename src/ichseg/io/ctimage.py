"""The CT volume value type: voxels with their geometry, and reorientation.

A :class:`CTImage` carries the voxel array together with spacing, origin and direction, so that
geometry cannot be lost between reading a scan and writing its mask. Arrays are (z, y, x); spacing
is (z, y, x) in mm; origin and direction are SimpleITK's physical (LPS) values. Reading and
writing files is elsewhere (:mod:`ichseg.io.nifti`, :mod:`ichseg.io.dicom`, chosen by
:func:`ichseg.io.image.load_image`), so that every format can depend on this module alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ichseg.units import voxel_volume_ml

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
        return tuple(self.array.shape)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm³ / 1000)."""
        return voxel_volume_ml(self.spacing)

    @property
    def name(self) -> str:
        """The case name: ``metadata["case_name"]`` when the reader set one (one of a study's
        several series), else the file name without its image extension, or the folder name."""
        if "case_name" in self.metadata:
            return str(self.metadata["case_name"])
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


def is_dicomdir(path: Path) -> bool:
    """A DICOMDIR file: the index of a DICOM medium (CD, DVD, USB stick), read as its study."""
    return path.name.upper() == "DICOMDIR" and path.is_file()
