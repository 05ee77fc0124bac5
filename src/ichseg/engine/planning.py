"""nnU-Net's fingerprint, plans and preprocessing for a data set in the workspace."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nnunetv2.experiment_planning.plan_and_preprocess_api import (
    extract_fingerprint_dataset,
    plan_experiment_dataset,
    preprocess_dataset,
)
from nnunetv2.utilities.crossval_split import generate_crossval_split

from ichseg.engine.environment import captured_output, nnunet_paths
from ichseg.errors import WorkspaceError
from ichseg.workspace import Workspace

#: nnU-Net's seed for its five-fold split; every model group of a data set shares the split.
SPLIT_SEED = 12345
N_FOLDS = 5

TargetSpacingRule = Callable[[tuple[float, float, float]], tuple[float, float, float]]


@dataclass(frozen=True)
class PlannedConfiguration:
    name: str
    patch_size: tuple[int, ...]
    batch_size: int
    spacing: tuple[float, ...]


def dataset_id(folder_name: str) -> int:
    return int(folder_name[len("Dataset"):len("Dataset") + 3])


def plans_file(workspace: Workspace, folder_name: str, plans_name: str) -> Path:
    return workspace.preprocessed / folder_name / f"{plans_name}.json"


def plan_dataset(workspace: Workspace, folder_name: str, configurations: Sequence[str],
                 plans_name: str = "nnUNetPlans", target_spacing: TargetSpacingRule | None = None,
                 num_processes: int = 2, verbose: bool = False) -> list[PlannedConfiguration]:
    """Fingerprint, plan and preprocess ``configurations`` of a raw data set.

    ``target_spacing`` maps the data set's median spacing (z, y, x) to the 3d_fullres target spacing
    (slice-spacing normalisation); None keeps nnU-Net's own choice.
    """
    number = dataset_id(folder_name)
    log = workspace.preprocessed / folder_name / "ichseg_plan.log"
    # each of the three steps prints its progress and plans, whatever its verbose flag says
    with nnunet_paths(workspace), captured_output(log, verbose):
        fingerprint = extract_fingerprint_dataset(number, num_processes=num_processes, clean=True,
                                                  verbose=verbose, show_progress_bar=False)
        override = None
        if target_spacing is not None:
            median = tuple(float(s) for s in np.median(np.asarray(fingerprint["spacings"]), axis=0))
            override = target_spacing(median)  # type: ignore[arg-type]
        plan_experiment_dataset(number, overwrite_target_spacing=override, overwrite_plans_name=plans_name)
        plans = json.loads(plans_file(workspace, folder_name, plans_name).read_text())
        available = [c for c in configurations if c in plans["configurations"]]
        preprocess_dataset(number, plans_name, configurations=available,
                           num_processes=[num_processes] * len(available), verbose=verbose,
                           show_progress_bar=False)
    ensure_splits(workspace, folder_name)
    return [
        PlannedConfiguration(
            name=c,
            patch_size=tuple(plans["configurations"][c]["patch_size"]),
            batch_size=int(plans["configurations"][c]["batch_size"]),
            spacing=tuple(plans["configurations"][c]["spacing"]),
        )
        for c in available
    ]


def ensure_splits(workspace: Workspace, folder_name: str) -> list[dict[str, list[str]]]:
    """nnU-Net's seeded five-fold split of the data set, written once and shared by all models."""
    splits_path = workspace.preprocessed / folder_name / "splits_final.json"
    if splits_path.is_file():
        return json.loads(splits_path.read_text())
    labels = workspace.raw / folder_name / "labelsTr"
    cases = sorted(p.name[: -len(".nii.gz")] for p in labels.glob("*.nii.gz"))
    if len(cases) < N_FOLDS:
        raise WorkspaceError(f"data set {folder_name}: {len(cases)} cases; five-fold cross-validation needs "
                             f"at least {N_FOLDS}")
    splits = generate_crossval_split(cases, seed=SPLIT_SEED, n_splits=N_FOLDS)
    splits_path.write_text(json.dumps(splits, indent=2))
    return splits


def require_plans(workspace: Workspace, folder_name: str, plans_name: str, configuration: str) -> dict:
    """The plans of a planned data set, or an error telling the user to run ``ichseg plan``."""
    path = plans_file(workspace, folder_name, plans_name)
    if not path.is_file():
        raise WorkspaceError(f"data set {folder_name} has no plans {plans_name!r}; run 'ichseg plan' first")
    plans = json.loads(path.read_text())
    if configuration not in plans["configurations"]:
        raise WorkspaceError(f"plans {path} have no configuration {configuration!r}")
    data_dir = workspace.preprocessed / folder_name / plans["configurations"][configuration]["data_identifier"]
    if not data_dir.is_dir():
        raise WorkspaceError(f"data set {folder_name}: configuration {configuration!r} is not preprocessed; "
                             f"run 'ichseg plan' first")
    return plans
