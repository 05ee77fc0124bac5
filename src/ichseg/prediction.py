"""Prediction with a trained model folder: the API behind ``ichseg predict``.

Every case is read once, turned to the canonical orientation, passed through each model of the
folder (preprocessing shared per configuration), ensembled from running sums, turned back to the
input's own orientation, postprocessed by the folder's saved rule and written with its measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.atomic import refuse_existing
from ichseg.errors import IchsegError, ModelError
from ichseg.io.image import CTImage, load_image
from ichseg.io.inputs import find_cases
from ichseg.models import ModelFolder
from ichseg.progress import make_progress
from ichseg.workspace import Workspace


@dataclass
class PredictionResult:
    output_dir: Path
    cases: list[Any] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def resolve_model(model: str | Path | None = None, *, dataset: str | None = None, recipe: str | None = None,
                  workspace: str | Path | Workspace | None = None) -> ModelFolder:
    """A model folder given directly, or the workspace's model of ``dataset`` and ``recipe``."""
    if model is not None:
        return ModelFolder.open(model)
    if dataset is None:
        raise ModelError("give a model folder (--model DIR) or a data set (--dataset NAME) whose model to use")
    ws = workspace.resolved() if isinstance(workspace, Workspace) else Workspace.open(workspace)
    return ModelFolder.open(ws.model_dir(dataset, recipe or "nnunet"))


def ensemble_settings(folder: ModelFolder, n_models: int, strategy: str | None,
                      params: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The strategy and parameters to use, checked against the number of models before any work."""
    from ichseg.ensemble import EnsembleAccumulator, ensemble_mask

    recipe_default = dict(folder.recipe.ensemble)
    default_strategy = recipe_default.pop("strategy")
    chosen = strategy or default_strategy
    settings = dict(recipe_default) if chosen == default_strategy else {}
    settings.update({k: v for k, v in (params or {}).items() if v is not None})
    probe = EnsembleAccumulator((1,))
    for _ in range(n_models):
        probe.add(np.zeros(1, dtype=np.float32))
    ensemble_mask(chosen, probe, **settings)  # raises a one-line error for a misfit
    return chosen, settings


def predict(inputs: str | Path, output_dir: str | Path, model: str | Path | None = None, *,
            dataset: str | None = None, recipe: str | None = None,
            workspace: str | Path | Workspace | None = None, ensemble: str | None = None,
            ensemble_params: dict[str, Any] | None = None, groups: Sequence[str] | None = None,
            folds: Sequence[int | str] | None = None, postprocess: bool = True, save_votes: bool | None = None,
            device: str = "auto", mirroring: bool = True, step_size: float = 0.5, series: str | None = None,
            keep_identifiers: bool = False, dicom_seg: bool | None = None, preview: bool = True,
            html: bool = True, overwrite: bool = False, progress: bool = True,
            verbose: bool = False) -> PredictionResult:
    """Segment every case in ``inputs`` (a NIfTI file, a folder of them, or DICOM series folders).

    Writes per case the mask (in the input's geometry), the vote map when several models vote,
    JSON measures, a PNG preview, an HTML report and, for DICOM input, a DICOM-SEG; and for the
    batch a CSV and an HTML overview. A case that fails is reported and the others go on.
    """
    from ichseg.engine import resolve_device
    from ichseg.model_set import ModelSet
    from ichseg.postprocessing import load_rule
    from ichseg.report.outputs import write_batch_outputs

    folder = resolve_model(model, dataset=dataset, recipe=recipe, workspace=workspace)
    trained = folder.require_models()
    cases = find_cases(inputs)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        refuse_existing(output_dir, overwrite)
    torch_device = resolve_device(device)
    selected = [m for m in trained if (not groups or m.group in groups) and (folds is None or m.fold in folds)]
    strategy, settings = ensemble_settings(folder, max(1, len(selected)), ensemble, ensemble_params)
    rule = load_rule(folder.postprocessing_file) if postprocess and folder.postprocessing_file.is_file() else None
    models = ModelSet(folder, torch_device, groups=groups, folds=folds, use_mirroring=mirroring,
                      tile_step_size=step_size)
    votes_wanted = len(models) > 1 if save_votes is None else save_votes
    result = PredictionResult(output_dir)
    with make_progress(progress) as bar:
        task = bar.add_task(f"Predicting with {len(models)} model(s)", total=len(cases))
        for path in cases:
            try:
                image = load_image(path) if series is None or path.is_file() else _load_series(path, series)
                outputs = _predict_case(image, models, strategy, settings, rule, output_dir, votes_wanted,
                                        keep_identifiers, dicom_seg, preview, html, overwrite)
                result.cases.append(outputs)
            except IchsegError as error:
                result.failures.append((path.name, str(error)))
            bar.advance(task)
    if result.cases or result.failures:
        write_batch_outputs(result.cases, result.failures, output_dir, overwrite=True)
    return result


def _load_series(folder: Path, series: str) -> CTImage:
    from ichseg.io.dicom import load_dicom_series

    return load_dicom_series(folder, series)


def _predict_case(image: CTImage, models: Any, strategy: str, settings: dict[str, Any], rule: Any,
                  output_dir: Path, save_votes: bool, keep_identifiers: bool, dicom_seg: bool | None,
                  preview: bool, html: bool, overwrite: bool) -> Any:
    from ichseg.ensemble import EnsembleAccumulator, ensemble_mask
    from ichseg.postprocessing import apply_rule
    from ichseg.report.outputs import write_case_outputs

    canonical = image.reoriented()
    accumulator = EnsembleAccumulator(canonical.shape)
    for output in models.probabilities(canonical):
        accumulator.add(output.probability)
    result = ensemble_mask(strategy, accumulator, **settings)
    mask = to_input_geometry(canonical, _numpy(result.mask).astype(np.uint8), image)
    votes = to_input_geometry(canonical, _numpy(accumulator.votes).astype(np.uint8), image) if save_votes else None
    postprocessing = None
    if rule is not None:
        mask, postprocessing = apply_rule(mask, image.spacing, rule)
    return write_case_outputs(image, mask, output_dir, vote_map=votes, uncertainty=result.as_dict(),
                              postprocessing=postprocessing, keep_identifiers=keep_identifiers,
                              dicom_seg=dicom_seg, preview=preview, html=html, overwrite=overwrite)


def to_input_geometry(canonical: CTImage, array: np.ndarray, original: CTImage) -> np.ndarray:
    """An array on the canonical grid, permuted and flipped back onto the input's grid."""
    back = canonical.with_array(array).reoriented(original.orientation)
    if back.shape != original.shape:
        raise RuntimeError(f"reorientation changed the shape {original.shape} -> {back.shape}")
    return back.array


def _numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
