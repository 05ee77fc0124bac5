"""One phantom from one seed: head, grid, lesions, rendering and noise, in a fixed order."""

from __future__ import annotations

import numpy as np

from ichseg.data.synth.anatomy import Head
from ichseg.data.synth.lesions import draw_lesions
from ichseg.data.synth.render import ct_noise, draw_grid, render, size_spec
from ichseg.data.synth.vocabulary import (
    HEMORRHAGE_TYPES,
    NO_HEMORRHAGE_RATE,
    SyntheticCase,
    Tissue,
)
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage


def generate_case(seed: int, size: str = "small", hemorrhage: bool | None = None) -> SyntheticCase:
    """Draw one head CT (int16 HU) with its hemorrhage label; the same seed gives the same case.

    ``hemorrhage`` forces a case with (True) or without (False) bleeding; None draws it, about
    :data:`NO_HEMORRHAGE_RATE` of cases having none.
    """
    spec = size_spec(size)
    if seed < 0:
        raise InputError(f"seed {seed}: must be zero or positive")
    rng = np.random.default_rng(seed)
    head = Head.draw(rng)
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
    present = {lesions[i - 1].kind for i in np.unique(rendered.dominant[label]) if i > 0}
    types = tuple(sorted(present, key=HEMORRHAGE_TYPES.index))

    correlation = 0.8 if spec.render_factor < 1 else 0.5
    hu = rendered.hu + ct_noise(rng, rendered.hu.shape, head.hu["noise"], correlation)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    origin = (grid.first[2], grid.first[1], grid.first[0])
    image = CTImage(array=array, spacing=grid.spacing, origin=origin,
                    metadata={"synthetic_seed": seed, "synthetic_size": size})
    volume_ml = float(label.sum()) * image.voxel_volume_ml
    return SyntheticCase(image, label.astype(np.uint8), tissues, rendered.pure, types, volume_ml)


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a data set seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])
