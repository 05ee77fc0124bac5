"""The hemorrhage mask as a DICOM Segmentation object on the source CT series' own slices.

A viewer or PACS shows a DICOM-SEG over the series it was made from, and viewers overlay a SEG
whose frames lie on the original images far better than one on another grid. So whatever grid
the mask lies on (the series as loaded, the orthogonal grid of a gantry-tilted or unevenly spaced
series, a reoriented copy), it is mapped back onto every source slice, nearest neighbour at each
source pixel's world position (:func:`ichseg.io.dicom_geometry.mask_on_source_slices`), and each
source slice with hemorrhage gets one frame at its position and orientation, naming its source
instance (and frame, for an enhanced CT). The source files are read again (headers only) because
highdicom copies the patient, study and geometry attributes from them. A class map of several
hemorrhage types gives one segment per type present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ichseg.atomic import atomic_file
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.io.dicom_geometry import SourceSlice, mask_on_source_slices, source_slices
from ichseg.io.hemorrhage_codes import CATEGORY, class_coding
from ichseg.labels import HEMORRHAGE, ONE_CLASS, LabelScheme
from ichseg.palette import class_color
from ichseg.version import __version__

#: Red in CIELab, the colour of the contour in ichseg's one-class previews.
SEGMENT_COLOR = hd.color.CIELabColor(53.2, 80.1, 67.2)


def build_dicom_seg(mask: np.ndarray, source: CTImage, *, labels: LabelScheme = ONE_CLASS,
                    algorithm_name: str = "ichseg", algorithm_version: str = __version__,
                    series_description: str = "ICH segmentation (ichseg)") -> hd.seg.Segmentation:
    """``mask`` (z, y, x, on ``source``'s grid) as a binary DICOM-SEG of ``source``'s series.

    ``source`` is a CT read from a DICOM series (:func:`ichseg.io.dicom.load_dicom_series`),
    resampled or reoriented or not: its ``metadata["dicom"]["source_slices"]`` say where the
    source slices lie. With :data:`~ichseg.labels.ONE_CLASS` every non-zero voxel is segment 1,
    *Intracranial hemorrhage*. Otherwise ``mask`` is a class map named by ``labels``: each class
    present on the source slices becomes a segment, numbered 1, 2, ... in the order of the class
    values, coded as :mod:`ichseg.io.hemorrhage_codes` says, with the class name as its tracking
    ID (which the SR's measurement groups repeat). Source slices without hemorrhage get no frame
    (an empty mask: one empty frame per slice in one *Intracranial hemorrhage* segment, so that
    the object stays readable).
    """
    mask = np.asarray(mask)
    if mask.shape != source.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {source.shape}")
    if not (source.metadata.get("dicom") or {}).get("source_slices"):
        raise InputError(f"{source.name}: a DICOM-SEG needs a DICOM input series")
    slices = source_slices(source)
    datasets = _source_datasets(slices)
    on_slices = mask_on_source_slices(mask != 0 if labels == ONE_CLASS else mask, source, slices)
    present = [value for value in labels.hemorrhage_values if labels != ONE_CLASS and (on_slices == value).any()]
    algorithm = hd.AlgorithmIdentificationSequence(name=algorithm_name, version=algorithm_version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    if present:
        numbers = np.zeros(labels.n_classes, np.uint8)
        numbers[present] = np.arange(1, len(present) + 1)
        on_slices = numbers[on_slices]
        descriptions = [_description(number, labels.name(value), algorithm, labels)
                        for number, value in enumerate(present, start=1)]
    else:
        descriptions = [_description(1, HEMORRHAGE, algorithm)]
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=_in_source_order(on_slices, slices, datasets),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=int(datasets[0].get("SeriesNumber") or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="ichseg",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="none",
        series_description=series_description,
        omit_empty_frames=bool(on_slices.any()),
    )


def _description(number: int, name: str, algorithm: hd.AlgorithmIdentificationSequence,
                 labels: LabelScheme | None = None) -> hd.seg.SegmentDescription:
    """Segment ``number`` of class ``name``; ``labels`` (a class map's scheme) adds its colour and
    a tracking ID, one-class hemorrhage (None) stays red and untracked."""
    coding = class_coding(name)
    color = (SEGMENT_COLOR if labels is None
             else hd.color.CIELabColor.from_string(class_color(name, labels.names[1:])))
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=coding.label,
        segmented_property_category=CATEGORY,
        segmented_property_type=coding.finding,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[coding.region],
        display_color=color,
        tracking_id=None if labels is None else name,
        tracking_uid=None if labels is None else generate_uid(),
    )


def segment_tracking(seg: pydicom.Dataset) -> dict[int, tuple[str, str]]:
    """Segment number -> (tracking ID, tracking UID) of the tracked segments of a DICOM-SEG."""
    return {int(item.SegmentNumber): (str(item.TrackingID), str(item.TrackingUID))
            for item in seg.SegmentSequence if "TrackingUID" in item}


def write_dicom_seg(mask: np.ndarray, source: CTImage, path: str | os.PathLike, *,
                    overwrite: bool = False, **options: Any) -> Path:
    """Write :func:`build_dicom_seg`'s object to ``path`` atomically (``options``: its keywords)."""
    segmentation = build_dicom_seg(mask, source, **options)
    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        segmentation.save_as(tmp)
    return path


def _source_datasets(slices: list[SourceSlice]) -> list[pydicom.Dataset]:
    """The source files' headers, each once, in slice order, checked against what was loaded."""
    datasets: list[pydicom.Dataset] = []
    for file, uid in dict.fromkeys((plane.file, plane.sop_instance_uid) for plane in slices):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (OSError, InvalidDicomError) as exc:
            raise InputError(f"{file}: source slice no longer readable ({exc})") from None
        if str(ds.SOPInstanceUID) != uid:
            raise InputError(f"{file}: source slice changed since the series was loaded")
        datasets.append(ds)
    return datasets


def _in_source_order(on_slices: np.ndarray, slices: list[SourceSlice],
                     datasets: list[pydicom.Dataset]) -> np.ndarray:
    """The frames as highdicom pairs them with its sources: one per single-frame file, in the
    order given, or the frames of one multi-frame file, in its frame order."""
    if all(plane.frame is None for plane in slices):
        return on_slices
    if len(datasets) != 1:
        raise InputError(f"{slices[0].file.parent}: a DICOM-SEG can reference the frames of one "
                         f"multi-frame file, this series has {len(datasets)} files")
    frames = np.zeros((int(datasets[0].NumberOfFrames), *on_slices.shape[1:]), on_slices.dtype)
    frames[[(plane.frame or 1) - 1 for plane in slices]] = on_slices
    return frames
