"""A recipe's models as jobs: which (group, fold) models to train, into which model folder.

:func:`prepare_training` does everything before the first model trains (checks, the model folder
and its description, the splits) and returns a :class:`TrainingPlan`; a runner
(:class:`TrainingRunner`: :class:`ichseg.training.local.LocalRunner` here, or
:class:`ichseg.distributed.ray_training.RayRunner` on a cluster) runs each :class:`ModelJob` with
:func:`run_job`, which trains one model through nnU-Net and then writes its out-of-fold predictions.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ichseg.atomic import write_json
from ichseg.data.derived import IMAGE_SUFFIX
from ichseg.errors import ModelError
from ichseg.model.folder import (
    FORMAT_VERSION,
    MODEL_FILE,
    ModelFolder,
    file_sha256,
    parse_folds,
)
from ichseg.model.out_of_fold import write_out_of_fold
from ichseg.progress import TrainingEpoch, make_progress
from ichseg.recipes import Recipe, TrainingSpec
from ichseg.training.planning import as_recipe, planned_folder
from ichseg.version import __version__
from ichseg.workspace import Workspace, WorkspaceLike


@dataclass(frozen=True)
class ModelJob:
    """One (group, fold) model to train: all a process needs, with no open handle (it can be sent
    to another machine that sees the same workspace)."""

    workspace: Path
    model_dir: Path
    nnunet_dataset: str
    base_dataset: str
    plans_name: str
    group: str
    configuration: str
    fold: int | str
    params: Any
    val_cases: tuple[str, ...] | None

    @property
    def name(self) -> str:
        return f"{self.group} fold {self.fold}"


@dataclass(frozen=True)
class TrainingPlan:
    """A recipe's model folder, prepared, and the models to train into it, in recipe order."""

    folder: ModelFolder
    jobs: list[ModelJob]
    epochs: int


@dataclass(frozen=True)
class JobOutcome:
    """How a model's training went: ``already_trained``: it was finished before and nothing was
    trained; ``resumed_from``: the epochs its checkpoint held when it started (None: afresh)."""

    name: str
    already_trained: bool
    resumed_from: int | None


class TrainingRunner(Protocol):
    """Runs a :class:`TrainingPlan`'s jobs somewhere (this process, a cluster)."""

    def check(self) -> None:
        """Fail before anything is written when the runner cannot run (no such device, no Ray)."""

    def run(self, plan: TrainingPlan) -> ModelFolder:
        """Train every job of ``plan``; return its model folder."""


@dataclass(frozen=True)
class TrainingRequest:
    """Which models of a recipe to train, and for how long (``ichseg train``'s options)."""

    folds: int | str | Sequence[int | str] | None = None
    groups: Sequence[str] | None = None
    configuration: str | None = None
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    checkpoint_every: int | None = None
    overwrite: bool = False


def prepare_training(dataset: str, recipe: str | Recipe = "nnunet", request: TrainingRequest = TrainingRequest(),
                     *, workspace: WorkspaceLike = None) -> TrainingPlan:
    """Everything training does before the first model trains: checks, the model folder and its
    description, the splits; the models themselves are left to :func:`run_job`."""
    from ichseg import engine

    ws = Workspace.coerce(workspace)
    rec = as_recipe(recipe)
    fold_list = parse_folds(request.folds, rec)
    chosen = rec.select_groups(list(request.groups) if request.groups else None, request.configuration)
    schedule = rec.training.overridden(request.epochs, request.iterations, request.val_iterations)
    folder_name = planned_folder(ws, dataset, rec)
    for group in chosen:
        engine.require_plans(ws, folder_name, rec.plans_name, group.configuration)
    model_dir = ws.model_dir(dataset, rec.name)
    if request.overwrite and model_dir.exists():
        shutil.rmtree(model_dir)
    folder = describe_model_folder(ws, model_dir, dataset, rec, schedule, chosen)
    splits = engine.ensure_splits(ws, folder_name)
    every = request.checkpoint_every or min(50, schedule.epochs)
    jobs = [ModelJob(ws.root, model_dir, folder_name, ws.dataset_folder_name(dataset), rec.plans_name,
                     group.name, group.configuration, fold,
                     engine.TrainerParams(loss=group.loss, training=schedule, checkpoint_every=every),
                     tuple(splits[fold]["val"]) if isinstance(fold, int) else None)
            for group in chosen for fold in fold_list]
    return TrainingPlan(folder, jobs, schedule.epochs)


def run_job(job: ModelJob, device: str = "auto", on_epoch: Callable[[TrainingEpoch], None] | None = None,
            verbose: bool = False, bar: Any = None) -> JobOutcome:
    """Train (or resume, or skip) one model, then write its out-of-fold predictions."""
    from ichseg import engine

    ws = Workspace.open(job.workspace)
    folder = ModelFolder.open(job.model_dir)
    torch_device = engine.resolve_device(device)
    group_dir = folder.group_dir(job.group)
    finished, done = engine.training_state(group_dir, job.nnunet_dataset, job.plans_name, job.configuration,
                                           job.fold)
    with contextlib.ExitStack() as stack:
        bar = bar if bar is not None else stack.enter_context(make_progress(False))
        engine.train_model(ws, job.nnunet_dataset, job.plans_name, job.configuration, job.fold, job.params,
                           group_dir, torch_device, on_epoch, verbose)
        if job.val_cases is not None:
            write_out_of_fold(folder, ws.raw / job.base_dataset / "imagesTr", job.group, job.fold,
                              job.val_cases, IMAGE_SUFFIX, torch_device, bar)
    return JobOutcome(job.name, already_trained=finished, resumed_from=done)


def describe_model_folder(ws: Workspace, model_dir: Path, dataset: str, rec: Recipe, schedule: TrainingSpec,
                          chosen: Sequence[Any]) -> ModelFolder:
    """Create or extend ``ichseg_model.json``; refuse to mix schedules or recipes in one folder."""
    from ichseg.engine import nnunet_model_folder, nnunet_version

    folder_name = planned_folder(ws, dataset, rec)
    fingerprint = ws.preprocessed / folder_name / "dataset_fingerprint.json"
    recipe_dict = rec.to_dict()
    recipe_dict["training"] = {k: getattr(schedule, k) for k in recipe_dict["training"]}
    description: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dataset": dataset,
        "nnunet_dataset": folder_name,
        "plans_name": rec.plans_name,
        "recipe": recipe_dict,
        "preprocessing": rec.preprocessing.to_dict(),
        "groups": {},
        "versions": {"ichseg": __version__, "nnunetv2": nnunet_version()},
        "fingerprint_sha256": file_sha256(fingerprint) if fingerprint.is_file() else None,
    }
    existing_file = model_dir / MODEL_FILE
    if existing_file.is_file():
        existing = ModelFolder.open(model_dir).description
        for key in ("recipe", "nnunet_dataset", "plans_name", "fingerprint_sha256"):
            if existing.get(key) != description[key]:
                raise ModelError(f"{model_dir}: was trained with a different {key.replace('_', ' ')}; "
                                 f"use --overwrite to start again")
        description["groups"] = existing["groups"]
    for group in chosen:
        nnunet_folder = nnunet_model_folder(model_dir / group.name, folder_name, rec.plans_name,
                                            group.configuration)
        description["groups"][group.name] = {
            "configuration": group.configuration,
            "nnunet_folder": str(nnunet_folder.relative_to(model_dir)),
        }
    write_json(existing_file, description, overwrite=True)
    return ModelFolder.open(model_dir)
