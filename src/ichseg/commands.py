"""``ichseg train`` and ``ichseg predict`` as functions, with the command line's options one for one.

Each chooses its runner — this machine, or a Ray cluster (``ray``: True for a local instance, an
address for a cluster) — and checks everything that needs no network before torch or nnU-Net is
imported. Code that keeps networks loaded or segments in memory uses
:class:`ichseg.segmentation.segmenter.Segmenter` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ichseg.batch.plan import plan_batch
from ichseg.batch.runner import PredictionResult, run_batch
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.io.inputs import ReadOptions, scan_inputs
from ichseg.io.series_selection import SeriesRules, SeriesSelection
from ichseg.model.folder import ModelFolder, parse_folds, resolve_model, training_slice_thickness
from ichseg.recipes import Recipe
from ichseg.report.options import OutputOptions
from ichseg.segmentation.settings import InferenceSettings, ensemble_spec
from ichseg.training import LocalRunner, TrainingRequest, TrainingRunner, train_recipe
from ichseg.workspace import WorkspaceLike

__all__ = ["PredictionResult", "predict", "train"]


def train(dataset: str, recipe: str | Recipe = "nnunet", *, workspace: WorkspaceLike = None,
          folds: int | str | Sequence[int | str] | None = None, groups: Sequence[str] | None = None,
          configuration: str | None = None, epochs: int | None = None, iterations: int | None = None,
          val_iterations: int | None = None, checkpoint_every: int | None = None, device: str = "auto",
          overwrite: bool = False, verbose: bool = False, progress: bool = True,
          ray: str | bool | None = None) -> ModelFolder:
    """Train a recipe's models (groups × folds) in order, resumably; returns the model folder.

    Finished models are skipped, an interrupted one continues from its last checkpoint, and each
    cross-validation model predicts its validation cases (out-of-fold probabilities) for ensembling
    and postprocessing studies. ``epochs``/``iterations`` shorten the schedule for quick runs.
    ``ray`` trains the models at once as Ray tasks, one GPU each where the cluster has GPUs
    (:class:`ichseg.distributed.ray_training.RayRunner`).
    """
    runner: TrainingRunner
    if ray:
        from ichseg.distributed.ray_training import RayRunner

        runner = RayRunner(ray, verbose=verbose, quiet=not progress)
    else:
        runner = LocalRunner(device, verbose, progress)
    request = TrainingRequest(folds, groups, configuration, epochs, iterations, val_iterations, checkpoint_every,
                              overwrite)
    return train_recipe(dataset, recipe, request, workspace=workspace, runner=runner)


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
            ray_workers: int | None = None, allow_gaps: bool = False) -> PredictionResult:
    """Segment every case in ``inputs`` (a NIfTI file, a folder of them, or DICOM series folders).

    Writes per case the mask (in the input's geometry), the vote map when several models vote,
    JSON measures, a PNG preview, an HTML report and, for DICOM input, a DICOM-SEG; and for the
    batch a CSV and an HTML overview (see :class:`OutputOptions`). A case that fails is reported
    and the others go on; nothing is written unless a case succeeds. ``ensemble`` is a spec, or a
    strategy name (default: the recipe's) whose parameters ``ensemble_params`` may set (None
    values keep the recipe's); ``folds`` takes what ``ichseg train --fold`` takes
    (:func:`ichseg.model.folder.parse_folds`; None: every trained model); ``resume`` skips the cases
    whose outputs are complete (same model and options only, see :mod:`ichseg.batch.manifest`);
    ``accept_intensities`` segments CTs that do not look like HU, with a warning; ``allow_gaps``
    interpolates across a DICOM series' missing slices instead of refusing it;
    a DICOM study's series is chosen by ``series_rules`` (a file, or ichseg's default rules) with
    the model's training slice thickness deciding among the eligible (:mod:`ichseg.io.series_selection`),
    unless ``series`` names a SeriesInstanceUID; ``all_series`` segments every eligible series of a
    study as a case of its own; what the rules made of each series comes back in ``warnings``;
    ``verbose`` prints how each network tiles each case. ``ray`` runs the batch as a Ray Data
    pipeline with ``ray_workers`` model actors (default: one per GPU) and the same outputs
    (:mod:`ichseg.distributed.ray_prediction`).

    Raises, before torch or nnU-Net is imported: :class:`~ichseg.errors.InputError` (inputs
    missing or unreadable), :class:`~ichseg.errors.ModelError` (model folder incomplete or
    damaged), :class:`~ichseg.errors.OutputPathError` (output not a folder, not writable),
    :class:`~ichseg.errors.OutputExistsError` (results there without ``overwrite`` or
    ``resume``; a resumed folder made differently).
    """
    if ray:
        from ichseg.distributed import require_ray

        require_ray()
    rules = SeriesRules.coerce(series_rules)
    scan = scan_inputs(inputs, series=series, all_series=all_series, rules=rules)
    folder = resolve_model(model, dataset=dataset, recipe=recipe, workspace=workspace)
    settings = InferenceSettings(
        groups=tuple(groups) if groups else None,
        folds=None if folds is None else tuple(parse_folds(folds, folder.recipe)),
        ensemble=ensemble_spec(folder, ensemble, ensemble_params), mirroring=mirroring,
        step_size=step_size, postprocess=postprocess, verbose=verbose)
    read = ReadOptions(SeriesSelection(rules, training_slice_thickness(settings.select(folder))),
                       accept_intensities, allow_gaps)
    plan = plan_batch(scan, output_dir, folder, settings, read, options, resume=resume)
    if ray:
        from ichseg.distributed.ray_prediction import predict_on_ray

        return predict_on_ray(plan, address=ray, device=device, workers=ray_workers, progress=progress)
    return run_batch(plan, device=device, progress=progress)
