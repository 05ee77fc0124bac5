"""One phantom from one seed: head, grid, lesions, rendering and noise, in a fixed order.

The head's look-alikes and its skull defect come from generators of their own, spawned from the
seed, so that the grid, the bleeds and the noise a seed draws stay the same with or without them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ichseg.data.synth.anatomy import Head
from ichseg.data.synth.defects import SkullDefect
from ichseg.data.synth.lesions import Lesion, draw_lesions
from ichseg.data.synth.render import Rendered, ct_noise, draw_grid, render, size_spec
from ichseg.data.synth.vocabulary import (
    HEMORRHAGE_TYPES,
    NO_HEMORRHAGE_RATE,
    SyntheticCase,
    Tissue,
    subtype_value,
)
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage

_LOOKALIKE_STREAM, _DEFECT_STREAM = 1, 2


def generate_case(seed: int, size: str = "small", hemorrhage: bool | None = None,
                  skull_defect: str | None = None) -> SyntheticCase:
    """Draw one head CT (int16 HU) with its hemorrhage labels; the same seed gives the same case.

    ``hemorrhage`` forces a case with (True) or without (False) bleeding; None draws it, about
    :data:`NO_HEMORRHAGE_RATE` of cases having none. ``skull_defect`` cuts a ``"craniectomy"``
    or a ``"burr_hole"`` into the vault (see :mod:`~ichseg.data.synth.defects`); the rest of
    the case is the one the seed draws without it.
    """
    spec = size_spec(size)
    head, rng = draw_head(seed, skull_defect)
    grid = draw_grid(rng, spec, head)
    bleeding = (rng.random() >= NO_HEMORRHAGE_RATE) if hemorrhage is None else hemorrhage
    for _attempt in range(8):
        lesions = draw_lesions(rng, head) if bleeding else []
        rendered = render(head, grid, lesions)
        label = rendered.label()
        if label.any() or not bleeding:
            break
    else:
        raise RuntimeError(f"seed {seed}: no hemorrhage large enough to label after 8 draws")
    tissues = rendered.tissues
    tissues[label] = Tissue.BLOOD
    typed = _typed_label(rendered, lesions, label)
    present = {lesions[i - 1].kind for i in np.unique(rendered.dominant[label]) if i > 0}
    types = tuple(sorted(present, key=HEMORRHAGE_TYPES.index))

    correlation = 0.8 if spec.render_factor < 1 else 0.5
    hu = rendered.hu + ct_noise(rng, rendered.hu.shape, head.hu["noise"], correlation)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    origin = (grid.first[2], grid.first[1], grid.first[0])
    metadata = {"synthetic_seed": seed, "synthetic_size": size}
    if skull_defect is not None:
        metadata["synthetic_skull_defect"] = skull_defect
    image = CTImage(array=array, spacing=grid.spacing, origin=origin, metadata=metadata)
    volume_ml = float(label.sum()) * image.voxel_volume_ml
    return SyntheticCase(image, label.astype(np.uint8), typed, tissues, rendered.pure, types,
                         volume_ml)


def draw_head(seed: int, skull_defect: str | None = None) -> tuple[Head, np.random.Generator]:
    """The head of case ``seed``, and the generator that goes on to draw its grid and bleeds."""
    if seed < 0:
        raise InputError(f"seed {seed}: must be zero or positive")
    rng = np.random.default_rng(seed)
    head = Head.draw(rng, _stream(seed, _LOOKALIKE_STREAM))
    if skull_defect is not None:
        defect = SkullDefect.draw(skull_defect, _stream(seed, _DEFECT_STREAM), head.outer_radius)
        head = dataclasses.replace(head, defect=defect)
    return head, rng


def _typed_label(rendered: Rendered, lesions: list[Lesion], label: np.ndarray) -> np.ndarray:
    """Each labelled voxel's subtype value, from the lesion with most blood in it."""
    values = np.zeros(len(lesions) + 1, np.uint8)
    for i, lesion in enumerate(lesions, start=1):
        values[i] = subtype_value(lesion.kind)
    return np.where(label, values[rendered.dominant], np.uint8(0))


def _stream(seed: int, purpose: int) -> np.random.Generator:
    """A generator for one purpose, independent of ``default_rng(seed)`` and of the others."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose,)))


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a data set seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])
