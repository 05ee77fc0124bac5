"""Self-describing model folders: everything needed to predict, in one folder.

Layout of ``WORKSPACE/models/DATASET/RECIPE/``::

    ichseg_model.json        recipe, preprocessing, plans, versions, data set fingerprint
    postprocessing.json      the component rule chosen by cross-validation (optional)
    GROUP/                   one folder per model group, in nnU-Net's own results layout:
      DatasetNNN_X/IchsegTrainer__PLANS__CONFIG/{plans.json,dataset.json,fold_K/checkpoint_final.pth}
      oof/CASE.npz           out-of-fold hemorrhage probability of each validation case

``ichseg predict --model DIR`` reads nothing outside this folder.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ichseg.errors import IchsegError, ModelError
from ichseg.labels import LabelScheme
from ichseg.layout import (
    FINAL_CHECKPOINT,
    FOLD_PREFIX,
    final_checkpoint,
    fold_of_folder,
)
from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.recipes import MAX_FOLDS, Recipe
from ichseg.workspace import Workspace, WorkspaceLike

MODEL_FILE = "ichseg_model.json"
POSTPROCESSING_FILE = "postprocessing.json"
FORMAT_VERSION = 1


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_folds(folds: int | str | Sequence[int | str] | None, recipe: Recipe) -> list[int | str]:
    """What ``--fold`` takes, for training and prediction alike: ``None``/``"all"``: every
    cross-validation fold of the recipe; ``"full"``: nnU-Net's fold 'all' (the model trained on
    all cases); a fold 0-4, or a list of them (``"0,1"``, ``[0, "full"]``)."""
    if folds is None or folds == "all":
        return list(recipe.folds)
    items = folds if isinstance(folds, (list, tuple)) else str(folds).split(",")
    parsed: list[int | str] = []
    for item in items:
        text = str(item).strip()
        if text == "full" or (text == "all" and isinstance(folds, (list, tuple))):
            parsed.append("all")  # nnU-Net's fold 'all'; in a list, "all" can mean only that
            continue
        if not text.isdigit() or not 0 <= int(text) < MAX_FOLDS:
            raise IchsegError(f"fold {text!r} is out of range: use 0-{MAX_FOLDS - 1}, 'all' (every fold) "
                              f"or 'full' (one model on all cases)")
        parsed.append(int(text))
    return parsed


@dataclass(frozen=True)
class TrainedModel:
    group: str
    configuration: str
    fold: int | str
    nnunet_folder: Path

    @property
    def checkpoint(self) -> Path:
        return final_checkpoint(self.nnunet_folder, self.fold)


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    description: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> ModelFolder:
        path = Path(path)
        file = path / MODEL_FILE
        if not file.is_file():
            raise ModelError(f"{path}: not an ichseg model folder (no {MODEL_FILE})")
        try:
            description = json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise ModelError(f"{file}: unreadable ({error})") from None
        for key in ("recipe", "groups", "preprocessing", "nnunet_dataset", "plans_name"):
            if key not in description:
                raise ModelError(f"{file}: missing field '{key}'")
        return cls(path, description)

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.description["recipe"], f"{self.path / MODEL_FILE}: recipe")

    @property
    def recipe_name(self) -> str:
        return str(self.description["recipe"]["name"])

    @property
    def dataset(self) -> str:
        return str(self.description.get("dataset", ""))

    @property
    def preprocessing(self) -> CTPreprocessing:
        return CTPreprocessing.from_dict(self.description["preprocessing"])

    @property
    def labels(self) -> LabelScheme:
        """The classes the folder's models segment: their nnU-Net dataset.json's labels (every
        group of a folder is trained on the same data set)."""
        group = next(iter(self.description["groups"]))
        path = self.nnunet_folder(group) / "dataset.json"
        _require_json(path)
        try:
            return LabelScheme.from_dataset_json(json.loads(path.read_text(encoding="utf-8"))["labels"])
        except (KeyError, IchsegError) as error:
            raise ModelError(f"{path}: no usable labels ({error})") from None

    def group_dir(self, group: str) -> Path:
        return self.path / group

    def oof_dir(self, group: str) -> Path:
        return self.group_dir(group) / "oof"

    def nnunet_folder(self, group: str) -> Path:
        return self.path / self.description["groups"][group]["nnunet_folder"]

    def trained_models(self) -> list[TrainedModel]:
        """Every finished (group, fold) in the folder, in recipe order."""
        found = []
        for group, info in self.description["groups"].items():
            nnunet_folder = self.nnunet_folder(group)
            for fold_dir in sorted(nnunet_folder.glob(f"{FOLD_PREFIX}*")):
                fold = fold_of_folder(fold_dir.name)
                if fold is not None and (fold_dir / FINAL_CHECKPOINT).is_file():
                    found.append(TrainedModel(group, info["configuration"], fold, nnunet_folder))
        return found

    def require_models(self) -> list[TrainedModel]:
        models = self.trained_models()
        if not models:
            raise ModelError(f"{self.path}: no finished model (no {FINAL_CHECKPOINT}); train it first")
        for model in models:
            for name in ("plans.json", "dataset.json"):
                _require_json(model.nnunet_folder / name)
        return models

    def check_files(self, models: Sequence[TrainedModel]) -> None:
        """Cheap checks (no torch) that ``models``' checkpoints are whole PyTorch files (a zip
        archive with its directory at the end: a truncated copy fails) and that a saved
        postprocessing rule reads as JSON."""
        for model in models:
            checkpoint = model.checkpoint
            if checkpoint.stat().st_size == 0 or not zipfile.is_zipfile(checkpoint):
                raise ModelError(f"{checkpoint}: damaged checkpoint (not a complete PyTorch file); "
                                 f"copy or train this model again")
        if self.postprocessing_file.exists():
            _require_json(self.postprocessing_file)

    def select(self, groups: Sequence[str] | None = None,
               folds: Sequence[int | str] | None = None) -> list[TrainedModel]:
        """The finished models of ``groups`` and ``folds`` (all when None), checked to exist."""
        models = self.require_models()
        if groups:
            unknown = set(groups) - {m.group for m in models}
            if unknown:
                raise ModelError(f"{self.path}: no trained group(s) {sorted(unknown)}")
            models = [m for m in models if m.group in groups]
        if folds is not None:
            models = [m for m in models if m.fold in folds]
            if not models:
                raise ModelError(f"{self.path}: no trained model for fold(s) {list(folds)}")
        return models

    @property
    def postprocessing_file(self) -> Path:
        return self.path / POSTPROCESSING_FILE


def _require_json(path: Path) -> None:
    """A model folder's JSON file must be there and parse."""
    if not path.is_file():
        raise ModelError(f"{path.parent}: incomplete model folder ({path.name} missing)")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({error})") from None


def resolve_model(model: str | Path | None = None, *, dataset: str | None = None, recipe: str | None = None,
                  workspace: WorkspaceLike = None) -> ModelFolder:
    """A model folder given directly, or the workspace's model of ``dataset`` and ``recipe``."""
    if model is not None:
        return ModelFolder.open(model)
    if dataset is None:
        raise ModelError("give a model folder (--model DIR) or a data set (--dataset NAME) whose model to use")
    return ModelFolder.open(Workspace.coerce(workspace).model_dir(dataset, recipe or "nnunet"))


def training_slice_thickness(models: Sequence[TrainedModel]) -> float | None:
    """The slice spacing (mm) the models were trained at, from their nnU-Net plans: a 3D
    configuration's target spacing along the slices, a 2D one's data set median; the median over
    ``models``. None when the plans give none. Read without nnU-Net or torch."""
    spacings = []
    for trained in models:
        plans = json.loads((trained.nnunet_folder / "plans.json").read_text())  # checked by select()
        configuration = plans.get("configurations", {}).get(trained.configuration, {})
        spacing = configuration.get("spacing") or []
        if len(spacing) != 3:
            spacing = plans.get("original_median_spacing_after_transp") or []
        backward = plans.get("transpose_backward") or [0, 1, 2]
        if len(spacing) == 3:  # plans list spacings in nnU-Net's transposed axis order
            spacings.append(float(spacing[backward[0]]))
    return float(statistics.median(spacings)) if spacings else None
