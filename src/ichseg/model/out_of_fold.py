"""Out-of-fold predictions: what each cross-validation model says about the cases it did not see.

Kept beside the model folder's groups (``GROUP/oof/CASE.npz``), so that ensembles and
postprocessing rules can be compared out of fold (:mod:`ichseg.crossval`) without training or
predicting again. A one-class model's file holds P(hemorrhage) quantised to uint8 (p × 255) as
``probability`` (z, y, x), and its ``fold``. A model of K classes keeps each hemorrhage class's
probability the same way, ``probability`` (K - 1, z, y, x), with the class names (background
first) as ``classes``; the background's probability is what the others leave (1 - their sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ichseg.atomic import atomic_file
from ichseg.errors import ModelError
from ichseg.io.image import load_image
from ichseg.labels import ONE_CLASS, LabelError, LabelScheme
from ichseg.model.folder import ModelFolder


def write_out_of_fold(folder: ModelFolder, images: Path, group: str, fold: int | str, cases: Sequence[str],
                      image_suffix: str, device: Any, bar: Any) -> None:
    """Predict a fold's validation cases (``images / CASE + image_suffix``) with that fold's model
    and keep each case's probabilities; cases already stored are skipped (a resumed training)."""
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
        stored = stored_probabilities(output.probability.float().cpu().numpy(), models.labels)
        with atomic_file(oof_dir / f"{case}.npz", overwrite=True) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **cast(dict[str, Any], stored), fold=fold)
        bar.advance(task)
    bar.remove_task(task)


def stored_probabilities(probability: np.ndarray, labels: LabelScheme) -> dict[str, np.ndarray]:
    """A case's file entries for a model's output (P(hemorrhage), or the class probabilities
    (K, z, y, x) with several hemorrhage classes)."""
    if not labels.is_multiclass:
        return {"probability": _quantised(probability)}
    return {"probability": _quantised(probability[1:]), "classes": np.array(labels.names)}


def _quantised(probability: np.ndarray) -> np.ndarray:
    return np.round(probability * 255).astype(np.uint8)


def read_out_of_fold(path: Path) -> tuple[np.ndarray, LabelScheme]:
    """One case's probabilities (float32 in [0, 1]) and classes: P(hemorrhage) (z, y, x) for one
    class; with several, every class's probability (K, z, y, x), the background's rebuilt."""
    with np.load(path) as data:
        stored = data["probability"]
        if "classes" not in data:
            return stored.astype(np.float32) / 255.0, ONE_CLASS
        labels = _labels(data["classes"], path)
    probabilities = np.empty((len(stored) + 1, *stored.shape[1:]), dtype=np.float32)
    np.divide(stored, np.float32(255.0), out=probabilities[1:], dtype=np.float32)
    np.subtract(np.float32(1.0), probabilities[1:].sum(axis=0), out=probabilities[0])
    np.clip(probabilities[0], 0.0, 1.0, out=probabilities[0])
    return probabilities, labels


def out_of_fold_labels(path: Path) -> LabelScheme:
    """The classes of one case's file, without reading its probabilities."""
    with np.load(path) as data:
        return _labels(data["classes"], path) if "classes" in data else ONE_CLASS


def _labels(names: np.ndarray, path: Path) -> LabelScheme:
    try:
        return LabelScheme(tuple(str(name) for name in names))
    except LabelError as error:
        raise ModelError(f"{path}: {error}") from None


def out_of_fold_files(folder: ModelFolder, group: str) -> dict[str, Path]:
    """A group's out-of-fold file of each validation case, by case name."""
    return {path.stem: path for path in sorted(folder.oof_dir(group).glob("*.npz"))}


def load_out_of_fold(folder: ModelFolder, group: str) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities per validation case of a group (:func:`read_out_of_fold`)."""
    return {name: read_out_of_fold(path)[0] for name, path in out_of_fold_files(folder, group).items()}
