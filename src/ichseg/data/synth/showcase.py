"""What the preview of a data set shows of each case: its bleed and its look-alikes.

Each case gets two panels side by side: the slice with most hemorrhage (or the middle one), and
a slice low in the head that shows the temporal muscles, scalp vessels, the dural sinuses and
tentorium, the orbits when the stack reaches them, and the beam hardening over the skull base.
"""

from __future__ import annotations

import numpy as np

from ichseg.data.synth.vocabulary import SyntheticCase, Tissue

#: The look-alikes named in a panel's caption when its slice shows them.
_NAMES = {Tissue.MUSCLE: "muscle", Tissue.SCALP_VESSEL: "vessel", Tissue.DURAL_SINUS: "sinus",
          Tissue.DURA: "dura", Tissue.CHOROID_PLEXUS: "choroid", Tissue.GLOBE: "orbit",
          Tissue.OLD_INFARCT: "old infarct"}
#: The look-alikes that choose the slice (the choroid plexus shows beside most bleeds already).
_SCORED = (Tissue.MUSCLE, Tissue.SCALP_VESSEL, Tissue.DURAL_SINUS, Tissue.DURA, Tissue.GLOBE)
#: A look-alike is named when its slice holds at least this many of its voxels.
_SHOWN_VOXELS = 4


def lookalike_slice(tissues: np.ndarray) -> int:
    """The slice showing most kinds of extracranial and dural look-alike, and of those the one
    with most dural sinus (the level of the torcula and transverse sinuses)."""
    counts = np.stack([np.count_nonzero(tissues == code, axis=(1, 2)) for code in _SCORED])
    kinds = np.count_nonzero(counts >= _SHOWN_VOXELS, axis=0)
    sinus = counts[_SCORED.index(Tissue.DURAL_SINUS)]
    return int(np.lexsort((sinus, kinds))[-1])


def lookalike_caption(tissues: np.ndarray) -> str:
    """The look-alikes one slice of a tissue map shows, for a caption."""
    shown = [name for code, name in _NAMES.items() if np.count_nonzero(tissues == code) >= _SHOWN_VOXELS]
    return ", ".join(shown) if shown else "no look-alikes"


def case_panels(name: str, case: SyntheticCase,
                label: np.ndarray) -> tuple[list[tuple], list[int | None]]:
    """The case's two preview panels (image, ``label``, caption) and the slice each shows."""
    z = lookalike_slice(case.tissues)
    panels = [(case.image, label, f"{name}: {case.caption}"),
              (case.image, label, f"{name}: {lookalike_caption(case.tissues[z])}")]
    return panels, [None, z]
