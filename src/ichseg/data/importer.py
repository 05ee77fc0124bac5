"""Import labelled CT data sets into the workspace as nnU-Net raw data sets.

Three source layouts are recognised:

* INSTANCE 2022: ``SOURCE/data/NAME.nii.gz`` with ``SOURCE/label/NAME.nii.gz`` (or ``.nii``); one
  class (0, 1) unless ``SOURCE/labels.json`` declares others (nnU-Net's ``labels``, name -> value,
  as ``ichseg synth --subtypes`` writes);
* nnU-Net raw: ``SOURCE/dataset.json``, ``SOURCE/imagesTr/NAME_0000.EXT``, ``SOURCE/labelsTr/NAME.EXT``
  with one channel and the classes its ``labels`` declare (v2's name -> value, or v1's value -> name);
* BHSD (and MBH-Seg, which uses its convention): ``SOURCE/images/NAME.nii.gz`` with
  ``SOURCE/ground truths/NAME.nii.gz`` (``ground_truths/`` also), as the ``label_192`` archive of
  the BHSD release unpacks (https://github.com/White65534/BHSD, Hugging Face ``WuBiao/BHSD``);
  labels 0 background, 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH, ichseg's own subtype values.

A :class:`~ichseg.labels.LabelMapping` (``labels``, ``ichseg import --labels``) replaces what the
source declares, for sources numbered another way. The imported data set holds ichseg's values:
0/1 for one class, or the five subtypes (:data:`ichseg.labels.SUBTYPES`), named in its
``dataset.json``.

Every image/label pair is read and checked before anything is kept: both files readable 3D
volumes, the same shape, spacing, direction and origin, only declared label values, CT values
in HU (:func:`ichseg.io.hu_checks.check_intensities`; ``accept_intensities`` makes its refusals
warnings). All
problems are gathered into one :class:`InputError`, so a user fixes a data set in one round. The
data set is built in a temporary folder and renamed into place, so a failed or interrupted import
leaves nothing behind. Images and labels are reoriented to
:data:`ichseg.io.image.CANONICAL_ORIENTATION`, the orientation every model sees.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ichseg.atomic import atomic_dir, check_output_dir, refuse_existing, write_json
from ichseg.errors import InputError
from ichseg.io.hu_checks import check_intensities
from ichseg.io.image import (
    CANONICAL_ORIENTATION,
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    CTImage,
    case_name,
    load_image,
    save_image,
    save_mask,
)
from ichseg.io.inputs import entry_problem
from ichseg.jsonfile import read_json
from ichseg.labels import (
    ONE_CLASS,
    SUBTYPES,
    LabelError,
    LabelMapping,
    LabelScheme,
    declared_label_mapping,
    parse_label_mapping,
)
from ichseg.progress import progress_bar
from ichseg.version import __version__
from ichseg.workspace import Workspace

#: Channel name that makes nnU-Net apply its CT normalisation.
CT_CHANNEL = "CT"
#: The file beside data/ and label/ that declares an INSTANCE-layout source's classes.
LABELS_FILE = "labels.json"
#: BHSD's folder of label files; some copies replace the space by an underscore.
BHSD_LABEL_FOLDERS = ("ground truths", "ground_truths")
OUTPUT_ENDING = ".nii.gz"

#: How far a label's geometry may stray from its image's (float32 headers round-trip inexactly).
SPACING_TOLERANCE_MM = 1e-3
ORIGIN_TOLERANCE_MM = 1e-2
DIRECTION_TOLERANCE = 1e-3

#: Cases read at once; reading and compressing dominate and release the GIL in SimpleITK.
READER_THREADS = 2

_INT16 = np.iinfo(np.int16)
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class ImportedDataset:
    """A data set now in the workspace, ready for ``ichseg plan``."""

    name: str
    folder: Path
    folder_name: str
    cases: list[str]
    warnings: list[str] = field(default_factory=list)
    #: The classes of its labels, as its ``dataset.json`` names them.
    labels: LabelScheme = ONE_CLASS

    @property
    def n_cases(self) -> int:
        return len(self.cases)


@dataclass(frozen=True)
class CasePair:
    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be imported; ``text`` is a full line naming the file."""

    file: Path
    text: str


@dataclass(frozen=True)
class SourceScan:
    """What was found in a source folder before any image is read."""

    layout: str
    pairs: list[CasePair]
    problems: list[Problem]
    labels: LabelMapping


def import_dataset(source: str | os.PathLike, name: str,
                   workspace: Workspace | str | os.PathLike | None = None, *,
                   overwrite: bool = False, progress: bool = True,
                   accept_intensities: bool = False,
                   labels: LabelMapping | str | None = None) -> ImportedDataset:
    """Check every case of ``source`` and copy the data set into ``workspace`` as ``name``.

    ``labels`` (a mapping or ``--labels`` text, :func:`ichseg.labels.parse_label_mapping`) says
    which class each of the source's label values is, in place of what the source declares.
    Raises, before any case is read, :class:`~ichseg.labels.LabelError` for unusable ``labels``,
    :class:`OutputExistsError` if the data set exists and ``overwrite`` is false and
    :class:`OutputPathError` if the workspace cannot be written; then
    :class:`InputError` listing every problem found (nothing is imported then). Unusual but
    possible CT values are returned as :attr:`ImportedDataset.warnings`.
    """
    if isinstance(labels, str):
        labels = parse_label_mapping(labels)
    workspace = Workspace.coerce(workspace)
    folder_name = workspace.new_dataset_folder_name(name)
    destination = workspace.raw / folder_name
    refuse_existing(destination, overwrite)
    check_output_dir(destination, overwrite=True, what="data set folder")
    source = Path(source).expanduser().absolute()
    scan = _scan_source(source, labels)
    if not scan.pairs:
        if scan.problems:
            raise _failure(scan.problems)
        raise InputError(f"{source}: no cases found ({scan.layout} layout)")
    with atomic_dir(destination, overwrite) as staging:
        problems, warnings = _import_cases(scan.pairs, scan.labels, staging, progress,
                                           write=not scan.problems, accept_intensities=accept_intensities)
        if scan.problems or problems:
            raise _failure(scan.problems + problems)
        cases = [pair.name for pair in scan.pairs]
        write_json(staging / "dataset.json", _dataset_json(name, len(cases), source, scan))
    stale_plans = workspace.preprocessed / folder_name
    if stale_plans.exists():  # plans of the replaced data set would no longer fit
        shutil.rmtree(stale_plans)
    return ImportedDataset(name=name, folder=destination, folder_name=folder_name, cases=cases,
                           warnings=warnings, labels=scan.labels.scheme)


def _scan_source(source: Path, labels: LabelMapping | None) -> SourceScan:
    """Recognise the layout of ``source`` and pair its image and label files by case name;
    ``labels``, if given, replaces the classes the source declares."""
    problem = entry_problem(source)
    if problem is not None:
        raise InputError(problem)
    if not source.is_dir():
        raise InputError(f"{source}: not a folder")
    if (source / "dataset.json").is_file():
        return _scan_nnunet_raw(source, labels)
    if (source / "data").is_dir() and (source / "label").is_dir():
        return _scan_folders(source, "INSTANCE", "data", "label",
                             labels or _labels_file_mapping(source / LABELS_FILE))
    bhsd_labels = next((name for name in BHSD_LABEL_FOLDERS if (source / name).is_dir()), None)
    if (source / "images").is_dir() and bhsd_labels is not None:
        return _scan_folders(source, "BHSD", "images", bhsd_labels, labels or LabelMapping.identity(SUBTYPES))
    raise InputError(f"{source}: not a data set folder: expected data/ and label/ (INSTANCE layout), "
                     f"dataset.json, imagesTr/ and labelsTr/ (nnU-Net raw layout) or images/ and "
                     f"'ground truths'/ (BHSD layout)")


def _scan_folders(source: Path, layout: str, image_folder: str, label_folder: str,
                  labels: LabelMapping) -> SourceScan:
    """A layout of one folder of images and one of labels, paired by file name."""
    images = _files_by_case(source / image_folder, NIFTI_SUFFIXES, case_name)
    label_files = _files_by_case(source / label_folder, NIFTI_SUFFIXES, case_name)
    pairs, problems = _pair_files(images, label_files, source / image_folder, source / label_folder)
    return SourceScan(layout, pairs, problems, labels)


def _labels_file_mapping(path: Path) -> LabelMapping:
    """The classes ``labels.json`` declares; one class (0, 1) without the file."""
    if not path.exists():
        return LabelMapping.identity(ONE_CLASS)
    declared = read_json(path, InputError, "labels")
    if not isinstance(declared, dict):
        raise InputError(f"{path}: expected nnU-Net's labels, an object of class names and values")
    try:
        return declared_label_mapping(declared, str(path))
    except LabelError as error:
        raise InputError(str(error)) from None


def _scan_nnunet_raw(source: Path, labels: LabelMapping | None) -> SourceScan:
    dataset_json = source / "dataset.json"
    description = read_json(dataset_json, InputError, "nnU-Net's data set description")
    if not isinstance(description, dict):
        raise InputError(f"{dataset_json}: expected a JSON object")
    ending = description.get("file_ending", OUTPUT_ENDING)
    if not isinstance(ending, str) or not ending.lower().endswith(IMAGE_SUFFIXES):
        raise InputError(f"{dataset_json}: file_ending {ending!r} is not a 3D image format "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    for folder in ("imagesTr", "labelsTr"):
        if not (source / folder).is_dir():
            raise InputError(f"{source}: dataset.json found but no {folder}/ folder")
    problems, declared = _dataset_json_problems(dataset_json, description, labels)
    channel_files = _files_by_case(source / "imagesTr", (ending,), lambda p: p.name[:-len(ending)])
    images: dict[str, list[Path]] = {}
    for stem, paths in channel_files.items():
        match = _CHANNEL_FILE.match(stem)
        for path in paths:
            if match is None:
                problems.append(Problem(path, f"{path}: not named CASE_0000{ending}"))
            elif match["channel"] != "0000":
                problems.append(Problem(path, f"{path}: channel {match['channel']}; ichseg imports "
                                              f"single-channel CT (CASE_0000{ending}) only"))
            else:
                images.setdefault(match["case"], []).append(path)
    label_files = _files_by_case(source / "labelsTr", (ending,), lambda p: p.name[:-len(ending)])
    pairs, pair_problems = _pair_files(images, label_files, source / "imagesTr", source / "labelsTr")
    return SourceScan("nnU-Net raw", pairs, problems + pair_problems, declared)


def _dataset_json_problems(path: Path, description: dict, labels: LabelMapping | None
                           ) -> tuple[list[Problem], LabelMapping]:
    """Reject descriptions of data sets that are not one-channel or whose classes ichseg does
    not know; return the problems and the declared classes (``labels`` if given)."""
    problems = []
    channels = description.get("channel_names", description.get("modality"))  # v2, v1
    if not isinstance(channels, dict) or len(channels) != 1:
        problems.append(Problem(path, f"{path}: channel_names {channels}; ichseg imports data sets "
                                      f"with exactly one (CT) channel"))
    if labels is not None:
        return problems, labels
    declared = description.get("labels")
    if not isinstance(declared, dict):
        problems.append(Problem(path, f"{path}: labels {declared!r}: expected an object of class "
                                      f"names and values"))
        return problems, LabelMapping.identity(ONE_CLASS)
    try:
        return problems, declared_label_mapping(declared, f"{path}: labels")
    except LabelError as error:
        problems.append(Problem(path, f"{error} (or give each value's class with --labels)"))
        return problems, LabelMapping.identity(ONE_CLASS)


def _files_by_case(folder: Path, endings: tuple[str, ...],
                   name_of: Callable[[Path], str]) -> dict[str, list[Path]]:
    """Image files of ``folder`` grouped by case name; hidden files and other files are ignored
    (broken or looping links with an image's name are kept: reading them reports them)."""
    problem = entry_problem(folder)
    if problem is not None:
        raise InputError(problem)
    endings = tuple(ending.lower() for ending in endings)
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_dir() and not path.name.startswith(".") and path.name.lower().endswith(endings):
            found.setdefault(name_of(path), []).append(path)
    return found


def _pair_files(images: dict[str, list[Path]], labels: dict[str, list[Path]],
                image_folder: Path, label_folder: Path) -> tuple[list[CasePair], list[Problem]]:
    """Match images and labels by case name; every unmatched or doubled file is a problem."""
    pairs: list[CasePair] = []
    problems: list[Problem] = []
    for name in sorted(images.keys() | labels.keys()):
        case_images, case_labels = images.get(name, []), labels.get(name, [])
        for files in (case_images, case_labels):
            if len(files) > 1:
                problems.extend(Problem(f, f"{f}: case {name!r} has {len(files)} files "
                                           f"({', '.join(p.name for p in files)})") for f in files)
        if not case_labels:
            problems.extend(Problem(f, f"{f}: no label for case {name!r} in {label_folder}")
                            for f in case_images)
        elif not case_images:
            problems.extend(Problem(f, f"{f}: no image for case {name!r} in {image_folder}")
                            for f in case_labels)
        elif len(case_images) == len(case_labels) == 1:
            pairs.append(CasePair(name, case_images[0], case_labels[0]))
    return pairs, problems


def _import_cases(pairs: list[CasePair], labels: LabelMapping, staging: Path, progress: bool,
                  write: bool, accept_intensities: bool) -> tuple[list[Problem], list[str]]:
    """Read and check every pair, writing cases into ``staging`` until the first problem;
    return the problems and the intensity warnings."""
    failed = threading.Event()
    if not write:
        failed.set()

    def import_case(pair: CasePair) -> tuple[list[Problem], list[str]]:
        image, label, problems, warnings = _read_and_check(pair, labels, accept_intensities)
        if problems:
            failed.set()
        elif not failed.is_set():
            assert image is not None and label is not None  # both read: a file that is not gives a problem
            _write_case(pair.name, image, label.with_array(labels.apply(label.array)), staging)
        return problems, warnings

    executor = ThreadPoolExecutor(max_workers=READER_THREADS)
    try:
        results = list(progress_bar(executor.map(import_case, pairs), "Importing cases", progress,
                                    total=len(pairs)))
        return ([problem for case_problems, _ in results for problem in case_problems],
                [warning for _, case_warnings in results for warning in case_warnings])
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _read_and_check(pair: CasePair, labels: LabelMapping, accept_intensities: bool
                    ) -> tuple[CTImage | None, CTImage | None, list[Problem], list[str]]:
    images: list[CTImage | None] = []
    problems: list[Problem] = []
    warnings: list[str] = []
    for path in (pair.image, pair.label):
        try:
            problem = entry_problem(path)
            if problem is not None:
                raise InputError(problem)
            images.append(load_image(path))
        except InputError as error:
            images.append(None)
            problems.append(Problem(path, str(error)))
    image, label = images
    if image is not None:
        try:
            warnings = check_intensities(image, accept=accept_intensities)
        except InputError as error:
            problems.append(Problem(pair.image, str(error)))
    if label is not None:
        problems.extend(Problem(pair.label, f"{pair.label}: {text}")
                        for text in _label_problems(label, labels))
        if image is not None:
            problems.extend(Problem(pair.label, f"{pair.label}: {text}")
                            for text in _geometry_differences(label, image))
    return image, label, problems, warnings


def _label_problems(label: CTImage, labels: LabelMapping) -> list[str]:
    values, voxels = labels.undeclared_values(label.array)
    if not voxels:
        return []
    shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
    declared = [str(v) for v in labels.source_values]
    allowed = ", ".join(declared[:-1]) + f" and {declared[-1]}"
    return [f"label values other than {allowed} ({shown} in {voxels} voxels)"]


def _geometry_differences(label: CTImage, image: CTImage) -> list[str]:
    """How the label's voxel grid differs from its image's, one sentence per property."""
    if label.shape != image.shape:
        return [f"shape {_fmt(label.shape)} (z, y, x) differs from the image's {_fmt(image.shape)}"]
    differences = []
    if not np.allclose(label.spacing, image.spacing, rtol=0, atol=SPACING_TOLERANCE_MM):
        differences.append(f"spacing {_fmt(label.spacing)} mm (z, y, x) differs from the image's "
                           f"{_fmt(image.spacing)}")
    if not np.allclose(label.direction, image.direction, rtol=0, atol=DIRECTION_TOLERANCE):
        differences.append(f"orientation {label.orientation} (direction {_fmt(label.direction)}) "
                           f"differs from the image's {image.orientation} ({_fmt(image.direction)})")
    if not np.allclose(label.origin, image.origin, rtol=0, atol=ORIGIN_TOLERANCE_MM):
        differences.append(f"origin {_fmt(label.origin)} mm differs from the image's "
                           f"{_fmt(image.origin)}")
    return differences


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _write_case(name: str, image: CTImage, label: CTImage, folder: Path) -> None:
    """Write a checked pair in canonical orientation; the label takes the image's exact geometry."""
    image = image.reoriented(CANONICAL_ORIENTATION)
    label = label.reoriented(CANONICAL_ORIENTATION)
    save_image(image.with_array(_ct_array(image.array)),
               folder / "imagesTr" / f"{name}_0000{OUTPUT_ENDING}")
    save_mask(image, label.array, folder / "labelsTr" / f"{name}{OUTPUT_ENDING}")


def _ct_array(array: np.ndarray) -> np.ndarray:
    """HU as int16 when every value is a whole number that fits, else float32."""
    integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(np.mod(array, 1) == 0))
    if integral and _INT16.min <= array.min() and array.max() <= _INT16.max:
        return array.astype(np.int16, copy=False)
    return array.astype(np.float32, copy=False)


def _dataset_json(name: str, n_cases: int, source: Path, scan: SourceScan) -> dict:
    """nnU-Net's description of the imported data set; unless the source was one class in 0/1
    (then it is as it always was), ``ichseg.source_labels`` records how its values were read."""
    provenance = {
        "source": str(source),
        "layout": scan.layout,
        "orientation": CANONICAL_ORIENTATION,
        "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": __version__,
    }
    if scan.labels != LabelMapping.identity(ONE_CLASS):
        provenance["source_labels"] = str(scan.labels)
    return {
        "name": name,
        "channel_names": {"0": CT_CHANNEL},
        "labels": scan.labels.scheme.to_dataset_json(),
        "numTraining": n_cases,
        "file_ending": OUTPUT_ENDING,
        "ichseg": provenance,
    }


def _failure(problems: list[Problem]) -> InputError:
    """One error listing every problem, grouped by file; its first line counts the files."""
    problems = sorted(problems, key=lambda problem: str(problem.file))
    n_files = len({problem.file for problem in problems})
    header = (f"{n_files} file{'s' if n_files != 1 else ''} failed the import checks; "
              f"nothing was imported:")
    return InputError("\n".join([header] + [f"  {problem.text}" for problem in problems]))
