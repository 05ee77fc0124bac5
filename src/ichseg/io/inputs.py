"""Finding the cases in what the user points at: a file, a folder of images, or DICOM folders.

No entry is dropped silently: a broken symbolic link, a symbolic link loop, or a file or folder
that cannot be read is listed with its reason (:class:`InputScan`), so a batch reports it beside
its other failures. Hidden entries (temporary files, ``.DS_Store``) and files that are neither
images nor DICOM are not cases and are passed over.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ichseg.errors import InputError
from ichseg.io.image import IMAGE_SUFFIXES, is_image_file

#: Names a DICOM file may have besides those of images: ``.dcm`` or no extension at all.
_DICOM_SUFFIXES = (".dcm", ".ima")


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(is_dicom_file(p) for p in folder.iterdir() if p.is_file())
    except OSError:
        return False


@dataclass(frozen=True)
class InputScan:
    """The cases found, and the entries that could have been cases but cannot be read:
    ``problems`` are ``(entry name, one-line message naming the path)``."""

    cases: list[Path]
    problems: list[tuple[str, str]] = field(default_factory=list)


def scan_inputs(path: str | os.PathLike) -> InputScan:
    """Image files and DICOM series folders under ``path`` (one level deep), sorted by name.

    A file is one case; a folder holding DICOM files is one case; otherwise every image file and
    every DICOM sub-folder of the folder is a case. ``path`` itself missing or unreadable, or a
    folder with neither cases nor problems, raises :class:`InputError`.
    """
    path = Path(path)
    problem = entry_problem(path)
    if problem is not None:
        raise InputError(problem)
    if path.is_file() or is_dicom_folder(path):
        return InputScan([path])
    cases, problems = [], []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        problem = entry_problem(entry) or (_unreadable_member(entry) if entry.is_dir() else None)
        if problem is not None:
            problems.append((entry.name, problem))
        elif is_image_file(entry) or is_dicom_folder(entry):
            cases.append(entry)
    if not cases and not problems:
        raise InputError(f"{path}: no NIfTI images or DICOM series found")
    return InputScan(cases, problems)


def find_cases(path: str | os.PathLike) -> list[Path]:
    """The cases of :func:`scan_inputs`; an entry that cannot be read raises :class:`InputError`."""
    scan = scan_inputs(path)
    if scan.problems:
        raise InputError(scan.problems[0][1] if len(scan.problems) == 1 else
                         f"{path}: {len(scan.problems)} entries cannot be read, first: {scan.problems[0][1]}")
    return scan.cases


def entry_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input (a missing path, a broken or looping symbolic
    link, a file or folder without read permission), or None. Files that are neither images
    nor DICOM are not checked for reading: they are not cases."""
    try:
        target = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
        return f"{path}: no such file or folder"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{path}: symbolic link loop (its links lead back to themselves)"
        return f"{path}: cannot be read ({error.strerror})"
    if stat.S_ISDIR(target.st_mode):
        try:
            with os.scandir(path):
                pass
        except OSError as error:
            return f"{path}: folder cannot be read ({error.strerror})"
        return None
    if path.name.lower().endswith(IMAGE_SUFFIXES + _DICOM_SUFFIXES) or not path.suffix:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            return f"{path}: file cannot be read ({error.strerror})"
    return None


def _unreadable_member(folder: Path) -> str | None:
    """For a sub-folder that does not read as a DICOM series: the first of its files that
    cannot be read (a series whose files are all unreadable would otherwise vanish)."""
    if is_dicom_folder(folder):
        return None
    for member in sorted(folder.iterdir()):
        if not member.name.startswith("."):
            problem = entry_problem(member)
            if problem is not None and not member.is_dir():
                return problem
    return None
