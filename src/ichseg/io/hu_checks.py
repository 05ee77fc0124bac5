"""Is this CT in Hounsfield units? Checks run where images enter prediction and import.

A model trained on HU segments anything it is given without a word, so values that cannot be a
CT in HU are refused with what was found and what was expected: non-finite voxels, 8-bit
integers (a windowed display export), values beyond any CT scale, and a DICOM series without a
rescale whose stored values cannot be HU. Ranges that are unusual yet possible (no air: a
skull-stripped or cropped image; nothing as dense as bone) give a warning only.
``accept=True`` turns the refusals into warnings for users who know their data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ichseg.errors import IntensityError

if TYPE_CHECKING:
    from ichseg.io.image import CTImage

#: Beyond any CT scale: stored CT values are 16-bit, signed (HU) or unsigned (before rescale).
CT_SCALE = (-32768.0, 65535.0)
#: Without a voxel below this there is no air around or inside the head.
AIR_BELOW_HU = -500.0
#: Without a voxel above this there is no bone (nor blood, which is 50–90 HU).
DENSE_ABOVE_HU = 100.0
#: What a head CT in HU looks like, for the messages.
EXPECTED = "a CT in Hounsfield units (air -1000, brain 20 to 45, blood 50 to 90, bone above 300)"


def check_intensities(image: CTImage, *, accept: bool = False, where: str | None = None) -> list[str]:
    """Refuse values that cannot be HU (:class:`IntensityError`), unless ``accept``; return
    one-line warnings for ranges that are unusual yet possible (and for accepted refusals).

    ``where`` names the input in the messages (default: the image's source).
    """
    where = where or str(image.source if image.source is not None else "CT array")
    refusals, warnings = _assess(image)
    if refusals and not accept:
        raise IntensityError(f"{where}: {refusals[0]} (use --accept-intensities to accept it)")
    found = [*refusals, *warnings] if accept else warnings
    return [f"{where}: {text}" for text in found]


def _assess(image: CTImage) -> tuple[list[str], list[str]]:
    """What cannot be HU, then what is unusual; each a phrase without the file name."""
    array = image.array
    refusals: list[str] = []
    finite = np.isfinite(array) if np.issubdtype(array.dtype, np.floating) else None
    n_bad = 0 if finite is None else int(array.size - np.count_nonzero(finite))
    if n_bad == array.size:
        return [f"every voxel is NaN or infinite; expected {EXPECTED}"], []
    on_disk = _nonfinite_in_nifti(image.source) if n_bad == 0 else 0
    if n_bad or on_disk:
        refusals.append(f"{n_bad or on_disk} of {array.size} voxels are NaN or infinite; expected "
                        f"{EXPECTED}")
    values = array if n_bad == 0 else array[finite]
    low, high = float(values.min()), float(values.max())
    if array.dtype.itemsize == 1 and np.issubdtype(array.dtype, np.integer):
        refusals.append(f"stored as 8-bit integers (values {low:g} to {high:g}): a display export, "
                        f"not {EXPECTED}")
    elif low < CT_SCALE[0] or high > CT_SCALE[1]:
        refusals.append(f"values {low:g} to {high:g} lie outside {CT_SCALE[0]:g} to {CT_SCALE[1]:g}, "
                        f"beyond any CT scale; expected {EXPECTED}")
    missing = _missing_rescale(image)
    if missing and "RescaleIntercept" in missing and low >= 0:
        refusals.append(f"no {missing} in the DICOM header, and the stored values {low:g} to "
                        f"{high:g} have no air below 0, so they are not Hounsfield units "
                        f"(the intercept, usually -1024, is missing); expected {EXPECTED}")
    warnings = []
    if low > AIR_BELOW_HU:
        warnings.append(f"no voxel below {AIR_BELOW_HU:g} HU (lowest {low:g}): no air, a "
                        f"skull-stripped or cropped image? Segmenting it anyway")
    if high < DENSE_ABOVE_HU:
        warnings.append(f"no voxel above {DENSE_ABOVE_HU:g} HU (highest {high:g}): no bone, a "
                        f"skull-stripped image? Segmenting it anyway")
    return refusals, warnings


def _nonfinite_in_nifti(source: Path | None) -> int:
    """NaN and infinite voxels of a floating-point NIfTI file, counted in the file itself:
    ITK's NIfTI reader turns them into 0, so the array read through SimpleITK hides them."""
    if source is None or not source.name.lower().endswith((".nii", ".nii.gz")):
        return 0
    import nibabel as nib

    try:
        stored = nib.load(source)  # a NIfTI-1 or NIfTI-2 image, its voxels left in the file
        if not isinstance(stored, nib.Nifti1Image) or not np.issubdtype(stored.get_data_dtype(), np.floating):
            return 0
        proxy = stored.dataobj
        if not isinstance(proxy, nib.arrayproxy.ArrayProxy):
            return 0
        data = np.asanyarray(proxy.get_unscaled())
    except Exception:  # noqa: BLE001 - the file was read once already; nothing more to learn
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def _missing_rescale(image: CTImage) -> str | None:
    """For a DICOM series: which of RescaleSlope/RescaleIntercept its first slice lacks."""
    dicom: dict[str, Any] = image.metadata.get("dicom") or {}
    files = dicom.get("files") or []
    if not files:
        return None
    import pydicom

    try:
        header = pydicom.dcmread(Path(files[0]), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - read once already; if it fails now, there is nothing to add
        return None
    absent = [key for key in ("RescaleIntercept", "RescaleSlope") if header.get(key) in (None, "")]
    return " and ".join(absent) if absent else None
