"""Reading a CT from whatever the user points at: the one place that chooses the reader.

A folder is a DICOM series (:mod:`ichseg.io.dicom`), a file is NIfTI or another SimpleITK
format (:mod:`ichseg.io.nifti`). The value type and the writers are re-exported here, where
callers have always found them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ichseg.errors import InputError
from ichseg.io.ctimage import (
    CANONICAL_ORIENTATION,
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    CTImage,
    case_name,
    is_dicomdir,
)
from ichseg.io.nifti import is_image_file, read_image_file, save_image, save_mask

__all__ = ["CANONICAL_ORIENTATION", "IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "CTImage", "case_name",
           "is_dicomdir", "is_image_file", "load_image", "save_image", "save_mask"]


def load_image(path: str | os.PathLike, *, allow_gaps: bool = False) -> CTImage:
    """Read a 3D image file, checking it is readable, 3D, scalar and has a valid spacing.

    A folder or a DICOMDIR is read as a DICOM series (see :mod:`ichseg.io.dicom`: a gantry-tilted
    or unevenly spaced series comes back on an orthogonal grid; missing slices are refused unless
    ``allow_gaps``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir() or is_dicomdir(path):
        from ichseg.io.dicom import load_dicom_series

        return load_dicom_series(path, allow_gaps=allow_gaps)
    return read_image_file(path)
