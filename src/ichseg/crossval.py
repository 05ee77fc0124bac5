"""Cross-validation studies on a trained recipe's out-of-fold predictions.

Every cross-validation model predicted the cases it did not see; these out-of-fold probabilities
let us compare model groups and ensemble strategies (Li & Chen's Table 1) and choose a
postprocessing rule without training anything again. Each out-of-fold case has one model per
group (the fold that held it out), so the ensembles here combine C = number of groups models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ichseg.atomic import write_text
from ichseg.data.derived import IMAGE_SUFFIX
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import ModelError
from ichseg.io.image import load_image
from ichseg.labels import ONE_CLASS, LabelScheme
from ichseg.metrics.case import DEFAULT_NSD_TOLERANCE_MM
from ichseg.metrics.classes import EvaluationLabels, label_map
from ichseg.metrics.summary import is_scored
from ichseg.model.folder import ModelFolder
from ichseg.model.out_of_fold import (
    out_of_fold_files,
    out_of_fold_labels,
    read_out_of_fold,
)
from ichseg.progress import progress_bar
from ichseg.workspace import Workspace, WorkspaceLike

if TYPE_CHECKING:
    from ichseg.ensemble.accumulator import EnsembleAccumulator
    from ichseg.postprocessing.class_selection import ClassSelection
    from ichseg.postprocessing.selection import Selection

#: Ensemble strategies compared in the report, by label.
STRATEGIES: dict[str, EnsembleSpec] = {
    "mean probability": EnsembleSpec("mean"),
    "majority vote": EnsembleSpec("vote"),
    "uncertainty (printed HR)": EnsembleSpec("uncertainty", reading="printed"),
    "uncertainty (majority HR)": EnsembleSpec("uncertainty", reading="majority"),
}


@dataclass(frozen=True)
class OutOfFoldCase:
    """One case's reference (boolean for one class, else a uint8 class map), spacing, and each
    group's out-of-fold probabilities (:func:`ichseg.model.out_of_fold.read_out_of_fold`) of
    the classes ``labels``."""

    name: str
    reference: np.ndarray
    spacing: tuple[float, float, float]
    probabilities: dict[str, np.ndarray]
    labels: LabelScheme = ONE_CLASS


@dataclass(frozen=True)
class OutOfFoldStudy:
    """The cases every trained group predicted out of fold, read one at a time when iterated
    (a study of many full-size cases does not fit in memory at once)."""

    names: list[str]
    groups: list[str]
    labels: LabelScheme
    files: dict[str, dict[str, Path]]
    """Each group's out-of-fold file by case name."""
    references: Path
    """The folder of the reference masks (nnU-Net's ``labelsTr``)."""

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[OutOfFoldCase]:
        for name in self.names:
            yield self.case(name)

    def case(self, name: str) -> OutOfFoldCase:
        path = self.references / f"{name}.nii.gz"
        reference = load_image(path)
        if self.labels.is_multiclass:
            mask = label_map(reference.array, EvaluationLabels(self.labels, "the model's dataset.json"),
                             path, "reference")
        else:
            mask = reference.array.astype(bool)
        return OutOfFoldCase(name, mask, reference.spacing,
                             {group: read_out_of_fold(files[name])[0] for group, files in self.files.items()},
                             self.labels)


@dataclass(frozen=True)
class CVReport:
    """Per method (group or ensemble), the rows of any hemorrhage (``results``) and, with several
    hemorrhage classes, each class's rows by class name (``class_results``; a row's values are
    None where the class is in neither mask)."""

    results: dict[str, list[dict[str, float]]]
    markdown: str
    csv: str
    n_cases: int
    groups: list[str]
    class_results: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)


def _workspace_of(folder: ModelFolder, workspace: WorkspaceLike) -> Workspace:
    """The workspace holding the references: given, or the one the model folder lives in."""
    if workspace is not None:
        return Workspace.coerce(workspace)
    return Workspace.open(folder.path.resolve().parents[2])


def out_of_fold_study(folder: ModelFolder, workspace: WorkspaceLike = None) -> OutOfFoldStudy:
    """The cases that every trained group predicted out of fold, with their reference masks
    (every group's files must name the same classes)."""
    groups = sorted({m.group for m in folder.trained_models()})
    files = {g: out_of_fold_files(folder, g) for g in groups}
    names = sorted(set.intersection(*(set(f) for f in files.values()))) if files else []
    if not names:
        raise ModelError(f"{folder.path}: no out-of-fold predictions; train cross-validation folds "
                         f"(--fold 0-4 or all) first")
    schemes = {group: out_of_fold_labels(files[group][names[0]]) for group in groups}
    if len(set(schemes.values())) > 1:
        raise ModelError(f"{folder.path}: the groups' out-of-fold predictions hold different classes "
                         f"({'; '.join(f'{g}: {list(s.names)}' for g, s in schemes.items())})")
    ws = _workspace_of(folder, workspace)
    return OutOfFoldStudy(names, groups, schemes[groups[0]], files,
                          ws.raw / ws.dataset_folder_name(folder.dataset) / "labelsTr")


def ensemble_out_of_fold(case: OutOfFoldCase, spec: EnsembleSpec,
                         accumulator: EnsembleAccumulator | None = None) -> tuple[np.ndarray, Any]:
    """One case's ensemble over its groups' out-of-fold probabilities: a boolean mask for one
    class, a uint8 class map for several (the K-class rules of :mod:`ichseg.ensemble.rules`).
    ``accumulator``: the case's :func:`out_of_fold_sums`, when several strategies share them."""
    from ichseg.ensemble import ensemble_mask

    accumulator = out_of_fold_sums(case) if accumulator is None else accumulator
    result = ensemble_mask(spec.strategy, accumulator, **spec.params())
    mask = np.asarray(result.mask, dtype=np.uint8 if accumulator.is_multiclass else bool)
    return mask, result


def out_of_fold_sums(case: OutOfFoldCase) -> EnsembleAccumulator:
    """The running sums of a case's groups, which every ensemble strategy reads."""
    from ichseg.ensemble import EnsembleAccumulator

    accumulator = EnsembleAccumulator(case.reference.shape, n_classes=case.labels.n_classes)
    for probability in case.probabilities.values():
        accumulator.add(probability)
    return accumulator


def model_mask(probability: np.ndarray, labels: LabelScheme) -> np.ndarray:
    """One model's own mask: P(hemorrhage) > 0.5 (boolean), or with several hemorrhage classes
    the argmax of its class probabilities (a uint8 class map; a tie goes to the lower value, as
    the ensemble counts the model's vote)."""
    from ichseg.ensemble.accumulator import first_argmax

    return first_argmax(probability) if labels.is_multiclass else probability > 0.5


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
    hemorrhage (:func:`cv_tables`); with several hemorrhage classes, the same for any hemorrhage
    and for each class (over the cases where the method or the reference has it).

    Writes ``cv_report.md`` and ``cv_report.csv`` into the model folder when ``write``.
    """
    folder = ModelFolder.open(model)
    study = out_of_fold_study(folder, workspace)
    labels = study.labels
    methods: dict[str, EnsembleSpec | None] = dict.fromkeys(study.groups)
    if len(study.groups) > 1:
        methods.update({f"ensemble: {label}": spec for label, spec in STRATEGIES.items()})
    results: dict[str, list[dict[str, Any]]] = {method: [] for method in methods}
    class_results: dict[str, dict[str, list[dict[str, Any]]]] = (
        {name: {method: [] for method in methods} for name in labels.names[1:]} if labels.is_multiclass else {})
    for case in progress_bar(study, "Evaluating out-of-fold predictions", progress):
        sums = out_of_fold_sums(case) if len(study.groups) > 1 else None
        for method, spec in methods.items():
            mask = (model_mask(case.probabilities[method], labels) if spec is None
                    else ensemble_out_of_fold(case, spec, sums)[0])
            union, by_class = _case_rows(mask, case, labels, nsd_tolerance_mm)
            results[method].append(union)
            for name, row in by_class.items():
                class_results[name][method].append(row)
    markdown, csv = cv_tables(results, class_results)
    if write:
        write_text(folder.path / "cv_report.md", markdown, overwrite=True)
        write_text(folder.path / "cv_report.csv", csv, overwrite=True)
    return CVReport(results, markdown, csv, len(study), study.groups, class_results)


def _case_rows(mask: np.ndarray, case: OutOfFoldCase, labels: LabelScheme, nsd_tolerance_mm: float
               ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A method's metrics on one case: of any hemorrhage, and (several classes) each class's row,
    its values None where the class is in neither mask."""
    from ichseg.metrics import METRICS, case_metrics, metrics_by_class

    if not labels.is_multiclass:
        return case_metrics(mask, case.reference, case.spacing, nsd_tolerance_mm), {}
    union, by_class = metrics_by_class(mask, case.reference, case.spacing, labels, nsd_tolerance_mm)
    not_scored = dict.fromkeys(METRICS)
    return union, {name: {"case": case.name, **(values or not_scored)} for name, values in by_class.items()}


def cv_tables(results: dict[str, list[dict[str, Any]]],
              class_results: dict[str, dict[str, list[dict[str, Any]]]] | None = None) -> tuple[str, str]:
    """The report as markdown and CSV: mean ± sd of :data:`CV_METRICS` per method and, over the
    cases whose reference is empty, the false-positive volume and components (mean and max; in
    the CSV, the ``empty_ref_`` columns).

    With ``class_results`` (several hemorrhage classes: per class name, the rows per method) the
    same follows for each class, over the cases where the class was scored, and its false
    positives on the cases whose reference lacks the class; the CSV then has a ``class`` column
    (``any`` for any hemorrhage).
    """
    from ichseg.metrics import ANY
    from ichseg.metrics.summary import rows_to_csv

    if not class_results:
        markdown, rows = _method_tables(results, results, "## Cases without hemorrhage in the reference")
        return markdown, rows_to_csv(rows)
    markdown, rows = _method_tables(results, results, "### Cases without hemorrhage in the reference")
    markdown = f"## Any hemorrhage\n\n{markdown}"
    csv_rows = [{"method": row["method"], "class": ANY, **row} for row in rows]
    for name, by_method in class_results.items():
        scored = {method: [row for row in rows if is_scored(row)] for method, rows in by_method.items()}
        without_class = {method: [row if is_scored(row) else {**row, **_NOTHING_MARKED} for row in rows]
                         for method, rows in by_method.items()}
        table, rows = _method_tables(scored, without_class, f"### Cases without {name} in the reference",
                                     with_counts=True)
        markdown += f"\n## {name}\n\n{table}"
        csv_rows += [{"method": row["method"], "class": name, **row} for row in rows]
    return markdown, rows_to_csv(csv_rows)


#: A class's row where neither mask has it, for the false positives on the cases without it.
_NOTHING_MARKED = {"volume_ref_ml": 0.0, "fp_ml": 0.0, "fp_components": 0}


def _method_tables(scored: dict[str, list[dict[str, Any]]], for_empty: dict[str, list[dict[str, Any]]],
                   empty_heading: str, with_counts: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The markdown of one class (or any hemorrhage) and its CSV rows: the summary of the
    ``scored`` rows per method (with their number when ``with_counts``), then the false positives
    of ``for_empty``'s rows whose reference is empty, under ``empty_heading`` (left out when there
    is no such case)."""
    from ichseg.metrics.summary import (
        empty_reference_summary,
        empty_reference_table,
        markdown_table,
        summary_rows,
        summary_table,
    )

    markdown = _counted_table(scored) if with_counts else summary_table(scored, CV_METRICS, fmt="markdown")
    empty = {method: empty_reference_summary(rows) for method, rows in for_empty.items()}
    if any(summary["n_cases"] for summary in empty.values()):
        markdown += f"\n{empty_heading}\n\n" + markdown_table(*empty_reference_table(for_empty))
    rows = summary_rows(scored, CV_METRICS)
    for row, summary in zip(rows, empty.values(), strict=True):
        row.update({"empty_ref_cases": summary["n_cases"],
                    "empty_ref_without_fp": summary["n_without_fp"]})
        row.update({f"empty_ref_{metric}_{field}": summary[metric][field]
                    for metric in ("fp_ml", "fp_components") for field in ("mean", "max")})
    return markdown, rows


def _counted_table(scored: dict[str, list[dict[str, Any]]]) -> str:
    """Mean ± sd of :data:`CV_METRICS` per method, after the number of cases scored."""
    from ichseg.metrics.case import metric_info
    from ichseg.metrics.summary import markdown_table, mean_sd_cell, summarize

    header = ["Method", "scored", *(metric_info(metric).title for metric in CV_METRICS)]
    body = []
    for method, rows in scored.items():
        summary = summarize(rows, CV_METRICS)
        body.append([method, str(len(rows)), *(mean_sd_cell(summary[metric], metric_info(metric).decimals)
                                                for metric in CV_METRICS)])
    return markdown_table(header, body)


def select_postprocessing(model: str | Path, workspace: str | Path | Workspace | None = None, *,
                          margin: float | None = None, candidates: Sequence[Any] | None = None,
                          progress: bool = True) -> Any:
    """Choose the postprocessing on the recipe's out-of-fold ensemble and save it in the folder.

    The cases' CT images (the workspace's imported ``imagesTr``) are read when a candidate needs
    them, one case at a time; without them the ``intracranial`` rule is not among the default
    candidates. With several hemorrhage classes the intracranial rule is chosen on any
    hemorrhage and a component rule per class (``candidates``: the component rules compared per
    class), :func:`ichseg.postprocessing.class_selection.select_class_rules`; the result is a
    :class:`~ichseg.postprocessing.class_selection.ClassSelection` then, else a
    :class:`~ichseg.postprocessing.selection.Selection`.
    """
    from ichseg.postprocessing import save_rule
    from ichseg.postprocessing.class_selection import ClassCase, select_class_rules
    from ichseg.postprocessing.selection import DEFAULT_MARGIN, select_rule

    folder = ModelFolder.open(model)
    study = out_of_fold_study(folder, workspace)
    spec = recipe_ensemble(folder) if len(study.groups) > 1 else EnsembleSpec("mean")
    images = _training_images(folder, workspace)
    margin = DEFAULT_MARGIN if margin is None else margin
    cases = [ClassCase(ensemble_out_of_fold(c, spec)[0], c.reference, c.spacing,
                       _image_loader(images / f"{c.name}{IMAGE_SUFFIX}"))
             for c in progress_bar(study, "Ensembling out-of-fold predictions", progress)]
    selection: Selection | ClassSelection
    if study.labels.is_multiclass:
        selection = select_class_rules(cases, study.labels, candidates, margin)
    else:
        selection = select_rule([(c.prediction, c.reference, c.spacing, c.image) for c in cases], candidates,
                                margin)
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
