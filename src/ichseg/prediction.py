"""``ichseg predict`` as a function: a model folder, input files and an output folder.

A thin layer over :class:`ichseg.segmenter.Segmenter`, with the command line's options as
keyword arguments; what needs no network (the model folder, the inputs, the output folder, the
ensemble's fit to the models) is checked before torch or nnU-Net is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import ModelError
from ichseg.io.ctimage import CTImage
from ichseg.io.inputs import scan_inputs
from ichseg.models import ModelFolder, TrainedModel, parse_folds
from ichseg.report.options import OutputOptions
from ichseg.run_manifest import model_fingerprint, open_run, run_manifest
from ichseg.segmenter import PredictionResult, ReadAhead, Segmenter, pending_cases, read_case
from ichseg.workspace import Workspace, WorkspaceLike

__all__ = ["PredictionResult", "ensemble_spec", "predict", "resolve_model"]


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
            step_size: float = 0.5, series: str | None = None, progress: bool = True,
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
    (:func:`ichseg.models.parse_folds`; None: every trained model); ``resume`` skips the cases
    whose outputs are complete (same model and options only, see :mod:`ichseg.run_manifest`);
    ``accept_intensities`` segments CTs that do not look like HU, with a warning; ``allow_gaps``
    interpolates across a DICOM series' missing slices instead of refusing it;
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
    scan = scan_inputs(inputs)
    folder = resolve_model(model, dataset=dataset, recipe=recipe, workspace=workspace)
    chosen_folds = None if folds is None else parse_folds(folds, folder.recipe)
    selected = folder.select(groups, chosen_folds)
    folder.check_files(selected)
    spec = ensemble_spec(folder, ensemble, ensemble_params)
    spec.check_models(len(selected))
    settings = {"postprocess": postprocess, "mirroring": mirroring, "step_size": step_size, "series": series,
                "allow_gaps": allow_gaps}
    manifest = run_manifest(model_fingerprint(folder, selected, postprocess), spec, options, settings)
    run = open_run(output_dir, manifest, resume=resume, overwrite=options.overwrite)
    if ray:
        from ichseg.distributed.prediction import CaseSettings, ModelRequest, predict_on_ray

        request = ModelRequest(folder.path, tuple(groups) if groups else None,
                               None if chosen_folds is None else tuple(chosen_folds), spec, mirroring,
                               step_size, postprocess, verbose)
        return predict_on_ray(request, scan, run, CaseSettings(run.output_dir, options, series, accept_intensities,
                                                               allow_gaps),
                              address=ray, device=device, workers=ray_workers, progress=progress)
    read = partial(read_case, prepare=_first_use_preparer(folder, selected), series=series,
                   accept_intensities=accept_intensities, allow_gaps=allow_gaps)
    with ReadAhead(pending_cases(scan, run), read) as reading:  # the first case is read while the networks load
        segmenter = Segmenter.load(folder.path, device=device, groups=groups, folds=chosen_folds, ensemble=spec,
                                   mirroring=mirroring, step_size=step_size, postprocess=postprocess,
                                   verbose=verbose)
        return segmenter.predict_folder(scan, output_dir, options, series=series, progress=progress, run=run,
                                        accept_intensities=accept_intensities, reading=reading)


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
