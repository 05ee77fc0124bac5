"""A batch checked before any network loads: inputs, model folder, settings, output folder.

Everything that needs no torch is checked here, so that a mistake is one line within a second:
the inputs exist and can be read, the model folder is complete and its checkpoints whole, the
ensemble fits the models, the output folder can be written and holds no results (or is the same
run, resumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ichseg.batch.manifest import Run, model_fingerprint, open_run, run_manifest
from ichseg.io.inputs import InputScan, ReadOptions
from ichseg.model.folder import ModelFolder, TrainedModel
from ichseg.report.options import OutputOptions
from ichseg.segmentation.settings import InferenceSettings


@dataclass(frozen=True)
class BatchPlan:
    """A checked batch: its cases, the model folder with the models ``settings`` select (the
    ensemble resolved), how cases are read and written, and the output folder's run."""

    scan: InputScan
    folder: ModelFolder
    models: list[TrainedModel]
    settings: InferenceSettings
    read: ReadOptions
    options: OutputOptions
    run: Run


def plan_batch(scan: InputScan, output_dir: str | Path, folder: ModelFolder, settings: InferenceSettings,
               read: ReadOptions = ReadOptions(), options: OutputOptions = OutputOptions(), *,
               resume: bool = False) -> BatchPlan:
    """Check the models and the output folder for ``scan``'s cases (see the module's docstring).

    Raises :class:`~ichseg.errors.ModelError` (folder incomplete or damaged, an ensemble that
    does not fit), :class:`~ichseg.errors.OutputPathError` or
    :class:`~ichseg.errors.OutputExistsError` (results there without ``overwrite`` or ``resume``;
    a resumed folder made differently).
    """
    models = settings.select(folder)
    folder.check_files(models)
    ensemble = settings.ensemble_for(folder)
    ensemble.check_models(len(models))
    manifest = run_manifest(model_fingerprint(folder, models, settings.postprocess), ensemble, options,
                            {**settings.manifest(), "series": scan.series, "all_series": scan.all_series,
                             **read.manifest()})
    run = open_run(output_dir, manifest, resume=resume, overwrite=options.overwrite)
    return BatchPlan(scan, folder, models, settings, read, options, run)
