"""Finding the cases in what the user points at: a file, a folder of images, or DICOM folders."""

from __future__ import annotations

from pathlib import Path

from ichseg.errors import InputError
from ichseg.io.image import is_image_file


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    return folder.is_dir() and any(is_dicom_file(p) for p in folder.iterdir() if p.is_file())


def find_cases(path: str | Path) -> list[Path]:
    """Image files and DICOM series folders under ``path`` (one level deep), sorted by name.

    A file is one case; a folder holding DICOM files is one case; otherwise every image file and
    every DICOM sub-folder of the folder is a case.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() or is_dicom_folder(path):
        return [path]
    cases = sorted(p for p in path.iterdir() if is_image_file(p) or is_dicom_folder(p))
    if not cases:
        raise InputError(f"{path}: no NIfTI images or DICOM series found")
    return cases
