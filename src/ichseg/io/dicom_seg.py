"""The hemorrhage mask as a DICOM Segmentation object that references its source CT series.

A viewer or PACS shows a DICOM-SEG over the series it was made from: each frame names its source
slice (SOP Instance UID) and position. The mask's z index is the order in which
:func:`ichseg.io.dicom.load_dicom_series` stacked the slices, recorded in
``source.metadata["dicom"]``; the source files are read again (headers only) because highdicom
copies the patient, study and geometry attributes from them.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ichseg.atomic import atomic_file
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.version import __version__

SEGMENT_LABEL = "Intracranial hemorrhage"
#: Segmentation property category (CID 7150) and type (SNOMED CT 1386000).
SEGMENT_CATEGORY = codes.cid7150.MorphologicallyAbnormalStructure
SEGMENT_TYPE = codes.SCT.IntracranialHemorrhage
#: Red in CIELab, the colour of the contour in ichseg's previews.
SEGMENT_COLOR = hd.color.CIELabColor(53.2, 80.1, 67.2)


def write_dicom_seg(mask: np.ndarray, source: CTImage, path: str | os.PathLike, *,
                    overwrite: bool = False, algorithm_name: str = "ichseg",
                    algorithm_version: str = __version__,
                    series_description: str = "ICH segmentation (ichseg)") -> Path:
    """Write ``mask`` (z, y, x, in ``source``'s geometry as loaded) as a binary DICOM-SEG.

    ``source`` must come from :func:`ichseg.io.dicom.load_dicom_series` unchanged (not
    reoriented), so that frame k is slice k of the series. Empty slices get no frame.
    """
    path = Path(path)
    mask = np.asarray(mask)
    if mask.shape != source.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {source.shape}")
    datasets = _source_datasets(source)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=SEGMENT_CATEGORY,
        segmented_property_type=SEGMENT_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, version=algorithm_version,
            family=codes.cid7162.ArtificialIntelligence),
        anatomic_regions=[codes.SCT.Brain],
        display_color=SEGMENT_COLOR,
    )
    series_number = int(datasets[0].get("SeriesNumber") or 0) + 1000
    segmentation = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=(mask > 0).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="ichseg",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="none",
        series_description=series_description,
        omit_empty_frames=bool(mask.any()),
    )
    with atomic_file(path, overwrite) as tmp:
        segmentation.save_as(tmp)
    return path


def _source_datasets(source: CTImage) -> list[pydicom.Dataset]:
    """The series' headers in the image's slice order, checked against what was loaded."""
    info = source.metadata.get("dicom")
    if not info or "files" not in info:
        raise InputError(f"{source.name}: a DICOM-SEG needs a DICOM input series")
    if len(info["files"]) != source.shape[0]:
        raise ValueError(f"the image has {source.shape[0]} slices, its series "
                         f"{len(info['files'])}; was it resampled or padded?")
    datasets = []
    for file, uid in zip(info["files"], info["SOPInstanceUIDs"]):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (OSError, InvalidDicomError) as exc:
            raise InputError(f"{file}: source slice no longer readable ({exc})") from None
        if str(ds.SOPInstanceUID) != uid:
            raise InputError(f"{file}: source slice changed since the series was loaded")
        datasets.append(ds)
    first_row_col = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    axes = np.asarray(source.direction, float).reshape(3, 3)
    if not np.allclose(first_row_col, np.concatenate([axes[:, 0], axes[:, 1]]), atol=1e-3):
        raise ValueError("the image's orientation differs from its series; pass the image as "
                         "loaded, not reoriented")
    return datasets
