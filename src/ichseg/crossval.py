"""Cross-validation studies on a trained recipe's out-of-fold predictions.

Every cross-validation model predicted the cases it did not see; these out-of-fold probabilities
let us compare model groups and ensemble strategies (Li & Chen's Table 1) and choose a
postprocessing rule without training anything again. Each out-of-fold case has one model per
group (the fold that held it out), so the ensembles here combine C = number of groups models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.atomic import write_text
from ichseg.data.derived import IMAGE_SUFFIX
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import ModelError
from ichseg.io.image import load_image
from ichseg.metrics.case import DEFAULT_NSD_TOLERANCE_MM
from ichseg.model.folder import ModelFolder
from ichseg.model.out_of_fold import load_out_of_fold
from ichseg.progress import progress_bar
from ichseg.workspace import Workspace, WorkspaceLike

#: Ensemble strategies compared in the report, by label.
STRATEGIES: dict[str, EnsembleSpec] = {
    "mean probability": EnsembleSpec("mean"),
    "majority vote": EnsembleSpec("vote"),
    "uncertainty (printed HR)": EnsembleSpec("uncertainty", reading="printed"),
    "uncertainty (majority HR)": EnsembleSpec("uncertainty", reading="majority"),
}


@dataclass(frozen=True)
class OutOfFoldCase:
    name: str
    reference: np.ndarray
    spacing: tuple[float, float, float]
    probabilities: dict[str, np.ndarray]


@dataclass(frozen=True)
class CVReport:
    results: dict[str, list[dict[str, float]]]
    markdown: str
    csv: str
    n_cases: int
    groups: list[str]


def _workspace_of(folder: ModelFolder, workspace: WorkspaceLike) -> Workspace:
    """The workspace holding the references: given, or the one the model folder lives in."""
    if workspace is not None:
        return Workspace.coerce(workspace)
    return Workspace.open(folder.path.resolve().parents[2])


def load_out_of_fold_cases(folder: ModelFolder, workspace: str | Path | Workspace | None = None,
                           progress: bool = True) -> list[OutOfFoldCase]:
    """Cases that every trained group predicted out of fold, with their reference masks."""
    groups = sorted({m.group for m in folder.trained_models()})
    per_group = {g: load_out_of_fold(folder, g) for g in groups}
    names = sorted(set.intersection(*(set(p) for p in per_group.values()))) if per_group else []
    if not names:
        raise ModelError(f"{folder.path}: no out-of-fold predictions; train cross-validation folds "
                         f"(--fold 0-4 or all) first")
    ws = _workspace_of(folder, workspace)
    labels = ws.raw / ws.dataset_folder_name(folder.dataset) / "labelsTr"
    cases = []
    for name in progress_bar(names, "Reading references", progress):
        reference = load_image(labels / f"{name}.nii.gz")
        cases.append(OutOfFoldCase(name, reference.array.astype(bool), reference.spacing,
                                   {g: per_group[g][name] for g in groups}))
    return cases


def ensemble_out_of_fold(case: OutOfFoldCase, spec: EnsembleSpec) -> tuple[np.ndarray, Any]:
    """One case's ensemble mask over its groups' out-of-fold probabilities."""
    from ichseg.ensemble import EnsembleAccumulator, ensemble_mask

    accumulator = EnsembleAccumulator(case.reference.shape)
    for probability in case.probabilities.values():
        accumulator.add(probability)
    result = ensemble_mask(spec.strategy, accumulator, **spec.params())
    return np.asarray(result.mask, dtype=bool), result


def recipe_ensemble(folder: ModelFolder) -> EnsembleSpec:
    """The recipe's own ensemble (N2 left to default to floor(C/2): out of fold, C is the number
    of groups)."""
    return replace(EnsembleSpec.from_dict(folder.recipe.ensemble), n2=None)


#: The metrics of the report's table (mean ± sd per model group and ensemble).
CV_METRICS = ("dice", "hd", "rvd", "nsd", "fp_ml", "fp_components")


def cv_report(model: str | Path, workspace: str | Path | Workspace | None = None, *,
              nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, progress: bool = True,
              write: bool = True) -> CVReport:
    """Dice, HD, RVD, NSD and the false-positive volume and components (mean ± sd) per model
    group and per ensemble strategy, out of fold, and the false positives on the cases without
    hemorrhage (:func:`cv_tables`).

    Writes ``cv_report.md`` and ``cv_report.csv`` into the model folder when ``write``.
    """
    from ichseg.metrics import case_metrics

    folder = ModelFolder.open(model)
    cases = load_out_of_fold_cases(folder, workspace, progress)
    groups = list(cases[0].probabilities)
    results: dict[str, list[dict[str, float]]] = {g: [] for g in groups}
    methods = STRATEGIES if len(groups) > 1 else {}
    for label in methods:
        results[f"ensemble: {label}"] = []
    for case in progress_bar(cases, "Evaluating out-of-fold predictions", progress):
        for group, probability in case.probabilities.items():
            results[group].append(case_metrics(probability > 0.5, case.reference, case.spacing, nsd_tolerance_mm))
        for label, spec in methods.items():
            mask, _ = ensemble_out_of_fold(case, spec)
            results[f"ensemble: {label}"].append(case_metrics(mask, case.reference, case.spacing, nsd_tolerance_mm))
    markdown, csv = cv_tables(results)
    if write:
        write_text(folder.path / "cv_report.md", markdown, overwrite=True)
        write_text(folder.path / "cv_report.csv", csv, overwrite=True)
    return CVReport(results, markdown, csv, len(cases), groups)


def cv_tables(results: dict[str, list[dict[str, float]]]) -> tuple[str, str]:
    """The report as markdown and CSV: mean ± sd of :data:`CV_METRICS` per method and, over the
    cases whose reference is empty, the false-positive volume and components (mean and max; in
    the CSV, the ``empty_ref_`` columns)."""
    from ichseg.metrics.summary import (
        empty_reference_summary,
        empty_reference_table,
        markdown_table,
        rows_to_csv,
        summary_rows,
        summary_table,
    )

    markdown = summary_table(results, CV_METRICS, fmt="markdown")
    empty = {method: empty_reference_summary(rows) for method, rows in results.items()}
    if any(summary["n_cases"] for summary in empty.values()):
        markdown += ("\n## Cases without hemorrhage in the reference\n\n"
                     + markdown_table(*empty_reference_table(results)))
    rows = summary_rows(results, CV_METRICS)
    for row, summary in zip(rows, empty.values(), strict=True):
        row.update({"empty_ref_cases": summary["n_cases"],
                    "empty_ref_without_fp": summary["n_without_fp"]})
        row.update({f"empty_ref_{metric}_{field}": summary[metric][field]
                    for metric in ("fp_ml", "fp_components") for field in ("mean", "max")})
    return markdown, rows_to_csv(rows)


def select_postprocessing(model: str | Path, workspace: str | Path | Workspace | None = None, *,
                          margin: float | None = None, candidates: Sequence[Any] | None = None,
                          progress: bool = True) -> Any:
    """Choose the postprocessing on the recipe's out-of-fold ensemble and save it in the folder.

    The cases' CT images (the workspace's imported ``imagesTr``) are read when a candidate needs
    them, one case at a time; without them the ``intracranial`` rule is not among the default
    candidates.
    """
    from ichseg.postprocessing import save_rule
    from ichseg.postprocessing.selection import DEFAULT_MARGIN, select_rule

    folder = ModelFolder.open(model)
    cases = load_out_of_fold_cases(folder, workspace, progress)
    spec = recipe_ensemble(folder) if len(cases[0].probabilities) > 1 else EnsembleSpec("mean")
    images = _training_images(folder, workspace)
    selection_cases = [(ensemble_out_of_fold(c, spec)[0], c.reference, c.spacing,
                        _image_loader(images / f"{c.name}{IMAGE_SUFFIX}")) for c in cases]
    selection = select_rule(selection_cases, candidates,
                            DEFAULT_MARGIN if margin is None else margin)
    save_rule(folder.postprocessing_file, selection.chosen, extra={
        "selected_on": f"{len(cases)} out-of-fold cases, ensemble {spec.strategy}",
        "selection": selection.as_dict(),
    }, overwrite=True)
    return selection


def _training_images(folder: ModelFolder, workspace: WorkspaceLike) -> Path:
    """The folder of the imported training images (nnU-Net's ``imagesTr``)."""
    ws = _workspace_of(folder, workspace)
    return ws.raw / ws.dataset_folder_name(folder.dataset) / "imagesTr"


def _image_loader(path: Path) -> Callable[[], Any] | None:
    """A function that reads the CT at ``path`` (None when there is none)."""
    return partial(load_image, path) if path.is_file() else None
