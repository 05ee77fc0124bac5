"""Writing a data set of phantoms in the INSTANCE 2022 layout, with ``cases.csv``."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ichseg.atomic import atomic_dir, refuse_existing, write_text
from ichseg.data.synth.case import case_seed, generate_case
from ichseg.data.synth.render import size_spec
from ichseg.data.synth.showcase import case_panels
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.io.nifti import save_image, save_mask
from ichseg.labels import SUBTYPES
from ichseg.progress import make_progress


@dataclass(frozen=True)
class CaseRecord:
    """One written case, as listed in ``cases.csv``."""

    name: str
    image_path: Path
    label_path: Path
    types: tuple[str, ...]
    volume_ml: float
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]


#: The preview shows this many cases at most, two panels each.
PREVIEW_CASES = 12

CSV_COLUMNS = ("name", "types", "volume_ml", "spacing_z", "spacing_y", "spacing_x",
               "shape_z", "shape_y", "shape_x")


def synthesize(out_dir: str | os.PathLike, n_cases: int, seed: int = 0, size: str = "small",
               overwrite: bool = False, preview: Path | None = None,
               progress: bool = True, subtypes: bool = False) -> list[CaseRecord]:
    """Write ``n_cases`` phantoms in the INSTANCE 2022 layout and return what was written.

    ``OUT/data/NAME.nii.gz`` (int16 HU), ``OUT/label/NAME.nii.gz`` (uint8) and ``OUT/cases.csv``
    appear together or not at all. The labels are 0/1, or with ``subtypes`` the values of
    :data:`ichseg.labels.SUBTYPES` (1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH), named in
    ``OUT/labels.json`` as nnU-Net's ``dataset.json`` names them. ``preview`` names a PNG showing
    the first cases (up to 12), each at its bleed and at its look-alikes.
    """
    size_spec(size)
    if n_cases < 1:
        raise InputError(f"number of cases must be at least 1, got {n_cases}")
    if seed < 0:
        raise InputError(f"seed {seed}: must be zero or positive")
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    if preview is not None:
        refuse_existing(Path(preview), overwrite)

    width = max(3, len(str(n_cases - 1)))
    records: list[CaseRecord] = []
    panels: list[tuple[CTImage, np.ndarray, str]] = []
    shown: list[int | None] = []
    with atomic_dir(out_dir, overwrite) as tmp, \
            make_progress(progress) as bar:
        task = bar.add_task(f"synthesising {size} cases", total=n_cases)
        for index in range(n_cases):
            name = f"ich_{index:0{width}d}"
            case = generate_case(case_seed(seed, index), size)
            save_image(case.image, tmp / "data" / f"{name}.nii.gz")
            label = case.typed_label if subtypes else case.label
            save_mask(case.image, label, tmp / "label" / f"{name}.nii.gz")
            records.append(CaseRecord(name, out_dir / "data" / f"{name}.nii.gz",
                                      out_dir / "label" / f"{name}.nii.gz", case.types,
                                      case.volume_ml, case.image.spacing, case.image.shape))
            if preview is not None and len(panels) < 2 * PREVIEW_CASES:
                pair, slices = case_panels(name, case, label)
                panels += pair
                shown += slices
            bar.advance(task)
        write_text(tmp / "cases.csv", _cases_csv(records))
        if subtypes:
            write_text(tmp / "labels.json", json.dumps(SUBTYPES.to_dataset_json(), indent=2) + "\n")
    if preview is not None:
        from ichseg.report.preview import save_case_grid

        save_case_grid(panels, preview, overwrite=overwrite, slices=shown)
    return records


def _cases_csv(records: list[CaseRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([r.name, ";".join(r.types), f"{r.volume_ml:.6f}",
                         *(f"{s:.10g}" for s in r.spacing), *r.shape])
    return buffer.getvalue()
