"""What goes back to the PACS for one segmented series: DICOM-SEG, Secondary Capture, SR.

All three reference the source series (the SEG frame by frame, the SC through the slices it
shows, the SR through its evidence and the SEG's segment) and belong to the source's study, so a
PACS files them with the scan. Each keeps only the patient and study attributes a PACS needs to
file it there (:data:`FILING_KEYWORDS`); the other identifying attributes highdicom copies from
the source are emptied (when DICOM requires them present) or removed. A class map of several
hemorrhage types comes back type by type: a segment, a measurement group and a colour per type.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ichseg.clinical.measures import CaseMeasures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.io.dicom import IDENTIFYING_KEYWORDS
from ichseg.io.dicom_geometry import SourceSlice, nearest_source_slices
from ichseg.io.dicom_seg import build_dicom_seg
from ichseg.report.preview import montage_slices, save_montage
from ichseg.serve.sr import measurement_report
from ichseg.version import __version__

if TYPE_CHECKING:
    from ichseg.segmentation.result import Segmentation

#: Identifying attributes a result keeps: what files it in the patient's study.
FILING_KEYWORDS = ("PatientName", "PatientID", "StudyInstanceUID", "StudyID", "AccessionNumber",
                   "StudyDate", "StudyTime")
#: Type 2 attributes of the Patient and General Study modules: present, but emptied.
_EMPTIED = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName")
#: Attributes of the result's own equipment (ichseg's), not copied from the source.
_OWN = ("DeviceSerialNumber",)
#: Series numbers of the results: the source's number plus these.
SEG_OFFSET, SC_OFFSET, SR_OFFSET = 1000, 1001, 1002
SC_DESCRIPTION = "ICH key images (ichseg)"
#: Where the results of a case go, by kind.
RESULT_FILES = {"seg": "seg.dcm", "sc": "sc.dcm", "sr": "sr.dcm"}


def keep_filing_identifiers(ds: Dataset) -> Dataset:
    """Remove or empty every identifying attribute of ``ds`` but :data:`FILING_KEYWORDS`."""
    for keyword in IDENTIFYING_KEYWORDS:
        if keyword in FILING_KEYWORDS or keyword in _OWN or keyword not in ds:
            continue
        if keyword in _EMPTIED:
            setattr(ds, keyword, "")
        else:
            delattr(ds, keyword)
    return ds


def write_results(segmentation: Segmentation, folder: Path) -> dict[str, Path]:
    """Write the SEG, SC and SR of ``segmentation`` (of a DICOM series) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in RESULT_FILES.items()}
    image, mask = segmentation.image, segmentation.mask.array
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in image.metadata["dicom"]["files"]]
    number = int(sources[0].get("SeriesNumber") or 0)

    seg = keep_filing_identifiers(build_dicom_seg(mask, image, labels=segmentation.labels))
    seg.save_as(paths["seg"], enforce_file_format=True)

    measures = segmentation.measures()
    sc = key_images(segmentation, sources, number + SC_OFFSET, caption(measures, segmentation.ensemble))
    keep_filing_identifiers(sc).save_as(paths["sc"], enforce_file_format=True)

    sr = measurement_report(seg, sources, measures, segmentation.ensemble, number + SR_OFFSET)
    keep_filing_identifiers(sr).save_as(paths["sr"], enforce_file_format=True)
    return paths


def caption(measures: CaseMeasures, ensemble: EnsembleInfo) -> str:
    """The figures a radiologist reads on the key-image page: for a class map of several types,
    each type present, and ABC/2 of the largest intraparenchymal hematoma."""
    subtypes = measures.subtypes
    if subtypes is None:
        text = f"ICH {measures.volume_ml:.1f} mL, ABC/2 {measures.abc2.volume_ml:.1f} mL"
    else:
        present = [f"{name} {item.volume_ml:.1f}" for name, item in subtypes.classes.items() if item.voxel_count]
        text = f"ICH {measures.volume_ml:.1f} mL" + (f" ({', '.join(present)} mL)" if present else "")
        if subtypes.iph_abc2 is not None and subtypes.iph_abc2.slice_index is not None:
            text += f", IPH ABC/2 {subtypes.iph_abc2.volume_ml:.1f} mL"
    if ensemble.is_ensemble and ensemble.hr is not None:
        text += f", HR {ensemble.hr:.2f} ({ensemble.n_models} models)"
    return f"{text} - ichseg {__version__}, automatic, not verified"


def key_images(segmentation: Segmentation, sources: Sequence[Dataset], series_number: int,
               title: str) -> hd.sc.SCImage:
    """The slices with hemorrhage (or evenly spaced ones), outlined in red (each type in its colour,
    with a legend), as one RGB capture."""
    image, mask = segmentation.image, segmentation.mask.array
    slices = montage_slices(mask, image.shape[0])
    with tempfile.TemporaryDirectory(prefix="ichseg-sc-") as tmp:
        png = save_montage(image, mask, Path(tmp) / "key.png", slices=slices, title=title,
                           labels=segmentation.labels)
        pixels = np.asarray(Image.open(png).convert("RGB"))
    first = sources[0]
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=patient_orientation(image.direction),
        study_instance_uid=first.StudyInstanceUID,
        series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="ichseg",
        patient_id=first.get("PatientID"), patient_name=first.get("PatientName"),
        accession_number=first.get("AccessionNumber"), study_id=first.get("StudyID"),
        study_date=first.get("StudyDate"), study_time=first.get("StudyTime"),
        series_description=SC_DESCRIPTION,
    )
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = first.get("BodyPartExamined") or "HEAD"  # unpaired: no Laterality needed
    sc.ImageComments = title
    sc.SourceImageSequence = [_reference(source) for source in nearest_source_slices(image, slices)]
    return sc


def patient_orientation(direction: tuple[float, ...]) -> tuple[str, str]:
    """DICOM's letters for where the rows and columns of an axial panel point (e.g. L, P)."""
    axes = np.asarray(direction, float).reshape(3, 3)
    letters = (("R", "L"), ("A", "P"), ("F", "H"))
    labels = []
    for column in (0, 1):  # along a row (x), then down a column (y)
        axis = int(np.argmax(np.abs(axes[:, column])))
        labels.append(letters[axis][int(axes[axis, column] > 0)])
    return labels[0], labels[1]


def _reference(source: SourceSlice) -> Dataset:
    """The source slice (and frame, in an enhanced CT) nearest a panel of the key images."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_instance_uid
    if source.frame is not None:
        item.ReferencedFrameNumber = source.frame
    return item
