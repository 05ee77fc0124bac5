"""What is written for each segmented case, as one typed value (no torch, no plotting imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutputOptions:
    """Which files a case gets and how they are written.

    ``dicom_seg`` None means: for DICOM input. ``save_votes`` None means: when several models
    vote. Patient identifiers stay out of every file unless ``keep_identifiers``.
    ``show_intracranial`` draws in the preview the intracranial space the postprocessing used
    (found for the picture when no rule looked for it). The CT as segmented (``NAME_ct.nii.gz``)
    is written when the reader corrected its geometry (gantry tilt, uneven slices), and for any
    input with ``write_ct``.
    """

    keep_identifiers: bool = False
    dicom_seg: bool | None = None
    preview: bool = True
    html: bool = True
    save_votes: bool | None = None
    overwrite: bool = False
    show_intracranial: bool = False
    write_ct: bool = False
