"""Finding the cases in what the user points at: a file, a folder of images, or DICOM folders.

A DICOM folder may hold one series or a whole study (several series, side by side or in
sub-folders, or listed by a DICOMDIR): it is one case, whose series the series rules choose when
it is read (:mod:`ichseg.io.series_selection`), unless ``--series`` names one. With
``--all-series`` each eligible series of a study is a case of its own, named after the study and
the series number (``STUDY_s3``). A folder whose sub-folders hold the series of one study is
that study; sub-folders of different studies are cases each.

No entry is dropped silently: a broken symbolic link, a symbolic link loop, or a file or folder
that cannot be read is listed with its reason (:class:`InputScan`), so a batch reports it beside
its other failures. Hidden entries (temporary files, ``.DS_Store``) and files that are neither
images nor DICOM are not cases and are passed over.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ichseg.errors import IchsegError, InputError
from ichseg.io.image import (
    IMAGE_SUFFIXES,
    CTImage,
    case_name,
    is_dicomdir,
    is_image_file,
    load_image,
)

if TYPE_CHECKING:  # pydicom loads only when a DICOM input is read
    from ichseg.io.series_selection import SeriesInfo, SeriesRules, SeriesSelection

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
class CaseInput:
    """One case to segment: an image file, or a DICOM folder (or DICOMDIR) and which series.

    ``series_uid`` names the series (``--series``, or one of a study's series with
    ``--all-series``); None lets the series rules choose when the case is read. ``output_name``
    replaces the case name (one of a study's series); ``notes`` are lines to report when the case
    is read (what the rules made of its study's series).
    """

    path: Path
    series_uid: str | None = None
    output_name: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The entry in a batch's failure list: the file or folder name, or the case name of one
        of a study's series."""
        return self.output_name or self._source.name

    @property
    def case_name(self) -> str:
        """The name of the case's outputs."""
        return self.output_name or case_name(self._source)

    @property
    def _source(self) -> Path:
        return self.path.parent if is_dicomdir(self.path) else self.path

    def load(self, read: ReadOptions | None = None) -> tuple[CTImage, list[str]]:
        """The CT, and lines for the user: this case's notes, then, when the series rules chose
        among a study's series on reading, what they made of each (one line per series)."""
        read = read or ReadOptions()
        if self.path.is_file() and not is_dicomdir(self.path):
            return load_image(self.path), list(self.notes)
        from ichseg.io.dicom import load_dicom_series

        image = load_dicom_series(self.path, self.series_uid, selection=read.selection, allow_gaps=read.allow_gaps)
        if self.output_name is not None:
            image.metadata["case_name"] = self.output_name
        chosen = [f"{self.case_name}: {line}" for line in image.metadata.get("series_selection", [])]
        return image, [*self.notes, *chosen]


@dataclass(frozen=True)
class ReadOptions:
    """How each case is read: how a study's series is chosen (``selection``; None: ichseg's
    default rules, thickness not deciding), whether a DICOM series' missing slices are
    interpolated (``allow_gaps``) and whether CTs that do not look like Hounsfield units are
    segmented with a warning (``accept_intensities``)."""

    selection: SeriesSelection | None = None
    accept_intensities: bool = False
    allow_gaps: bool = False

    def manifest(self) -> dict[str, object]:
        """What of these decides a batch's masks, for its manifest."""
        return {"series_rules": self.selection.rules.source if self.selection is not None else None,
                "allow_gaps": self.allow_gaps}


@dataclass(frozen=True)
class InputScan:
    """The cases found, and the entries that could have been cases but cannot be read:
    ``problems`` are ``(entry name, one-line message naming the path)``; ``series`` and
    ``all_series`` say how a study's series were asked for (:func:`scan_inputs`)."""

    cases: list[CaseInput]
    problems: list[tuple[str, str]] = field(default_factory=list)
    series: str | None = None
    all_series: bool = False


def scan_inputs(path: str | os.PathLike, *, series: str | None = None, all_series: bool = False,
                rules: SeriesRules | None = None) -> InputScan:
    """Image files and DICOM inputs under ``path`` (one level deep), sorted by name.

    A file is one case (a DICOMDIR: its study); a folder holding DICOM files, or whose
    sub-folders hold the series of one study, is one case; otherwise every image file and every
    sub-folder holding DICOM files is a case. ``series`` names the SeriesInstanceUID to read in
    each DICOM case; ``all_series`` (not with ``series``) makes each series of a study that fits
    ``rules`` (default: ichseg's) a case (a study where none fits is a problem). ``path`` itself
    missing or unreadable, or a folder with neither cases nor problems, raises :class:`InputError`.
    """
    if series is not None and all_series:
        raise InputError("give a series (--series UID) or every eligible series (--all-series), not both")
    path = Path(path)
    problem = entry_problem(path)
    if problem is not None:
        raise InputError(problem)
    problems: list[tuple[str, str]]
    if path.is_file() or is_dicom_input(path):
        entries, problems = [path], []
    else:
        entries, problems = _entries(path)
    if not all_series:
        return InputScan([CaseInput(entry, series) for entry in entries], problems, series)
    cases = []
    for entry in entries:
        try:
            cases.extend(study_cases(entry, rules))
        except IchsegError as error:
            problems.append((entry.name, str(error)))
    return InputScan(cases, problems, all_series=True)


def _entries(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files and DICOM sub-folders of ``folder``, and those that cannot be read."""
    entries, problems = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        problem = entry_problem(entry) or (_unreadable_member(entry) if entry.is_dir() else None)
        if problem is not None:
            problems.append((entry.name, problem))
        elif is_image_file(entry) or (entry.is_dir() and _holds_dicom(entry)):
            entries.append(entry)
    if not entries and not problems:
        raise InputError(f"{folder}: no NIfTI images or DICOM series found")
    return entries, problems


def study_cases(path: Path, rules: SeriesRules | None = None) -> list[CaseInput]:
    """Each series of the DICOM input ``path`` that fits ``rules`` as a case of its own, in
    series-number order (an image file, or a folder of one series, stays one case)."""
    if path.is_file() and not is_dicomdir(path):
        return [CaseInput(path)]
    from ichseg.io.dicom import choose_in_folder, list_series
    from ichseg.io.series_selection import SeriesRules, SeriesSelection

    series = list_series(path)
    chosen, choice = choose_in_folder(path, series, selection=SeriesSelection(SeriesRules.coerce(rules)),
                                      all_series=True)
    study = CaseInput(path)
    if choice is None:
        return [study]
    notes = tuple(f"{study.case_name}: {line}" for line in choice.lines())
    names = series_case_names(study.case_name, [s for s in series if s in chosen])
    return [CaseInput(path, uid, name, notes if index == 0 else ())
            for index, (uid, name) in enumerate(names.items())]


def series_case_names(study: str, series: Sequence[SeriesInfo]) -> dict[str, str]:
    """Stable, distinct case names for a study's series, by UID: ``STUDY_s<SeriesNumber>``, or
    the description when there is no number; the end of the UID tells equal names apart."""
    names = {}
    for info in series:
        label = (f"s{info.number}" if info.number is not None
                 else re.sub(r"[^A-Za-z0-9]+", "-", info.description).strip("-") or "series")
        names[info.uid] = f"{study}_{label}"
    repeated = {name for name in names.values() if list(names.values()).count(name) > 1}
    return {uid: f"{name}_{uid.replace('.', '')[-8:]}" if name in repeated else name for uid, name in names.items()}


def find_cases(path: str | os.PathLike) -> list[Path]:
    """The cases of :func:`scan_inputs`; an entry that cannot be read raises :class:`InputError`."""
    scan = scan_inputs(path)
    if scan.problems:
        raise InputError(scan.problems[0][1] if len(scan.problems) == 1 else
                         f"{path}: {len(scan.problems)} entries cannot be read, first: {scan.problems[0][1]}")
    return [case.path for case in scan.cases]


def is_dicom_input(folder: Path) -> bool:
    """One DICOM case: a folder holding DICOM files (a DICOMDIR too), or holding no images and
    sub-folders whose DICOM files all belong to one study."""
    if is_dicom_folder(folder):
        return True
    if not folder.is_dir() or any(is_image_file(p) for p in folder.iterdir()):
        return False
    study, folders = None, 0
    for first in _first_dicom_per_folder(folder):
        uid = _study_uid(first)
        if uid is None or uid != (study or uid):
            return False
        study, folders = uid, folders + 1
    return folders >= 2


def _first_dicom_per_folder(folder: Path) -> Iterator[Path]:
    """The first DICOM file (by name, DICOMDIR files aside) of each folder below ``folder`` that
    holds some."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        candidates = (Path(root) / f for f in sorted(files) if not f.startswith(".") and f.upper() != "DICOMDIR")
        first = next((path for path in candidates if is_dicom_file(path)), None)
        if first is not None:
            yield first


def _holds_dicom(folder: Path) -> bool:
    return next(_first_dicom_per_folder(folder), None) is not None


def _study_uid(path: Path) -> str | None:
    """The StudyInstanceUID of a DICOM file, or None when it cannot be read."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
    except Exception:  # pydicom raises many types; reading the case reports the problem
        return None
    uid = header.get("StudyInstanceUID")
    return str(uid) if uid else None


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
