"""Planning and training recipes: the API behind ``ichseg plan`` and ``ichseg train``.

This module works with recipes and model folders: which models a recipe trains and in what
order, the folder's description, resuming, progress and out-of-fold predictions; it imports no
nnU-Net code. Each model is trained by :func:`ichseg.engine.training.train_model`, which runs
nnU-Net's trainer for one configuration and one fold.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ichseg import __version__
from ichseg.atomic import atomic_file, write_json
from ichseg.data.derived import IMAGE_SUFFIX, derived_dataset
from ichseg.errors import ModelError, WorkspaceError
from ichseg.models import FORMAT_VERSION, MODEL_FILE, ModelFolder, file_sha256, parse_folds
from ichseg.progress import TrainingEpoch, make_progress
from ichseg.recipes import Recipe, load_recipe
from ichseg.workspace import Workspace, WorkspaceLike

PLAN_CONFIGURATIONS = ("2d", "3d_fullres")


@dataclass(frozen=True)
class PlanResult:
    dataset: str
    recipe: str
    nnunet_dataset: str
    plans_name: str
    configurations: list[Any]


def _engine():
    """The nnU-Net engine, imported on first use (it is slow to import)."""
    from ichseg import engine

    return engine


def plan(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: str | Path | Workspace | None = None,
         configurations: Sequence[str] = PLAN_CONFIGURATIONS, num_processes: int | None = None,
         verbose: bool = False, progress: bool = True) -> PlanResult:
    """nnU-Net fingerprint, plans and preprocessing of an imported data set for a recipe.

    Recipes that window or pad the CT plan a derived data set (built here); recipes with a target
    spacing get their own plans identifier.
    """
    ws = _workspace(workspace)
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    folder_name = derived_dataset(ws, dataset, rec.preprocessing, progress=progress)
    engine = _engine()
    rule = rec.target_spacing.resolve if rec.target_spacing is not None else None
    processes = num_processes or engine.default_processes()
    with make_progress(progress) as bar:
        task = bar.add_task(f"Planning {dataset} ({', '.join(configurations)})", total=None)
        planned = engine.plan_dataset(ws, folder_name, configurations, rec.plans_name, rule,
                                      num_processes=processes, verbose=verbose)
        bar.update(task, total=1, completed=1)
    return PlanResult(dataset, rec.name, folder_name, rec.plans_name, planned)


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


def prepare_training(dataset: str, recipe: str | Recipe = "nnunet", *,
                     workspace: str | Path | Workspace | None = None,
                     folds: int | str | Sequence[int | str] | None = None, groups: Sequence[str] | None = None,
                     configuration: str | None = None, epochs: int | None = None, iterations: int | None = None,
                     val_iterations: int | None = None, checkpoint_every: int | None = None,
                     overwrite: bool = False) -> TrainingPlan:
    """Everything :func:`train` does before the first model trains (checks, the model folder and
    its description, the splits); the models themselves are left to :func:`run_job`, here or on
    a cluster (:mod:`ichseg.distributed`)."""
    ws = _workspace(workspace)
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    fold_list = parse_folds(folds, rec)
    chosen = rec.select_groups(list(groups) if groups else None, configuration)
    schedule = rec.training.overridden(epochs, iterations, val_iterations)
    folder_name = _planned_folder(ws, dataset, rec)
    engine = _engine()
    for group in chosen:
        engine.require_plans(ws, folder_name, rec.plans_name, group.configuration)
    model_dir = ws.model_dir(dataset, rec.name)
    if overwrite and model_dir.exists():
        shutil.rmtree(model_dir)
    folder = _prepare_model_folder(ws, model_dir, dataset, folder_name, rec, schedule, chosen)
    splits = engine.ensure_splits(ws, folder_name)
    every = checkpoint_every or min(50, schedule.epochs)
    jobs = [ModelJob(ws.root, model_dir, folder_name, ws.dataset_folder_name(dataset), rec.plans_name,
                     group.name, group.configuration, fold,
                     engine.TrainerParams(loss=group.loss, training=schedule, checkpoint_every=every),
                     tuple(splits[fold]["val"]) if isinstance(fold, int) else None)
            for group in chosen for fold in fold_list]
    return TrainingPlan(folder, jobs, schedule.epochs)


def run_job(job: ModelJob, device: str = "auto", on_epoch: Callable[[TrainingEpoch], None] | None = None,
            verbose: bool = False, bar: Any = None) -> JobOutcome:
    """Train (or resume, or skip) one model, then write its out-of-fold predictions."""
    engine = _engine()
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
            _write_out_of_fold(folder, ws, job.base_dataset, job.group, job.fold, job.val_cases, torch_device, bar)
    return JobOutcome(job.name, already_trained=finished, resumed_from=done)


def train(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: str | Path | Workspace | None = None,
          folds: int | str | Sequence[int | str] | None = None, groups: Sequence[str] | None = None,
          configuration: str | None = None, epochs: int | None = None, iterations: int | None = None,
          val_iterations: int | None = None, checkpoint_every: int | None = None, device: str = "auto",
          overwrite: bool = False, verbose: bool = False, progress: bool = True,
          ray: str | bool | None = None) -> ModelFolder:
    """Train a recipe's models (groups × folds) in order, resumably; returns the model folder.

    Finished models are skipped, an interrupted one continues from its last checkpoint, and each
    cross-validation model predicts its validation cases (out-of-fold probabilities) for ensembling
    and postprocessing studies. ``epochs``/``iterations`` shorten the schedule for quick runs.
    ``ray`` (True: a local Ray instance; an address: that cluster) trains them at once as Ray
    tasks instead, one GPU each where the cluster has GPUs (:mod:`ichseg.distributed`).
    The keyword arguments are ``ichseg train``'s options, one for one.
    """
    if ray:
        from ichseg.distributed import require_ray

        require_ray()
    else:
        _engine().resolve_device(device)  # a wrong device fails before anything is written
    plan = prepare_training(dataset, recipe, workspace=workspace, folds=folds, groups=groups,
                            configuration=configuration, epochs=epochs, iterations=iterations,
                            val_iterations=val_iterations, checkpoint_every=checkpoint_every,
                            overwrite=overwrite)
    if ray:
        from ichseg.distributed import train_on_ray

        return train_on_ray(plan, ray, verbose=verbose, report=None if progress else (lambda event: None))
    with make_progress(progress) as bar:
        overall = bar.add_task(f"Training {plan.folder.recipe_name} on {dataset}", total=len(plan.jobs))
        for job in plan.jobs:
            epoch_task = bar.add_task(f"  {job.name}", total=plan.epochs, every_step=True)

            def on_epoch(epoch: TrainingEpoch, task=epoch_task, name=job.name) -> None:
                bar.update(task, completed=epoch.done, description=f"  {name} ({epoch.summary})")

            run_job(job, device, on_epoch, verbose, bar)
            bar.remove_task(epoch_task)
            bar.advance(overall)
    return plan.folder


def _workspace(workspace: str | Path | Workspace | None) -> Workspace:
    return Workspace.coerce(workspace)


def _planned_folder(ws: Workspace, dataset: str, rec: Recipe) -> str:
    """The nnU-Net data set a recipe trains on: the imported one, or its derived copy."""
    base = ws.dataset_folder_name(dataset)
    if rec.preprocessing.is_identity:
        return base
    derived = f"{dataset}__{rec.preprocessing.slug}"
    if derived not in ws.datasets():
        raise WorkspaceError(f"data set {dataset!r} is not planned for recipe {rec.name!r}; "
                             f"run 'ichseg plan --dataset {dataset} --recipe {rec.name}' first")
    return ws.dataset_folder_name(derived)


def _prepare_model_folder(ws: Workspace, model_dir: Path, dataset: str, folder_name: str, rec: Recipe,
                          schedule: Any, chosen: Sequence[Any]) -> ModelFolder:
    """Create or extend ``ichseg_model.json``; refuse to mix schedules or recipes in one folder."""
    from ichseg.engine import nnunet_model_folder, nnunet_version

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


def _write_out_of_fold(folder: ModelFolder, ws: Workspace, base_folder: str, group: str, fold: int,
                       cases: Sequence[str], device: Any, bar: Any) -> None:
    """Predict a fold's validation cases and keep P(hemorrhage) as uint8 (p × 255) per case."""
    from ichseg.io.image import load_image
    from ichseg.model_set import ModelSet

    oof_dir = folder.oof_dir(group)
    todo = [c for c in cases if not (oof_dir / f"{c}.npz").is_file()]
    if not todo:
        return
    models = ModelSet(folder, folder.select([group], [fold]), device)
    task = bar.add_task(f"  {group} fold {fold}: out-of-fold predictions", total=len(todo))
    for case in todo:
        image = load_image(ws.raw / base_folder / "imagesTr" / f"{case}{IMAGE_SUFFIX}")
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


def untrained_model(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: WorkspaceLike = None,
                    folds: int | str | Sequence[int | str] | None = None, groups: Sequence[str] | None = None,
                    seed: int = 0, logit_scale: float = 1.0) -> ModelFolder:
    """A recipe's model folder with initial (random) weights instead of trained ones.

    The folder is complete and loads like a trained one (nnU-Net's own checkpoints, no
    out-of-fold predictions), so benchmarks and parity tests can run every route on real plans
    without training; see :func:`ichseg.engine.training.save_untrained_model` for ``logit_scale``.
    Each (group, fold) gets its own seed, derived from ``seed``.
    """
    ws = _workspace(workspace)
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    chosen = rec.select_groups(list(groups) if groups else None, None)
    folder_name = _planned_folder(ws, dataset, rec)
    engine = _engine()
    folder = _prepare_model_folder(ws, ws.model_dir(dataset, rec.name), dataset, folder_name, rec, rec.training, chosen)
    for index, (group, fold) in enumerate((g, f) for g in chosen for f in parse_folds(folds, rec)):
        params = engine.TrainerParams(loss=group.loss, training=rec.training)
        engine.save_untrained_model(ws, folder_name, rec.plans_name, group.configuration, fold, params,
                                    folder.group_dir(group.name), seed=seed + index, logit_scale=logit_scale)
    return folder
