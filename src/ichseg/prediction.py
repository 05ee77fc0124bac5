"""Prediction with a trained model folder: the API behind ``ichseg predict``.

Every case is read once, turned to the canonical orientation, passed through each model of the
folder (preprocessing shared per configuration), ensembled from running sums, turned back to the
input's own orientation, postprocessed by the folder's saved rule and written with its measures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ichseg.atomic import refuse_existing
from ichseg.errors import IchsegError, ModelError
from ichseg.io.image import CTImage, load_image
from ichseg.io.inputs import find_cases
from ichseg.models import ModelFolder
from ichseg.progress import make_progress
from ichseg.workspace import Workspace

if TYPE_CHECKING:  # imported at run time only where used: they load torch and nnU-Net
    from ichseg.model_set import ModelSet, PreparedCase


#: How many predicted cases may wait for the background writer before prediction waits for it.
_WRITES_AHEAD = 2


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
    The next case is read while the networks work on this one, and outputs are written in the
    background. ``verbose`` shows nnU-Net's own messages.
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
                      tile_step_size=step_size, verbose=verbose)
    settings_for_cases = _CaseSettings(
        strategy, settings, rule, output_dir, len(models) > 1 if save_votes is None else save_votes,
        dict(keep_identifiers=keep_identifiers, dicom_seg=dicom_seg, preview=preview, html=html,
             overwrite=overwrite))
    result = PredictionResult(output_dir)
    with make_progress(progress) as bar, ThreadPoolExecutor(1, thread_name_prefix="ichseg-write") as writer:
        task = bar.add_task(f"Predicting with {len(models)} model(s)", total=len(cases))
        writing: list[tuple[Path, Future[Any]]] = []
        for path, reading in _read_ahead(cases, partial(_read_case, series=series, models=models)):
            try:
                case = _ensemble_case(models, *reading.result(), settings_for_cases)
            except IchsegError as error:
                result.failures.append((path.name, str(error)))
                bar.advance(task)
                continue
            written = writer.submit(_write_case, case, settings_for_cases)
            written.add_done_callback(lambda _: bar.advance(task))
            writing.append((path, written))
            if len(writing) > _WRITES_AHEAD:  # cases waiting to be written hold memory: keep them few
                wait([writing[-_WRITES_AHEAD - 1][1]])
        for path, written in writing:
            try:
                result.cases.append(written.result())
            except IchsegError as error:
                result.failures.append((path.name, str(error)))
    if result.cases or result.failures:
        write_batch_outputs(result.cases, result.failures, output_dir, overwrite=True)
    return result


@dataclass(frozen=True)
class _CaseSettings:
    """How every case of a run is ensembled, postprocessed and written."""

    strategy: str
    ensemble_params: dict[str, Any]
    rule: Any
    output_dir: Path
    save_votes: bool
    write_options: dict[str, Any]


@dataclass(frozen=True)
class _EnsembledCase:
    """One case's ensemble on the canonical grid, ready to be written."""

    image: CTImage
    canonical: CTImage
    mask: np.ndarray
    votes: np.ndarray | None
    uncertainty: dict[str, Any]


def _read_ahead(cases: Sequence[Path], read: Callable[[Path], Any]) -> Iterator[tuple[Path, Future[Any]]]:
    """Each case with its reading, started one case ahead in a background thread, so that
    reading and preprocessing the next case overlap the networks' work on this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="ichseg-read") as reader:
        pending = [reader.submit(read, path) for path in cases[:1]]
        for index, path in enumerate(cases):
            if index + 1 < len(cases):
                pending.append(reader.submit(read, cases[index + 1]))
            yield path, pending.pop(0)


def _read_case(path: Path, *, series: str | None, models: ModelSet) -> tuple[CTImage, CTImage, PreparedCase]:
    """The input as loaded, the same turned to the canonical orientation, and that preprocessed."""
    image = load_image(path) if series is None or path.is_file() else _load_series(path, series)
    canonical = image.reoriented()
    return image, canonical, models.prepare(canonical)


def _load_series(folder: Path, series: str) -> CTImage:
    from ichseg.io.dicom import load_dicom_series

    return load_dicom_series(folder, series)


def _ensemble_case(models: ModelSet, image: CTImage, canonical: CTImage, prepared: PreparedCase,
                   settings: _CaseSettings) -> _EnsembledCase:
    """Every model on the device, combined from running sums into one mask."""
    from ichseg.ensemble import EnsembleAccumulator, ensemble_mask

    accumulator = EnsembleAccumulator(canonical.shape)
    for output in models.probabilities(prepared):
        accumulator.add(output.probability)
    result = ensemble_mask(settings.strategy, accumulator, **settings.ensemble_params)
    votes = _numpy(accumulator.votes).astype(np.uint8) if settings.save_votes else None
    return _EnsembledCase(image, canonical, _numpy(result.mask).astype(np.uint8), votes, result.as_dict())


def _write_case(case: _EnsembledCase, settings: _CaseSettings) -> Any:
    """Back to the input's geometry, postprocessed by the folder's rule, and written."""
    from ichseg.postprocessing import apply_rule
    from ichseg.report.outputs import write_case_outputs

    image = case.image
    mask = to_input_geometry(case.canonical, case.mask, image)
    votes = to_input_geometry(case.canonical, case.votes, image) if case.votes is not None else None
    postprocessing = None
    if settings.rule is not None:
        mask, postprocessing = apply_rule(mask, image.spacing, settings.rule)
    return write_case_outputs(image, mask, settings.output_dir, vote_map=votes, uncertainty=case.uncertainty,
                              postprocessing=postprocessing, **settings.write_options)


def to_input_geometry(canonical: CTImage, array: np.ndarray, original: CTImage) -> np.ndarray:
    """An array on the canonical grid, permuted and flipped back onto the input's grid."""
    back = canonical.with_array(array).reoriented(original.orientation)
    if back.shape != original.shape:
        raise RuntimeError(f"reorientation changed the shape {original.shape} -> {back.shape}")
    return back.array


def _numpy(array: Any) -> np.ndarray:
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
