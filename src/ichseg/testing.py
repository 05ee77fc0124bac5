"""Model folders with untrained networks, for parity tests and benchmarks on real plans.

Training takes minutes even for a smoke model; checking that every prediction route gives nnU-Net's
numbers, or timing them, needs only networks of the right shape. These folders load like trained
ones (nnU-Net's own checkpoints, no out-of-fold predictions).
"""

from __future__ import annotations

from collections.abc import Sequence

from ichseg.model.folder import ModelFolder, parse_folds
from ichseg.recipes import Recipe
from ichseg.training.jobs import describe_model_folder
from ichseg.training.planning import as_recipe, planned_folder
from ichseg.workspace import Workspace, WorkspaceLike


def untrained_model(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: WorkspaceLike = None,
                    folds: int | str | Sequence[int | str] | None = None, groups: Sequence[str] | None = None,
                    seed: int = 0, logit_scale: float = 1.0) -> ModelFolder:
    """A recipe's model folder with initial (random) weights instead of trained ones.

    See :func:`ichseg.engine.fold_training.save_untrained_model` for ``logit_scale``. Each
    (group, fold) gets its own seed, derived from ``seed``.
    """
    from ichseg import engine

    ws = Workspace.coerce(workspace)
    rec = as_recipe(recipe)
    chosen = rec.select_groups(list(groups) if groups else None, None)
    folder_name = planned_folder(ws, dataset, rec)
    folder = describe_model_folder(ws, ws.model_dir(dataset, rec.name), dataset, rec, rec.training, chosen)
    for index, (group, fold) in enumerate((g, f) for g in chosen for f in parse_folds(folds, rec)):
        params = engine.TrainerParams(loss=group.loss, training=rec.training)
        engine.save_untrained_model(ws, folder_name, rec.plans_name, group.configuration, fold, params,
                                    folder.group_dir(group.name), seed=seed + index, logit_scale=logit_scale)
    return folder
