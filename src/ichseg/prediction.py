"""``ichseg predict`` as a function: a model folder, input files and an output folder.

A thin layer over :class:`ichseg.segmenter.Segmenter`, with the command line's options as
keyword arguments; what needs no network (the model folder, the inputs, the output folder, the
ensemble's fit to the models) is checked before torch or nnU-Net is imported.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import ModelError
from ichseg.io.ctimage import CTImage
from ichseg.io.inputs import scan_inputs
from ichseg.io.series_selection import SeriesRules, SeriesSelection
from ichseg.models import ModelFolder, TrainedModel, parse_folds
from ichseg.report.options import OutputOptions
from ichseg.run_manifest import model_fingerprint, open_run, run_manifest
from ichseg.segmenter import (
    PredictionResult,
    ReadAhead,
    Segmenter,
    pending_cases,
    read_case,
)
from ichseg.workspace import Workspace, WorkspaceLike

__all__ = ["PredictionResult", "ensemble_spec", "predict", "resolve_model", "training_slice_thickness"]


def resolve_model(model: str | Path | None = None, *, dataset: str | None = None, recipe: str | None = None,
                  workspace: WorkspaceLike = None) -> ModelFolder:
    """A model folder given directly, or the workspace's model of ``dataset`` and ``recipe``."""
    if model is not None:
        return ModelFolder.open(model)
    if dataset is None:
        raise ModelError("give a model folder (--model DIR) or a data set (--dataset NAME) whose model to use")
    return ModelFolder.open(Workspace.coerce(workspace).model_dir(dataset, recipe or "nnunet"))


def predict(inputs: str | Path, output_dir: str | Path, model: str | Path | None = None, *,
            dataset: str | None = None, recipe: str | None = None, workspace: WorkspaceLike = None,
            ensemble: EnsembleSpec | str | None = None, ensemble_params: Mapping[str, Any] | None = None,
            groups: Sequence[str] | None = None,
            folds: int | str | Sequence[int | str] | None = None, postprocess: bool = True,
            options: OutputOptions = OutputOptions(), device: str = "auto", mirroring: bool = True,
            step_size: float = 0.5, series: str | None = None, all_series: bool = False,
            series_rules: SeriesRules | str | Path | None = None, progress: bool = True,
            verbose: bool = False, resume: bool = False,
            accept_intensities: bool = False, ray: str | bool | None = None,
            ray_workers: int | None = None) -> PredictionResult:
    """Segment every case in ``inputs`` (a NIfTI file, a folder of them, or DICOM series folders).

    Writes per case the mask (in the input's geometry), the vote map when several models vote,
    JSON measures, a PNG preview, an HTML report and, for DICOM input, a DICOM-SEG; and for the
    batch a CSV and an HTML overview (see :class:`OutputOptions`). A case that fails is reported
    and the others go on; nothing is written unless a case succeeds. ``ensemble`` is a spec, or a
    strategy name (default: the recipe's) whose parameters ``ensemble_params`` may set (None
    values keep the recipe's); ``folds`` takes what ``ichseg train --fold`` takes
    (:func:`ichseg.models.parse_folds`; None: every trained model); ``resume`` skips the cases
    whose outputs are complete (same model and options only, see :mod:`ichseg.run_manifest`);
    ``accept_intensities`` segments CTs that do not look like HU, with a warning;
    a DICOM study's series is chosen by ``series_rules`` (a file, or ichseg's default rules) with
    the model's training slice thickness deciding among the eligible (:mod:`ichseg.io.series_selection`),
    unless ``series`` names a SeriesInstanceUID; ``all_series`` segments every eligible series of a
    study as a case of its own; what the rules made of each series comes back in ``warnings``;
    ``verbose`` prints how each network tiles each case. ``ray`` (True: a local Ray instance; an address:
    that cluster) runs the batch as a Ray Data pipeline with ``ray_workers`` model actors (default:
    one per GPU) and the same outputs (:mod:`ichseg.distributed.prediction`).

    Raises, before torch or nnU-Net is imported: :class:`~ichseg.errors.InputError` (inputs
    missing or unreadable), :class:`~ichseg.errors.ModelError` (model folder incomplete or
    damaged), :class:`~ichseg.errors.OutputPathError` (output not a folder, not writable),
    :class:`~ichseg.errors.OutputExistsError` (results there without ``overwrite`` or
    ``resume``; a resumed folder made differently).

    The keyword arguments are the command line's options, one for one (that is why there are
    many); code that segments in memory or keeps networks loaded uses :class:`Segmenter`.
    """
    if ray:
        from ichseg.distributed import require_ray

        require_ray()
    rules = SeriesRules.coerce(series_rules)
    scan = scan_inputs(inputs, series=series, all_series=all_series, rules=rules)
    folder = resolve_model(model, dataset=dataset, recipe=recipe, workspace=workspace)
    chosen_folds = None if folds is None else parse_folds(folds, folder.recipe)
    selected = folder.select(groups, chosen_folds)
    folder.check_files(selected)
    spec = ensemble_spec(folder, ensemble, ensemble_params)
    spec.check_models(len(selected))
    selection = SeriesSelection(rules, training_slice_thickness(selected))
    settings = {"postprocess": postprocess, "mirroring": mirroring, "step_size": step_size, "series": series,
                "all_series": all_series, "series_rules": rules.source}
    manifest = run_manifest(model_fingerprint(folder, selected, postprocess), spec, options, settings)
    run = open_run(output_dir, manifest, resume=resume, overwrite=options.overwrite)
    if ray:
        from ichseg.distributed.prediction import (
            CaseSettings,
            ModelRequest,
            predict_on_ray,
        )

        request = ModelRequest(folder.path, tuple(groups) if groups else None,
                               None if chosen_folds is None else tuple(chosen_folds), spec, mirroring,
                               step_size, postprocess, verbose)
        return predict_on_ray(request, scan, run, CaseSettings(run.output_dir, options, selection, accept_intensities),
                              address=ray, device=device, workers=ray_workers, progress=progress)
    read = partial(read_case, prepare=_first_use_preparer(folder, selected), selection=selection,
                   accept_intensities=accept_intensities)
    with ReadAhead(pending_cases(scan, run), read) as reading:  # the first case is read while the networks load
        segmenter = Segmenter.load(folder.path, device=device, groups=groups, folds=chosen_folds, ensemble=spec,
                                   mirroring=mirroring, step_size=step_size, postprocess=postprocess,
                                   verbose=verbose)
        return segmenter.predict_folder(scan, output_dir, options, selection=selection, progress=progress, run=run,
                                        accept_intensities=accept_intensities, reading=reading)


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


def _first_use_preparer(folder: ModelFolder, models: Sequence[TrainedModel]) -> Callable[[CTImage], Any]:
    """The models' preprocessing (:class:`ichseg.model_set.CasePreparer`), made by its first call,
    in the reading thread: torch and nnU-Net's preprocessing load there while the networks load."""
    @cache
    def preparer() -> Any:
        from ichseg.model_set import CasePreparer

        return CasePreparer(folder, models)

    return lambda image: preparer().prepare(image)


def ensemble_spec(folder: ModelFolder, ensemble: EnsembleSpec | str | None = None,
                  params: Mapping[str, Any] | None = None) -> EnsembleSpec:
    """``ensemble`` as given, or the recipe's spec with another strategy and/or parameters."""
    if isinstance(ensemble, EnsembleSpec):
        return ensemble
    return EnsembleSpec.from_dict(folder.recipe.ensemble).with_overrides(ensemble, **(params or {}))
