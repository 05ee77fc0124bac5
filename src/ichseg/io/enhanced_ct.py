"""Enhanced CT: a whole series in one multi-frame file, read frame by frame like single slices.

Enhanced CT Image Storage and Legacy Converted Enhanced CT Image Storage keep what a single-frame
file carries in its header (position, orientation, pixel spacing, rescale) in functional groups:
per frame, or shared by all frames. Each frame becomes a :class:`SourceSlice` (with its frame
number, so that a DICOM-SEG can reference it), and goes through the same checks and corrections
as the slices of a single-frame series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ichseg.errors import InputError
from ichseg.io.dicom_geometry import SourceSlice, header_pair, header_point

ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
MULTI_FRAME_CT_CLASSES = (ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE)

#: Where each attribute lives: (functional group sequence, keyword).
_POSITION = ("PlanePositionSequence", "ImagePositionPatient")
_ORIENTATION = ("PlaneOrientationSequence", "ImageOrientationPatient")
_PIXEL_SPACING = ("PixelMeasuresSequence", "PixelSpacing")
_SLOPE = ("PixelValueTransformationSequence", "RescaleSlope")
_INTERCEPT = ("PixelValueTransformationSequence", "RescaleIntercept")


def is_multi_frame_ct(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in MULTI_FRAME_CT_CLASSES


def frame_slices(ds: Dataset, path: Path, where: str) -> list[SourceSlice]:
    """Every frame of ``ds`` as a source slice; a frame without position, orientation or pixel
    spacing is refused, naming the file and the frame."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(ds.get("PerFrameFunctionalGroupsSequence") or []) != n_frames:
        raise InputError(f"{where}: file {path.name} has {n_frames} frames but not as many "
                         f"per-frame functional groups")
    return [SourceSlice(file=path, sop_instance_uid=str(ds.SOPInstanceUID),
                        sop_class_uid=str(ds.SOPClassUID), frame=k + 1,
                        position=header_point(_required(ds, k, _POSITION, path, where)),
                        orientation=tuple(float(v) for v in _required(ds, k, _ORIENTATION, path, where)),
                        pixel_spacing=header_pair(_required(ds, k, _PIXEL_SPACING, path, where)),
                        rows=int(ds.Rows), columns=int(ds.Columns))
            for k in range(n_frames)]


def frame_rescale(ds: Dataset, index: int) -> tuple[float, float]:
    """Frame ``index``'s (from 0) rescale slope and intercept (1 and 0 when absent)."""
    slope = _attribute(ds, index, _SLOPE)
    intercept = _attribute(ds, index, _INTERCEPT)
    return (float(slope) if slope not in (None, "") else 1.0,
            float(intercept) if intercept not in (None, "") else 0.0)


def frames_hu(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """The stored frames (frames, rows, columns) in HU, each by its own rescale."""
    rescale = np.array([frame_rescale(ds, k) for k in range(len(stored))])
    return (stored.astype(np.float64) * rescale[:, 0, None, None]
            + rescale[:, 1, None, None]).astype(np.float32)


def has_one_rescale(ds: Dataset) -> bool:
    """Whether every frame shares one rescale (what a decoder that applies it assumes)."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    return len({frame_rescale(ds, k) for k in range(n_frames)}) == 1


def _required(ds: Dataset, index: int, where_kept: tuple[str, str], path: Path, where: str) -> Any:
    value = _attribute(ds, index, where_kept)
    if value in (None, ""):
        raise InputError(f"{where}: file {path.name} frame {index + 1} has no {where_kept[1]}")
    return value


def _attribute(ds: Dataset, index: int, where_kept: tuple[str, str]) -> Any:
    """The attribute from frame ``index``'s functional groups, else from the shared ones."""
    sequence, keyword = where_kept
    groups = [ds.PerFrameFunctionalGroupsSequence[index], *(ds.get("SharedFunctionalGroupsSequence") or [])]
    for group in groups:
        items = group.get(sequence) or []
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None

