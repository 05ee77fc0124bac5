"""Planning and training a recipe's models: the work behind ``ichseg plan`` and ``ichseg train``.

:mod:`~ichseg.training.planning` plans a data set for a recipe; :mod:`~ichseg.training.jobs` turns a
recipe into the (group, fold) models to train and trains one; a runner runs them all
(:mod:`~ichseg.training.local` in this process; Ray's in :mod:`ichseg.distributed.ray_training`).
"""

from __future__ import annotations

from ichseg.model.folder import ModelFolder
from ichseg.recipes import Recipe
from ichseg.training.jobs import (
    TrainingPlan,
    TrainingRequest,
    TrainingRunner,
    prepare_training,
)
from ichseg.training.local import LocalRunner
from ichseg.training.planning import PlanResult, plan
from ichseg.workspace import WorkspaceLike

__all__ = ["LocalRunner", "PlanResult", "TrainingPlan", "TrainingRequest", "TrainingRunner", "plan",
           "train_recipe"]


def train_recipe(dataset: str, recipe: str | Recipe = "nnunet", request: TrainingRequest = TrainingRequest(), *,
                 workspace: WorkspaceLike = None, runner: TrainingRunner | None = None) -> ModelFolder:
    """Train a recipe's models (groups × folds) with ``runner`` (default: this machine), resumably.

    Finished models are skipped, an interrupted one continues from its last checkpoint, and each
    cross-validation model predicts its validation cases (out-of-fold probabilities) for ensembling
    and postprocessing studies.
    """
    runner = runner or LocalRunner()
    runner.check()
    return runner.run(prepare_training(dataset, recipe, request, workspace=workspace))
