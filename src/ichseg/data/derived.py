"""Data sets derived from an imported one by a recipe's CT preprocessing (windowing, padding).

nnU-Net plans and trains on files, so a recipe that windows or pads the CT gets its own raw data
set, ``NAME__SLUG`` (for example ``demo__w59l96-pad1``), built once from the imported one. Prediction
applies the same :class:`~ichseg.preprocessing.CTPreprocessing` in memory. The derived set keeps
the imported one's classes: its label values (padded slices repeat the edge slices' labels) and
the ``labels`` of its ``dataset.json``; it is built again when those change (a data set imported
again with other classes).
"""

from __future__ import annotations

import json
import shutil

from ichseg.atomic import atomic_dir
from ichseg.io.image import load_image, save_image
from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.progress import progress_bar
from ichseg.workspace import Workspace

IMAGE_SUFFIX = "_0000.nii.gz"


def derived_dataset(workspace: Workspace, dataset: str, preprocessing: CTPreprocessing,
                    progress: bool = True) -> str:
    """The nnU-Net folder name of ``dataset`` as ``preprocessing`` transforms it (built if needed)."""
    base = workspace.dataset_folder_name(dataset)
    if preprocessing.is_identity:
        return base
    name = f"{dataset}__{preprocessing.slug}"
    folder_name = workspace.new_dataset_folder_name(name)
    target = workspace.raw / folder_name
    wanted = {"derived_from": base, "preprocessing": preprocessing.to_dict()}
    source = workspace.raw / base
    dataset_json = json.loads((source / "dataset.json").read_text())
    if (target / "dataset.json").is_file():
        existing = json.loads((target / "dataset.json").read_text())
        if existing.get("labels") == dataset_json["labels"] and all(
                existing.get("ichseg", {}).get(k) == v for k, v in wanted.items()):
            return folder_name
    dataset_json["name"] = name
    dataset_json["ichseg"] = dict(dataset_json.get("ichseg", {}), **wanted)
    images = sorted((source / "imagesTr").glob(f"*{IMAGE_SUFFIX}"))
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for image_path in progress_bar(images, f"Preprocessing {dataset} for {preprocessing.slug}", progress):
            case = image_path.name[: -len(IMAGE_SUFFIX)]
            save_image(preprocessing.apply(load_image(image_path)), tmp / "imagesTr" / image_path.name)
            label = load_image(source / "labelsTr" / f"{case}.nii.gz")
            save_image(preprocessing.apply(label, is_label=True), tmp / "labelsTr" / f"{case}.nii.gz")
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    stale = workspace.preprocessed / folder_name
    if stale.exists():
        shutil.rmtree(stale)
    return folder_name
