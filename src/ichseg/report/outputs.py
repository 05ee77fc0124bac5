"""Everything written for a segmented case, and for a batch of them.

For case NAME in ``out_dir``: ``NAME.nii.gz`` (the mask in the input's geometry: 0/1, or each
voxel's class value for a class map of several hemorrhage types, named in the JSON),
``NAME_votes.nii.gz`` (the ensemble's vote map, when given), ``NAME.json`` (measures,
uncertainty, postprocessing, input description), ``NAME.png`` (preview), ``NAME.html`` (report),
``NAME_seg.dcm`` (DICOM-SEG on the source slices, when the input was a DICOM series) and
``NAME_ct.nii.gz`` (the CT on the grid the mask lies on, when the reader corrected its geometry or
``write_ct`` asks for it). A batch adds ``cases.csv`` and ``report.html``.

A case's files appear together or not at all: each is written to a temporary sibling and all are
renamed into place only once every one of them is complete; if any exists already and
``overwrite`` is not given, nothing is written. Patient identifiers from DICOM headers stay out of
every file unless ``keep_identifiers`` is given (the DICOM-SEG excepted: the standard requires the
source's patient and study attributes in it).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ichseg.atomic import atomic_file, write_json, write_text
from ichseg.clinical.measures import SubtypeMeasures, case_measures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.io.nifti import save_image, save_mask
from ichseg.labels import ONE_CLASS, LabelScheme
from ichseg.report.html import BatchRow, render_batch, render_case
from ichseg.report.options import OutputOptions
from ichseg.report.summary import CaseSummary, ReferenceComparison

if TYPE_CHECKING:
    from ichseg.segmentation.result import Segmentation

#: DICOM attributes that describe the acquisition in a case's JSON and report.
DESCRIPTIVE_DICOM = ("Modality", "SeriesDescription", "SeriesNumber", "BodyPartExamined",
                     "Manufacturer", "ManufacturerModelName", "SliceThickness", "KVP",
                     "ConvolutionKernel")
#: DICOM UIDs link an output back to the patient's record: only with ``keep_identifiers``.
LINKING_DICOM = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")

#: A series' UID as the series rules' lines name it (", 1.2.840....)"): kept with ``keep_identifiers`` only.
_UID = re.compile(r", [0-9]+(?:\.[0-9]+){4,}(?=\))")

#: Width in pixels of a case's thumbnail in the batch report.
THUMBNAIL_WIDTH = 300


@dataclass(frozen=True)
class CaseOutputs:
    """What :func:`write_case_outputs` wrote: file paths by kind and the case summary (its JSON)."""

    name: str
    files: dict[str, Path]
    summary: CaseSummary
    thumbnail_png: bytes | None = None


def case_file_names(name: str, *, votes: bool, preview: bool, html: bool,
                    dicom_seg: bool, ct: bool = False) -> dict[str, str]:
    """The file names of case ``name``'s outputs, by kind."""
    names = {"mask": f"{name}.nii.gz", "json": f"{name}.json"}
    if ct:
        names["ct"] = f"{name}_ct.nii.gz"
    if votes:
        names["votes"] = f"{name}_votes.nii.gz"
    if preview:
        names["preview"] = f"{name}.png"
    if html:
        names["html"] = f"{name}.html"
    if dicom_seg:
        names["dicom_seg"] = f"{name}_seg.dcm"
    return names


def write_case_outputs(image: CTImage, mask: np.ndarray, out_dir: str | os.PathLike,
                       options: OutputOptions = OutputOptions(), *, name: str | None = None,
                       vote_map: np.ndarray | None = None, uncertainty: EnsembleInfo | None = None,
                       postprocessing: Mapping[str, Any] | None = None,
                       reference: np.ndarray | None = None,
                       boundary: np.ndarray | None = None, labels: LabelScheme = ONE_CLASS) -> CaseOutputs:
    """Write one case's outputs (see the module's docstring) and return what was written.

    ``image`` is the input as loaded (for a DICOM series, not reoriented) and ``mask``,
    ``vote_map``, ``reference`` and ``boundary`` (a line drawn in the preview: the intracranial
    space) are in its geometry. ``name`` defaults to the input's name. The vote map is written
    when given (``options.save_votes`` is for :func:`write_segmentation`). With
    :data:`~ichseg.labels.ONE_CLASS` every non-zero voxel of ``mask`` is hemorrhage; otherwise
    ``mask`` is a class map named by ``labels``, and every file tells the types apart. A
    ``reference`` is compared as any hemorrhage.
    """
    keep_identifiers, overwrite = options.keep_identifiers, options.overwrite
    name = name or image.name
    for what, array in (("mask", mask), ("vote map", vote_map), ("reference", reference),
                        ("boundary", boundary)):
        if array is not None and np.shape(array) != image.shape:
            raise ValueError(f"{name}: {what} shape {np.shape(array)} differs from the image's "
                             f"{image.shape}")
    mask = _class_map(mask, labels, name)
    is_dicom = "dicom" in image.metadata
    dicom_seg = is_dicom if options.dicom_seg is None else options.dicom_seg
    if dicom_seg and not is_dicom:
        raise InputError(f"{name}: a DICOM-SEG needs a DICOM input series")
    out_dir = Path(out_dir)
    names = case_file_names(name, votes=vote_map is not None, preview=options.preview,
                            html=options.html, dicom_seg=dicom_seg,
                            ct=options.write_ct or bool(_geometry_corrections(image)))
    paths = {kind: out_dir / file_name for kind, file_name in names.items()}
    thumbnail = None
    with ExitStack() as stack:
        staged = {kind: stack.enter_context(atomic_file(path, overwrite))
                  for kind, path in paths.items()}
        summary = case_summary(image, mask, name=name, uncertainty=uncertainty,
                               postprocessing=postprocessing, reference=reference,
                               keep_identifiers=keep_identifiers, outputs=names, labels=labels)
        if dicom_seg:
            from ichseg.io.dicom_seg import write_dicom_seg

            write_dicom_seg(mask, image, staged["dicom_seg"], overwrite=True, labels=labels)
        save_mask(image, mask, staged["mask"], overwrite=True)
        if "ct" in staged:
            save_image(image, staged["ct"], overwrite=True)
        if vote_map is not None:
            save_mask(image, vote_map, staged["votes"], overwrite=True)
        write_json(staged["json"], summary.to_json(), overwrite=True)
        preview_png = None
        if options.preview:
            preview_png, thumbnail = _pictures(image, mask, staged["preview"], summary, boundary, labels)
        if options.html:
            write_text(staged["html"], render_case(summary, preview_png), overwrite=True)
    return CaseOutputs(name=name, files=paths, summary=summary, thumbnail_png=thumbnail)


def write_segmentation(segmentation: Segmentation, out_dir: str | os.PathLike,
                       options: OutputOptions = OutputOptions(), *, votes: bool | None = None) -> CaseOutputs:
    """Write a :class:`~ichseg.segmentation.result.Segmentation`'s files; ``votes`` (default: as
    ``options.save_votes``, else when several models voted) decides the vote map."""
    if votes is None:
        votes = options.save_votes if options.save_votes is not None else segmentation.ensemble.is_ensemble
    return write_case_outputs(segmentation.image, segmentation.mask.array, out_dir, options,
                              vote_map=segmentation.votes.array if votes else None,
                              uncertainty=segmentation.ensemble, postprocessing=segmentation.postprocessing,
                              boundary=_intracranial_boundary(segmentation) if options.show_intracranial else None,
                              labels=segmentation.labels)


def _intracranial_boundary(segmentation: Segmentation) -> np.ndarray | None:
    """The intracranial space the postprocessing used, or, when no rule looked for it, the one
    found now (None when the image shows no skull)."""
    if segmentation.intracranial is not None:
        return segmentation.intracranial
    from ichseg.postprocessing import find_intracranial_space

    return find_intracranial_space(segmentation.image).mask


def _class_map(mask: np.ndarray, labels: LabelScheme, name: str) -> np.ndarray:
    """``mask`` as written: any hemorrhage (bool) for one class, else its class values (uint8),
    which must be classes of ``labels``."""
    mask = np.asarray(mask)
    if labels == ONE_CLASS:
        return mask != 0
    wrong = np.setdiff1d(np.unique(mask), np.arange(labels.n_classes))
    if wrong.size:
        raise ValueError(f"{name}: mask values {wrong[:5].tolist()} are not classes of "
                         f"{', '.join(labels.names)}")
    return mask.astype(np.uint8)


def case_summary(image: CTImage, mask: np.ndarray, *, name: str,
                 uncertainty: EnsembleInfo | None = None,
                 postprocessing: Mapping[str, Any] | None = None,
                 reference: np.ndarray | None = None, keep_identifiers: bool = False,
                 outputs: Mapping[str, str] | None = None, labels: LabelScheme = ONE_CLASS) -> CaseSummary:
    """The case's summary (its JSON): measures (type by type too for a class map), ensemble
    uncertainty, postprocessing and input description."""
    measures = case_measures(mask, image.spacing, labels)
    return CaseSummary(
        case=name, measures=measures, input=_describe_input(image, keep_identifiers), uncertainty=uncertainty,
        postprocessing=postprocessing, labels=labels,
        reference=_compare_reference(mask, reference, image.spacing, measures.volume_ml),
        outputs=dict(outputs or {}),
        identifiers=dict(image.metadata.get("identifiers", {})) if keep_identifiers else None)


def _describe_input(image: CTImage, keep_identifiers: bool) -> dict[str, Any]:
    dicom = image.metadata.get("dicom")
    description: dict[str, Any] = {
        "name": image.source.name if image.source is not None else None,
        "format": "DICOM series" if dicom else "image file",
        "shape": list(image.shape),
        "spacing_mm": [float(s) for s in image.spacing],
        "orientation": image.orientation,
    }
    if keep_identifiers and image.source is not None:
        description["path"] = str(image.source)
    if dicom:
        kept = DESCRIPTIVE_DICOM + (LINKING_DICOM if keep_identifiers else ())
        description["dicom"] = {key: dicom[key] for key in kept if key in dicom}
        if _geometry_corrections(image):  # volumes are measured on the corrected grid: say so
            description["dicom"]["geometry"] = {**dicom["geometry"], "measured_on": "orthogonal grid"}
    selection = image.metadata.get("series_selection")
    if selection:  # which series of a study was segmented, and why each other was not
        description["series_selection"] = [line if keep_identifiers else _UID.sub("", line) for line in selection]
    return description


def _geometry_corrections(image: CTImage) -> list[str]:
    """What the DICOM reader corrected (gantry tilt, uneven slices), if anything."""
    return ((image.metadata.get("dicom") or {}).get("geometry") or {}).get("correction") or []


def _compare_reference(mask: np.ndarray, reference: np.ndarray | None,
                       spacing: Sequence[float], volume: float) -> ReferenceComparison | None:
    if reference is None:
        return None
    from ichseg.metrics.overlap import dice, volume_ml

    reference = np.asarray(reference) != 0
    reference_ml = volume_ml(reference, spacing)
    return ReferenceComparison(dice(np.asarray(mask) != 0, reference), reference_ml, volume - reference_ml)


def _pictures(image: CTImage, mask: np.ndarray, path: Path, summary: CaseSummary,
              boundary: np.ndarray | None = None, labels: LabelScheme = ONE_CLASS) -> tuple[bytes, bytes]:
    """Write the preview montage (with the intracranial ``boundary`` when given); return it and a
    thumbnail of the largest hemorrhage slice."""
    from ichseg.report.preview import save_montage

    title = f"{summary.case}: {summary.measures.volume_ml:.1f} mL"
    save_montage(image, mask, path, title=title, overwrite=True, boundary=boundary, labels=labels)
    largest = summary.measures.abc2.slice_index
    with tempfile.TemporaryDirectory() as scratch:
        thumbnail_path = Path(scratch) / "thumbnail.png"
        save_montage(image, mask, thumbnail_path, slices=None if largest is None else [largest],
                     max_slices=1, labels=labels)
        thumbnail = _shrink(thumbnail_path.read_bytes(), THUMBNAIL_WIDTH)
    return path.read_bytes(), thumbnail


def _shrink(png: bytes, width: int) -> bytes:
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    picture.thumbnail((width, width * 4))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_batch_outputs(cases: Sequence[CaseOutputs], failures: Sequence[tuple[str, str]],
                        out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
    """Write ``cases.csv`` (one row per case, failures included) and ``report.html``."""
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / "cases.csv", "html": out_dir / "report.html"}
    rows = [BatchRow(summary=case.summary,
                     href=(Path(os.path.relpath(case.files["html"], out_dir)).as_posix()
                           if "html" in case.files else None),
                     thumbnail_png=case.thumbnail_png)
            for case in cases]
    with ExitStack() as stack:
        staged = {kind: stack.enter_context(atomic_file(path, overwrite))
                  for kind, path in paths.items()}
        write_text(staged["csv"], batch_csv(cases, failures), overwrite=True)
        write_text(staged["html"], render_batch(rows, failures), overwrite=True)
    return paths


#: The columns of ``cases.csv``, before any identifier columns.
CSV_COLUMNS = ("case", "status", "volume_ml", "abc2_ml", "abc2_a_mm", "abc2_b_mm", "abc2_c_mm",
               "abc2_slice", "components", "largest_component_ml", "slices_involved",
               "first_slice", "last_slice", "hr", "ensemble_rule", "reference_volume_ml", "dice",
               "error")


def batch_csv(cases: Sequence[CaseOutputs], failures: Sequence[tuple[str, str]]) -> str:
    """The batch table as CSV text; identifier columns only for cases that kept them, a volume
    column per hemorrhage type (``IPH_volume_ml``, ...) after ``volume_ml`` only when some case
    is a class map of types (blank for the others)."""
    identifier_columns = sorted({key for case in cases for key in case.summary.identifiers or {}})
    type_columns = list(dict.fromkeys(_type_column(name) for case in cases
                                      for name in (case.summary.measures.subtypes or _NO_TYPES).classes))
    at = CSV_COLUMNS.index("volume_ml") + 1
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS[:at], *type_columns, *CSV_COLUMNS[at:],
                                                *identifier_columns], lineterminator="\n")
    writer.writeheader()
    for case in cases:
        writer.writerow(_csv_row(case.summary))
    for name, message in failures:
        writer.writerow({"case": name, "status": "failed", "error": message})
    return buffer.getvalue()


def _csv_row(summary: CaseSummary) -> dict[str, Any]:
    measures = summary.measures
    abc = measures.abc2
    involved = measures.slices.involved
    uncertainty, reference = summary.uncertainty, summary.reference
    row = {
        "case": summary.case, "status": "ok",
        "volume_ml": _number(measures.volume_ml), "abc2_ml": _number(abc.volume_ml),
        "abc2_a_mm": _number(abc.a_mm), "abc2_b_mm": _number(abc.b_mm),
        "abc2_c_mm": _number(abc.c_mm), "abc2_slice": abc.slice_index,
        "components": measures.components.count,
        "largest_component_ml": _number(measures.components.largest_ml),
        "slices_involved": len(involved),
        "first_slice": involved[0] if involved else None,
        "last_slice": involved[-1] if involved else None,
        "hr": _number(uncertainty.hr if uncertainty else None),
        "ensemble_rule": uncertainty.rule if uncertainty else None,
        "reference_volume_ml": _number(reference.volume_ml if reference else None),
        "dice": _number(reference.dice if reference else None),
    }
    for name, item in (measures.subtypes or _NO_TYPES).classes.items():
        row[_type_column(name)] = _number(item.volume_ml)
    row.update(summary.identifiers or {})
    return {key: ("" if value is None else value) for key, value in row.items()}


def _type_column(name: str) -> str:
    return f"{name}_volume_ml"


#: The per-type measures of a case that has no types.
_NO_TYPES = SubtypeMeasures({})


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.6g}"
