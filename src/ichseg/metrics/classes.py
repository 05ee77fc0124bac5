"""Which classes a folder of reference masks holds, and the checks a label map must pass.

A mask is binary (INSTANCE) unless its classes are named: by a ``labels.json`` (nnU-Net's
``labels`` mapping, which ``ichseg synth --subtypes`` writes) or a ``dataset.json`` (nnU-Net's
raw data set) inside the reference folder or one level above it, or by the caller
(``--labels EDH=1,IPH=2,...``). Nothing is guessed: a value above 1 in masks whose classes are
not named, and a value outside the named classes, is refused with the file and the values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ichseg.errors import InputError
from ichseg.labels import BACKGROUND, LabelError, LabelScheme

#: The name of the union of every hemorrhage class ("any hemorrhage") in tables and files.
ANY = "any"

#: Files that name the classes, looked for in this order.
LABELS_FILES = ("labels.json", "dataset.json")

#: How many offending values an error message lists.
_SHOWN_VALUES = 8


@dataclass(frozen=True)
class EvaluationLabels:
    """The classes of the masks evaluated, and where their names come from (a file or an option)."""

    scheme: LabelScheme
    source: str

    @property
    def is_multiclass(self) -> bool:
        return self.scheme.is_multiclass

    def as_dict(self) -> dict[str, object]:
        return {"classes": self.scheme.to_dataset_json(), "source": self.source}


def parse_labels_option(text: str) -> LabelScheme:
    """``"EDH=1,IPH=2,..."``: the class of each mask value; 0 is the background.

    Raises :class:`~ichseg.labels.LabelError` for a malformed entry, and for values that do not
    run 1..K-1 (``LabelScheme``'s rule).
    """
    mapping: dict[str, object] = {BACKGROUND: 0}
    for item in text.split(","):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not (name and equals and value.isdigit()):
            raise LabelError(f"--labels {text!r}: expected NAME=VALUE entries separated by commas, "
                             f"got {item.strip()!r}")
        if name in mapping or name == ANY:
            raise LabelError(f"--labels {text!r}: the name {name!r} is used twice or reserved")
        mapping[name] = int(value)
    return LabelScheme.from_dataset_json(mapping)


def find_label_scheme(ref: Path) -> EvaluationLabels | None:
    """The classes named beside the references: in the reference folder (for one file, its
    folder) or the folder above; None when no file names them."""
    ref = Path(ref)
    folder = ref if ref.is_dir() else ref.parent
    for where in (folder, folder.parent):
        for name in LABELS_FILES:
            path = where / name
            if path.is_file():
                return EvaluationLabels(_read_scheme(path), str(path))
    return None


def _read_scheme(path: Path) -> LabelScheme:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the class names: {error}") from None
    labels = content.get("labels", content) if isinstance(content, dict) else None
    if not isinstance(labels, dict):
        raise InputError(f"{path}: no 'labels' mapping of class names to values")
    try:
        scheme = LabelScheme.from_dataset_json(labels)
    except LabelError as error:
        raise InputError(f"{path}: {error}") from None
    if ANY in scheme.names:
        raise InputError(f"{path}: a class named {ANY!r} would be confused with any hemorrhage")
    return scheme


def label_map(array: np.ndarray, labels: EvaluationLabels | None, path: object,
              what: str) -> np.ndarray:
    """The mask as uint8 values 0..K-1 (0 and 1 without ``labels``); InputError naming the
    file and the values otherwise."""
    array = np.asarray(array)
    n_classes = 2 if labels is None else labels.scheme.n_classes
    if array.dtype == bool:
        return array.view(np.uint8)
    if not array.size:
        return array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise InputError(f"{path}: the {what} mask has voxel type {array.dtype}, not whole numbers")
    if array.min() >= 0 and array.max() < n_classes and (
            array.dtype.kind != "f" or np.array_equal(array, np.round(array))):
        return array if array.dtype == np.uint8 else array.astype(np.uint8)
    stray = np.unique(array[(array < 0) | (array >= n_classes) | (array != np.round(array))])
    shown = ", ".join(f"{value:g}" for value in stray[:_SHOWN_VALUES].tolist())
    shown += ", ..." if stray.size > _SHOWN_VALUES else ""
    if labels is None:
        raise InputError(f"{path}: the {what} is not a binary mask: it holds {shown}; to evaluate "
                         f"a label map, name its classes in {' or '.join(LABELS_FILES)} beside "
                         f"the references or with --labels NAME=VALUE,...")
    raise InputError(f"{path}: the {what} holds {shown}, outside the classes "
                     f"0-{n_classes - 1} named by {labels.source}")
