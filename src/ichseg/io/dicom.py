"""DICOM CT series: list the series in a folder, load one in Hounsfield units, write one.

A folder (or a DICOMDIR) may hold a whole study; the series to read is then chosen by the series
selection rules (:mod:`ichseg.io.series_selection`), or named by its SeriesInstanceUID.

pydicom reads the headers and ichseg checks the geometry itself before any voxel is used, because
SimpleITK stacks a series with a missing slice at an averaged spacing, silently drops files it
cannot decode and reads a gantry-tilted series without its shear (DESIGN §9). A series is refused,
with one line naming the series and the problem, when a file is corrupt, a slice is missing, two
slices lie at one position, the slices disagree on orientation, size or pixel spacing, or the
modality is not CT. A series of single-frame files and an enhanced CT (one multi-frame file,
:mod:`ichseg.io.enhanced_ct`) are read alike.

Slices are ordered by their position along the slice normal. A gantry-tilted (sheared) series and
one whose slice steps vary are resampled onto an orthogonal, equidistant grid
(:mod:`ichseg.io.dicom_geometry`); ``metadata["dicom"]["geometry"]`` says what was done, and
``metadata["dicom"]["source_slices"]`` keeps each source slice (file, frame, UIDs, position,
orientation), so that a DICOM-SEG can be made on the slices as they were sent. For a series that
needs no correction, the array's z axis is the slice order, and ``metadata["dicom"]["files"]``
and ``metadata["dicom"]["SOPInstanceUIDs"]`` (the source instances, in slice order) follow it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ichseg.atomic import atomic_dir
from ichseg.errors import InputError, first_line
from ichseg.io.ctimage import CTImage, is_dicomdir
from ichseg.io.dicom_geometry import (
    AIR_HU,
    SliceGrid,
    SourceSlice,
    header_pair,
    header_point,
    plan_grid,
    sort_along_normal,
)
from ichseg.io.enhanced_ct import (
    frame_rescale,
    frame_slices,
    frames_hu,
    has_one_rescale,
    is_multi_frame_ct,
)
from ichseg.io.series_selection import SeriesChoice, SeriesInfo, SeriesSelection, choose_series

#: Header attributes that identify a patient, a visit or the people and places involved. They go
#: to ``metadata["identifiers"]`` and reach an output only when the user asks for them.
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "PatientSex", "PatientAge",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "AcquisitionDate",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "StationName", "DeviceSerialNumber",
)

#: Header attributes that describe the acquisition without identifying anyone.
SERIES_KEYWORDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "Modality",
    "SeriesNumber", "SeriesDescription", "BodyPartExamined", "Manufacturer",
    "ManufacturerModelName", "SliceThickness", "KVP", "ConvolutionKernel", "ImageType",
)

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Orientation cosines and pixel spacings of one series may differ by this much.
_COSINE_TOLERANCE = 1e-4
_SPACING_TOLERANCE_MM = 1e-3


def list_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """The DICOM series in ``folder`` and its subfolders, ordered by series number.

    ``folder`` may also be a DICOMDIR file, or hold one: then the files it lists are the study
    (a missing one is an error). Otherwise files that are not DICOM (no ``DICM`` marker) are
    ignored unless their name says DICOM; a DICOM file whose header cannot be parsed is an error,
    since it may be a lost slice.
    """
    folder = Path(folder)
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, header in _read_headers(folder):
        groups.setdefault(str(header.SeriesInstanceUID), []).append((path, header))
    if not groups:
        raise InputError(f"{folder}: no DICOM files found")
    series = [_series_info(uid, members) for uid, members in groups.items()]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))


def load_dicom_series(folder: str | os.PathLike, series_uid: str | None = None, *,
                      selection: SeriesSelection | None = None, allow_gaps: bool = False) -> CTImage:
    """Read one CT series of ``folder`` (or of a DICOMDIR) as HU (stored × RescaleSlope +
    RescaleIntercept).

    ``series_uid`` picks the series; without it, a folder holding one series gives that one, and
    a study is decided by ``selection``'s rules (default: ichseg's, thickness not deciding).
    What the rules made of each series is kept, one line per series, in
    ``metadata["series_selection"]``. No eligible series: an error that gives every series' reason.
    A gantry-tilted series, or one whose slice steps vary, comes back on an orthogonal,
    equidistant grid; missing slices are refused unless ``allow_gaps`` (then interpolated).
    """
    folder = Path(folder)
    chosen, choice = choose_in_folder(folder, list_series(folder), series_uid, selection)
    image = _load_series(folder.parent if is_dicomdir(folder) else folder, chosen[0], allow_gaps)
    if choice is not None:
        image.metadata["series_selection"] = choice.lines()
    return image


def choose_in_folder(folder: Path, series: list[SeriesInfo], series_uid: str | None = None,
                     selection: SeriesSelection | None = None,
                     all_series: bool = False) -> tuple[list[SeriesInfo], SeriesChoice | None]:
    """The series of ``folder`` to read (see :func:`load_dicom_series`; every eligible one with
    ``all_series``), and the rules' verdicts when they decided."""
    if series_uid is not None:
        for candidate in series:
            if candidate.uid == series_uid:
                return [candidate], None
        listing = "; ".join(s.describe() for s in series)
        raise InputError(f"{folder}: no series {series_uid} (found: {listing})")
    if len(series) == 1:
        return series, None
    selection = selection or SeriesSelection()
    choice = choose_series(series, selection.rules, selection.target_thickness_mm, all_series)
    if not choice.chosen:
        reasons = "; ".join(f"{v.series.label()}: {v.reason}" for v in choice.verdicts)
        raise InputError(f"{folder}: none of its {len(series)} series fits the series rules "
                         f"({selection.rules.source}): {reasons}; choose one with --series UID")
    by_uid = {s.uid: s for s in series}
    return [by_uid[uid] for uid in choice.chosen], choice


def _dicom_files(folder: Path) -> list[Path]:
    """The files of a DICOMDIR (``folder`` is one, or holds one), else every file below."""
    dicomdir = folder if is_dicomdir(folder) else folder / "DICOMDIR"
    if not dicomdir.is_file():
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder")
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    try:
        records = pydicom.dcmread(dicomdir).get("DirectoryRecordSequence") or []
    except Exception as exc:  # pydicom raises many types for a damaged DICOMDIR
        raise InputError(f"{dicomdir}: unreadable DICOMDIR ({first_line(exc)})") from None
    files = []
    for record in records:  # file IDs are path components relative to the DICOMDIR's folder
        file_id = record.get("ReferencedFileID")
        if file_id:
            path = dicomdir.parent.joinpath(*([file_id] if isinstance(file_id, str) else file_id))
            if not path.is_file():
                raise InputError(f"{dicomdir}: lists {path}, which does not exist")
            files.append(path)
    return list(dict.fromkeys(files))


def _read_headers(folder: Path) -> list[tuple[Path, Dataset]]:
    headers: list[tuple[Path, Dataset]] = []
    for path in _dicom_files(folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            if path.suffix.lower() in _DICOM_SUFFIXES:
                raise InputError(f"{path}: not a valid DICOM file (no DICOM header)") from None
            continue
        except Exception as exc:  # pydicom raises many types for damaged files
            raise InputError(f"{path}: corrupt DICOM file ({first_line(exc)})") from None
        media_class = getattr(getattr(header, "file_meta", None), "MediaStorageSOPClassUID", None)
        if media_class == _DICOMDIR_CLASS:
            continue
        if "SeriesInstanceUID" not in header:
            raise InputError(f"{path}: corrupt DICOM file (no SeriesInstanceUID)")
        headers.append((path, header))
    return headers


def _series_info(uid: str, members: list[tuple[Path, Dataset]]) -> SeriesInfo:
    header = members[0][1]
    number = header.get("SeriesNumber")
    thickness = _find(header, "SliceThickness")
    return SeriesInfo(
        uid=uid,
        number=int(number) if number not in (None, "") else None,
        description=str(header.get("SeriesDescription", "") or ""),
        modality=str(header.get("Modality", "") or ""),
        files=tuple(path for path, _ in members),
        study_uid=str(header.get("StudyInstanceUID", "") or ""),
        sop_class=str(header.get("SOPClassUID", "") or ""),
        image_type=_strings(header.get("ImageType")),
        kernel=_strings(_find(header, "ConvolutionKernel")),
        kernel_group=str(_find(header, "ConvolutionKernelGroup") or ""),
        manufacturer=str(header.get("Manufacturer", "") or ""),
        thickness_mm=float(thickness) if thickness not in (None, "") else None,
        n_slices=sum(int(h.get("NumberOfFrames", 1) or 1) for _, h in members),
        normal=_normal(_find(header, "ImageOrientationPatient")),
    )


def _find(header: Dataset, keyword: str) -> Any:
    """An attribute of the dataset, or of its first frame's functional groups (enhanced CT keeps
    orientation, thickness and kernel there: shared, else per frame)."""
    if keyword in header:
        return header.get(keyword)
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for macro in (header.get(groups) or [Dataset()])[0]:
            if macro.VR == "SQ" and macro.value and keyword in macro.value[0]:
                return macro.value[0].get(keyword)
    return None


def _strings(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    values = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    return tuple(str(v).strip() for v in values if v is not None)


def _normal(orientation: Sequence[float] | None) -> tuple[float, float, float] | None:
    if orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    length = float(np.linalg.norm(normal))
    if not np.isfinite(length) or length == 0:
        return None
    return tuple(float(v) for v in normal / length)  # type: ignore[return-value]


def _load_series(folder: Path, info: SeriesInfo, allow_gaps: bool = False) -> CTImage:
    where = f"{folder}: series {info.uid} ('{info.description}')"
    if info.modality != "CT":
        raise InputError(f"{where}: modality is {info.modality or 'missing'}, expected CT")
    datasets = [_read_full(path, where) for path in info.files]
    slices = [plane for path, ds in zip(info.files, datasets, strict=True) for plane in _source_slices(ds, path, where)]
    _check_same(slices, where)
    slices = sort_along_normal(slices)
    grid = plan_grid(slices, where, allow_gaps=allow_gaps)
    frames = {path: _hu_frames(ds, path, where) for path, ds in zip(info.files, datasets, strict=True)}
    stack = np.stack([frames[plane.file][(plane.frame or 1) - 1] for plane in slices])
    del frames
    return CTImage(
        array=grid.resample(stack, _fill_hu(datasets[0])),
        spacing=grid.spacing,
        origin=tuple(float(v) for v in grid.origin),  # type: ignore[arg-type]
        direction=grid.direction,
        source=folder,
        metadata={"dicom": _series_metadata(datasets[0], slices, grid),
                  "identifiers": _identifiers(datasets[0])},
    )


def _read_full(path: Path, where: str) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # damaged after listing, or unreadable past the header
        raise InputError(f"{where}: file {path.name} is corrupt ({first_line(exc)})") from None


def _source_slices(ds: Dataset, path: Path, where: str) -> list[SourceSlice]:
    """The image planes of one file: itself, or each frame of an enhanced CT."""
    if is_multi_frame_ct(ds):
        _require(ds, ("Rows", "Columns", "PixelData"), path, where)
        return frame_slices(ds, path, where)
    _require(ds, ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
                  "PixelData"), path, where)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{where}: file {path.name} is a multi-frame image, "
                         f"expected one slice per file or an enhanced CT")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(f"{where}: file {path.name} is not a grey-scale image")
    return [SourceSlice(file=path, sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                        sop_class_uid=str(ds.get("SOPClassUID", "")), frame=None,
                        position=header_point(ds.ImagePositionPatient),
                        orientation=tuple(float(v) for v in ds.ImageOrientationPatient),
                        pixel_spacing=header_pair(ds.PixelSpacing),
                        rows=int(ds.Rows), columns=int(ds.Columns))]


def _require(ds: Dataset, keywords: Sequence[str], path: Path, where: str) -> None:
    for keyword in keywords:
        if ds.get(keyword) in (None, ""):
            raise InputError(f"{where}: file {path.name} has no {keyword}")


def _check_same(slices: list[SourceSlice], where: str) -> None:
    """All slices must share orientation, matrix size and pixel spacing."""
    first = slices[0]
    for plane in slices[1:]:
        if not np.allclose(plane.orientation, first.orientation, atol=_COSINE_TOLERANCE):
            raise InputError(f"{where}: inconsistent orientation, file {plane.name} has "
                             f"ImageOrientationPatient {list(plane.orientation)} and "
                             f"{first.name} {list(first.orientation)}")
        if (plane.rows, plane.columns) != (first.rows, first.columns):
            raise InputError(f"{where}: inconsistent image size, file {plane.name} is "
                             f"{plane.rows}x{plane.columns} and {first.name} "
                             f"{first.rows}x{first.columns}")
        if not np.allclose(plane.pixel_spacing, first.pixel_spacing, atol=_SPACING_TOLERANCE_MM):
            raise InputError(f"{where}: inconsistent pixel spacing, file {plane.name} has "
                             f"{list(plane.pixel_spacing)} mm and {first.name} "
                             f"{list(first.pixel_spacing)} mm")


def _hu_frames(ds: Dataset, path: Path, where: str) -> np.ndarray:
    """The file's frames (frames, rows, columns) in HU; compressed pixel data pydicom has no
    decoder for goes through GDCM."""
    syntax = ds.file_meta.get("TransferSyntaxUID")  # dcmread always sets file_meta
    multi = is_multi_frame_ct(ds)
    expected = (int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns))
    try:
        stored = ds.pixel_array
    except Exception as exc:  # missing decoder, truncated or malformed pixel data
        if syntax is not None and syntax.is_compressed and (not multi or has_one_rescale(ds)):
            return _hu_gdcm(path, where, syntax, expected)
        raise InputError(f"{where}: pixel data of file {path.name} cannot be decoded "
                         f"({first_line(exc)})") from None
    if stored.size != np.prod(expected) or stored.shape[-2:] != expected[1:]:
        raise InputError(f"{where}: file {path.name} holds pixel data of shape {stored.shape}, "
                         f"expected {ds.Rows}x{ds.Columns}")
    stored = stored.reshape(expected)
    if multi:
        return frames_hu(ds, stored)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def _hu_gdcm(path: Path, where: str, syntax: Any, expected: tuple[int, int, int]) -> np.ndarray:
    """SimpleITK's GDCM decodes JPEG lossless and other syntaxes and applies the rescale itself
    (one rescale per file: an enhanced CT whose frames differ is not decoded here)."""
    import SimpleITK as sitk

    try:
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError:
        raise InputError(f"{where}: pixel data of file {path.name} ({syntax.name}) cannot be "
                         f"decoded") from None
    if pixels.shape != expected:
        raise InputError(f"{where}: file {path.name} holds pixel data of shape {pixels.shape}, "
                         f"expected {expected[1]}x{expected[2]}")
    return pixels.astype(np.float32)


def _fill_hu(ds: Dataset) -> float:
    """What fills the grid where no slice reaches: the series' padding value in HU, else air."""
    padding = ds.get("PixelPaddingValue")
    if padding in (None, ""):
        return AIR_HU
    if is_multi_frame_ct(ds):
        slope, intercept = frame_rescale(ds, 0)
    else:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return float(padding) * slope + intercept


def _series_metadata(first: Dataset, slices: list[SourceSlice], grid: SliceGrid) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for keyword in SERIES_KEYWORDS:
        value = first.get(keyword)
        if value not in (None, ""):
            info[keyword] = _plain(value)
    instances = list(dict.fromkeys((str(plane.file), plane.sop_instance_uid) for plane in slices))
    info["SOPInstanceUIDs"] = [uid for _, uid in instances]
    info["files"] = [file for file, _ in instances]
    info["source_slices"] = [plane.as_metadata() for plane in slices]
    info["geometry"] = grid.describe()
    return info


def _identifiers(ds: Dataset) -> dict[str, str]:
    return {keyword: str(ds.get(keyword)) for keyword in IDENTIFYING_KEYWORDS
            if ds.get(keyword) not in (None, "")}


def _plain(value: Any) -> Any:
    """DICOM values as JSON types: numbers stay numbers, multi-values become lists."""
    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, int) else float(value)
    return str(value)


def write_ct_series(image: CTImage, folder: str | os.PathLike, *,
                    patient_name: str = "PHANTOM^ICHSEG", patient_id: str = "ICHSEG-PHANTOM",
                    series_description: str = "ichseg phantom", series_number: int = 1,
                    rescale_slope: float = 1.0, rescale_intercept: float = -1024.0,
                    attributes: Mapping[str, Any] | None = None,
                    positions: Sequence[Sequence[float]] | None = None,
                    overwrite: bool = False) -> Path:
    """Write ``image`` (HU) as a CT series of int16 slices, one file per z index.

    Each slice's position is ``origin + k × spacing_z × (z axis)``, so loading the folder gives
    back the same geometry; ``positions`` (one ImagePositionPatient per slice) place the slices
    elsewhere, as scanners do (a gantry tilt's sheared stack, slice steps that vary; the image's
    x and y axes stay the slices' orientation). HU are stored as ``round((HU - intercept) /
    slope)``; a value that does not fit in int16 is an error. ``attributes`` (DICOM keyword → value) are set on every
    slice, after the defaults: use them for further identifiers or to craft test cases.
    """
    stored = np.round((np.asarray(image.array, np.float64) - rescale_intercept) / rescale_slope)
    info = np.iinfo(np.int16)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"HU range {image.array.min()}..{image.array.max()} does not fit in int16 "
                         f"with slope {rescale_slope} and intercept {rescale_intercept}")
    stored = stored.astype(np.int16)
    axes = np.asarray(image.direction, float).reshape(3, 3)
    if positions is None:
        positions = [(np.asarray(image.origin, float) + k * image.spacing[0] * axes[:, 2]).tolist()
                     for k in range(stored.shape[0])]
    if len(positions) != stored.shape[0]:
        raise ValueError(f"{len(positions)} positions for {stored.shape[0]} slices")
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now()
    with atomic_dir(folder, overwrite) as tmp:
        for k, position in enumerate(positions):
            ds = _ct_slice(stored[k], np.asarray(position, float), axes, image.spacing)
            for keyword, value in {
                "PatientName": patient_name, "PatientID": patient_id,
                "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                "FrameOfReferenceUID": frame_uid, "SeriesNumber": series_number,
                "InstanceNumber": k + 1, "SeriesDescription": series_description,
                "RescaleSlope": f"{rescale_slope:g}", "RescaleIntercept": f"{rescale_intercept:g}",
                "StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S"),
                **(attributes or {}),
            }.items():
                setattr(ds, keyword, value)
            ds.save_as(tmp / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)
    return Path(folder)


def _ct_slice(pixels: np.ndarray, position: np.ndarray, axes: np.ndarray,
              spacing: tuple[float, float, float]) -> Dataset:
    """A CT Image Storage dataset for one int16 slice, with empty type-2 study attributes."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Manufacturer = "ichseg"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "HEAD"
    ds.KVP = "120"
    ds.SliceThickness = f"{spacing[0]:.6g}"
    ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[2]:.6g}"]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*axes[:, 0], *axes[:, 1])]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.SliceLocation = f"{float(position @ axes[:, 2]):.4f}"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds
