"""A recipe's derived data set (windowed, padded) keeps the imported data set's classes."""

from __future__ import annotations

import json

import numpy as np

from ichseg.data.derived import derived_dataset
from ichseg.data.importer import import_dataset
from ichseg.io.image import load_image, save_image, save_mask
from ichseg.labels import ONE_CLASS, SUBTYPES
from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.workspace import Workspace
from phantoms import head_phantom

LIANGWEI = CTPreprocessing(window_level=96, window_width=59, pad_slices=1)


def typed_source(root):
    """Two phantoms whose blood is IPH on one side and SDH on the other, with labels.json."""
    for seed in (0, 1):
        image = head_phantom(seed)
        x = np.broadcast_to(np.arange(image.shape[2]), image.shape)
        blood = np.abs(image.array - 70) <= 4  # the phantom's blob: 70 HU with noise of ±4
        typed = np.where(blood, np.where(x < image.shape[2] * 0.65, SUBTYPES.value("IPH"),
                                         SUBTYPES.value("SDH")), 0)
        save_image(image, root / "data" / f"case{seed}.nii.gz")
        save_mask(image, typed, root / "label" / f"case{seed}.nii.gz")
    (root / "labels.json").write_text(json.dumps(SUBTYPES.to_dataset_json()))
    return root


def test_derived_data_set_carries_the_subtypes_and_follows_a_new_import(tmp_path):
    source = typed_source(tmp_path / "typed")
    ws = Workspace.open(tmp_path / "ws")
    imported = import_dataset(source, "typed", ws, progress=False)

    folder = ws.raw / derived_dataset(ws, "typed", LIANGWEI, progress=False)
    assert json.loads((folder / "dataset.json").read_text())["labels"] == SUBTYPES.to_dataset_json()
    for case in ("case0", "case1"):
        original = load_image(imported.folder / "labelsTr" / f"{case}.nii.gz").array
        derived = load_image(folder / "labelsTr" / f"{case}.nii.gz").array
        assert set(np.unique(original)) == {0, 2, 5}
        assert derived.dtype == np.uint8
        np.testing.assert_array_equal(derived, np.concatenate([original[:1], original, original[-1:]]))

    # the same data imported again as one class: the derived set is built again with it
    import_dataset(source, "typed", ws, progress=False, overwrite=True, labels="hemorrhage=2+5")
    assert ws.raw / derived_dataset(ws, "typed", LIANGWEI, progress=False) == folder
    assert json.loads((folder / "dataset.json").read_text())["labels"] == ONE_CLASS.to_dataset_json()
    assert set(np.unique(load_image(folder / "labelsTr" / "case0.nii.gz").array)) == {0, 1}
