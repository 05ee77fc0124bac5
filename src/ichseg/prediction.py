"""``ichseg predict`` as a function: a model folder, input files and an output folder.

A thin layer over :class:`ichseg.segmenter.Segmenter`, with the command line's options as
keyword arguments; what needs no network (the model folder, the inputs, the output folder, the
ensemble's fit to the models) is checked before torch or nnU-Net is imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ichseg.atomic import refuse_existing
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import ModelError
from ichseg.io.inputs import find_cases
from ichseg.models import ModelFolder
from ichseg.report.options import OutputOptions
from ichseg.segmenter import PredictionResult, Segmenter
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
            folds: Sequence[int | str] | None = None, postprocess: bool = True,
            options: OutputOptions = OutputOptions(), device: str = "auto", mirroring: bool = True,
            step_size: float = 0.5, series: str | None = None, progress: bool = True,
            verbose: bool = False) -> PredictionResult:
    """Segment every case in ``inputs`` (a NIfTI file, a folder of them, or DICOM series folders).

    Writes per case the mask (in the input's geometry), the vote map when several models vote,
    JSON measures, a PNG preview, an HTML report and, for DICOM input, a DICOM-SEG; and for the
    batch a CSV and an HTML overview (see :class:`OutputOptions`). A case that fails is reported
    and the others go on. ``ensemble`` is a spec, or a strategy name (default: the recipe's) whose
    parameters ``ensemble_params`` may set (None values keep the recipe's);
    ``verbose`` shows nnU-Net's own messages.
    """
    folder = resolve_model(model, dataset=dataset, recipe=recipe, workspace=workspace)
    selected = folder.select(groups, folds)
    cases = find_cases(inputs)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not options.overwrite:
        refuse_existing(output_dir, options.overwrite)
    spec = ensemble_spec(folder, ensemble, ensemble_params)
    spec.check_models(len(selected))
    segmenter = Segmenter.load(folder.path, device=device, groups=groups, folds=folds, ensemble=spec,
                               mirroring=mirroring, step_size=step_size, postprocess=postprocess,
                               verbose=verbose)
    return segmenter.predict_folder(cases, output_dir, options, series=series, progress=progress)


def ensemble_spec(folder: ModelFolder, ensemble: EnsembleSpec | str | None = None,
                  params: Mapping[str, Any] | None = None) -> EnsembleSpec:
    """``ensemble`` as given, or the recipe's spec with another strategy and/or parameters."""
    if isinstance(ensemble, EnsembleSpec):
        return ensemble
    return EnsembleSpec.from_dict(folder.recipe.ensemble).with_overrides(ensemble, **(params or {}))
