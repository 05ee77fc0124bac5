"""A multi-class 3d model trained through ichseg's plan and train API on typed phantoms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ichseg.labels import SUBTYPES

#: The classes the phantoms' binary labels are split into, by thirds of the x axis.
REGION_CLASSES = (SUBTYPES.value("IPH"), SUBTYPES.value("IVH"), SUBTYPES.value("SDH"))


def type_by_region(label: np.ndarray) -> np.ndarray:
    """Typed labels from a binary one: each third of the x axis a different subtype."""
    thirds = np.minimum(np.arange(label.shape[2]) * 3 // label.shape[2], 2)
    return np.where(label > 0, np.asarray(REGION_CLASSES)[thirds][None, None, :], 0).astype(np.uint8)


@pytest.mark.slow
def test_li_chen_3d_model_trains_one_output_per_subtype(tmp_path):
    from ichseg.commands import train
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.engine.checkpoint import load_checkpoint
    from ichseg.io.image import load_image, save_mask
    from ichseg.training import plan
    from ichseg.workspace import Workspace

    source = tmp_path / "typed"
    synthesize(source, 5, seed=3, size="tiny", progress=False)
    present = set()
    for path in sorted((source / "label").glob("*.nii.gz")):
        label = load_image(path)
        typed = type_by_region(label.array)
        present |= set(np.unique(typed).tolist())
        save_mask(label, typed, path, overwrite=True)
    assert present > {0}
    (source / "labels.json").write_text(json.dumps(SUBTYPES.to_dataset_json()))

    ws = Workspace.open(tmp_path / "ws")
    assert import_dataset(source, "typed", ws, progress=False).labels == SUBTYPES
    plan("typed", "li2022", workspace=ws, configurations=("3d_fullres",), progress=False)
    folder = train("typed", "li2022", workspace=ws, groups=["3d_wce"], folds="full", epochs=1, iterations=2,
                   val_iterations=1, device="cpu", progress=False)

    (checkpoint_path,) = folder.path.rglob("checkpoint_final.pth")
    checkpoint = load_checkpoint(checkpoint_path)
    outputs = {name: tuple(weights.shape) for name, weights in checkpoint["network_weights"].items()
               if ".seg_layers." in name and name.endswith(".weight")}
    assert outputs and {shape[0] for shape in outputs.values()} == {SUBTYPES.n_classes}
    assert json.loads((checkpoint_path.parent.parent / "dataset.json").read_text())["labels"] == \
        SUBTYPES.to_dataset_json()
    assert np.isfinite(checkpoint["logging"]["train_losses"]).all()
    params = json.loads((checkpoint_path.parent / "trainer_params.json").read_text())
    assert params["loss"] == {"dice_weight": 0.6, "ce_weight": 0.4, "class_weights": [0.2, 0.8]}
