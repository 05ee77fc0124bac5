"""NIfTI and the other single-file formats SimpleITK reads and writes (NRRD, MetaImage).

Reading checks what SimpleITK lets through (zero or NaN voxel sizes, data cut short, 4D or
vector images) so that a bad file is refused with one line naming it; writing is atomic.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ichseg.atomic import atomic_file
from ichseg.errors import InputError, first_line
from ichseg.io.ctimage import IMAGE_SUFFIXES, NIFTI_SUFFIXES, CTImage


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image_file(path: Path) -> CTImage:
    """Read a 3D image file, checking it is readable, 3D, scalar and has a valid spacing."""
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


def _check_nifti_file(path: Path) -> None:
    """Checks SimpleITK and nibabel skip: zero or NaN voxel sizes (both read them as 1.0 mm), and
    voxel data cut short (SimpleITK fills the missing part with garbage)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as handle:
            header = nib.Nifti1Header.from_fileobj(handle, check=False)
    except Exception as exc:  # nibabel raises several types for broken headers
        raise InputError(f"{path}: not a readable NIfTI file ({first_line(exc)})") from None
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
