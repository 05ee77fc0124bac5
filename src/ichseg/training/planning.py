"""``ichseg plan``: nnU-Net's fingerprint, plans and preprocessing of an imported data set for a recipe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ichseg.data.derived import derived_dataset
from ichseg.errors import WorkspaceError
from ichseg.progress import make_progress
from ichseg.recipes import Recipe, load_recipe
from ichseg.workspace import Workspace

PLAN_CONFIGURATIONS = ("2d", "3d_fullres")


@dataclass(frozen=True)
class PlanResult:
    dataset: str
    recipe: str
    nnunet_dataset: str
    plans_name: str
    configurations: list[Any]


def plan(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: str | Path | Workspace | None = None,
         configurations: Sequence[str] = PLAN_CONFIGURATIONS, num_processes: int | None = None,
         verbose: bool = False, progress: bool = True) -> PlanResult:
    """nnU-Net fingerprint, plans and preprocessing of an imported data set for a recipe.

    Recipes that window or pad the CT plan a derived data set (built here); recipes with a target
    spacing get their own plans identifier.
    """
    from ichseg import engine

    ws = Workspace.coerce(workspace)
    rec = as_recipe(recipe)
    folder_name = derived_dataset(ws, dataset, rec.preprocessing, progress=progress)
    rule = rec.target_spacing.resolve if rec.target_spacing is not None else None
    processes = num_processes or engine.default_processes()
    with make_progress(progress) as bar:
        task = bar.add_task(f"Planning {dataset} ({', '.join(configurations)})", total=None)
        planned = engine.plan_dataset(ws, folder_name, configurations, rec.plans_name, rule,
                                      num_processes=processes, verbose=verbose)
        bar.update(task, total=1, completed=1)
    return PlanResult(dataset, rec.name, folder_name, rec.plans_name, planned)


def as_recipe(recipe: str | Recipe) -> Recipe:
    """A recipe given by name (or a JSON path), or as it is."""
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def planned_folder(ws: Workspace, dataset: str, rec: Recipe) -> str:
    """The nnU-Net data set a recipe trains on: the imported one, or its derived copy."""
    base = ws.dataset_folder_name(dataset)
    if rec.preprocessing.is_identity:
        return base
    derived = f"{dataset}__{rec.preprocessing.slug}"
    if derived not in ws.datasets():
        raise WorkspaceError(f"data set {dataset!r} is not planned for recipe {rec.name!r}; "
                             f"run 'ichseg plan --dataset {dataset} --recipe {rec.name}' first")
    return ws.dataset_folder_name(derived)
