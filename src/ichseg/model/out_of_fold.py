"""Out-of-fold predictions: what each cross-validation model says about the cases it did not see.

Kept beside the model folder's groups (``GROUP/oof/CASE.npz``) as P(hemorrhage) quantised to uint8
(p × 255), so that ensembles and postprocessing rules can be compared out of fold
(:mod:`ichseg.crossval`) without training or predicting again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.atomic import atomic_file
from ichseg.io.image import load_image
from ichseg.model.folder import ModelFolder


def write_out_of_fold(folder: ModelFolder, images: Path, group: str, fold: int | str, cases: Sequence[str],
                      image_suffix: str, device: Any, bar: Any) -> None:
    """Predict a fold's validation cases (``images / CASE + image_suffix``) with that fold's model
    and keep each case's P(hemorrhage); cases already stored are skipped (a resumed training)."""
    from ichseg.model.networks import ModelSet

    oof_dir = folder.oof_dir(group)
    todo = [case for case in cases if not (oof_dir / f"{case}.npz").is_file()]
    if not todo:
        return
    models = ModelSet(folder, folder.select([group], [fold]), device)
    task = bar.add_task(f"  {group} fold {fold}: out-of-fold predictions", total=len(todo))
    for case in todo:
        image = load_image(images / f"{case}{image_suffix}")
        (output,) = list(models.probabilities(models.prepare(image)))
        quantised = np.round(output.probability.float().cpu().numpy() * 255).astype(np.uint8)
        with atomic_file(oof_dir / f"{case}.npz", overwrite=True) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, probability=quantised, fold=fold)
        bar.advance(task)
    bar.remove_task(task)


def load_out_of_fold(folder: ModelFolder, group: str) -> dict[str, np.ndarray]:
    """Out-of-fold P(hemorrhage) per validation case of a group (float32 in [0, 1])."""
    found = {}
    for path in sorted(folder.oof_dir(group).glob("*.npz")):
        with np.load(path) as data:
            found[path.stem] = data["probability"].astype(np.float32) / 255.0
    return found
