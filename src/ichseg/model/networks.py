"""The networks of a model folder, loaded once, giving per-model probabilities for a case.

A case is preprocessed (recipe CT preprocessing, then nnU-Net's) once per configuration; all models
of that configuration reuse it. Preparing a case (:meth:`ModelSet.prepare`, CPU work) and running
the networks on it (:meth:`ModelSet.probabilities`) are separate steps, so that the next case can
be prepared while the networks work on this one. Probabilities come back in the geometry of the
(canonical) image that was prepared, padding removed: for a one-class folder each model's
P(hemorrhage) (z, y, x), for several hemorrhage classes its class probabilities (K, z, y, x), what
:class:`ichseg.ensemble.EnsembleAccumulator` takes for the folder's :class:`~ichseg.labels.LabelScheme`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ichseg.engine.inference import (
    CasePreprocessor,
    PreprocessedCase,
    PreprocessingKey,
    TrainedNetwork,
)
from ichseg.engine.plans import ModelJson, read_model_json
from ichseg.errors import ModelError
from ichseg.io.ctimage import CTImage
from ichseg.labels import LabelError, LabelScheme
from ichseg.model.folder import ModelFolder, TrainedModel

if TYPE_CHECKING:
    from ichseg.segmentation.settings import InferenceSettings


@dataclass(frozen=True)
class PreparedCase:
    """A case preprocessed for every configuration of a model set."""

    inputs: dict[PreprocessingKey, PreprocessedCase]

    def to(self, device: torch.device) -> PreparedCase:
        return PreparedCase({key: case.to(device) for key, case in self.inputs.items()})


class CasePreparer:
    """A model set's preprocessing without its networks (no weights, no GPU), so that CPU workers
    can prepare cases for networks that run in another process or on another machine."""

    def __init__(self, folder: ModelFolder, models: Sequence[TrainedModel],
                 model_json: Mapping[Path, ModelJson] | None = None) -> None:
        """``model_json``: each model's plans.json and dataset.json by nnU-Net folder, when read
        already (:func:`read_model_jsons`)."""
        model_json = model_json if model_json is not None else read_model_jsons(models)
        self.preprocessing = folder.preprocessing
        self.preprocessors: dict[PreprocessingKey, CasePreprocessor] = {}
        for model in models:
            plans, dataset_json = model_json[model.nnunet_folder]
            preprocessor = CasePreprocessor(plans, model.configuration, dataset_json)
            self.preprocessors.setdefault(preprocessor.preprocessing_key, preprocessor)

    def prepare(self, image: CTImage) -> PreparedCase:
        """``image`` (canonical orientation) preprocessed once per configuration, on the CPU."""
        prepared = self.preprocessing.apply(image)
        return PreparedCase({key: preprocessor.preprocess(prepared.array, prepared.spacing)
                             for key, preprocessor in self.preprocessors.items()})


@dataclass(frozen=True)
class ModelOutput:
    """One model's output for a case: P(hemorrhage) (z, y, x) for one class, else the class
    probabilities (K, z, y, x)."""

    group: str
    fold: int | str
    probability: torch.Tensor


class ModelSet:
    """The networks of ``models`` (see :meth:`ModelFolder.select`), loaded onto ``device``."""

    def __init__(self, folder: ModelFolder, models: Sequence[TrainedModel], device: torch.device,
                 settings: InferenceSettings | None = None) -> None:
        """``settings`` (default: mirroring on, step 0.5) give the sliding window's options; the
        models themselves are ``models``. Each nnU-Net folder's JSON files are read once."""
        mirroring, step_size, verbose = ((settings.mirroring, settings.step_size, settings.verbose)
                                         if settings is not None else (True, 0.5, False))
        model_json = read_model_jsons(models)
        self.folder = folder
        self.device = device
        self.preprocessing = folder.preprocessing
        self.preparer = CasePreparer(folder, models, model_json)
        self.models: list[TrainedModel] = list(models)
        self.labels = models_labels(self.models, model_json)
        self.networks = [TrainedNetwork(m.nnunet_folder, m.fold, device, model_json[m.nnunet_folder],
                                        use_mirroring=mirroring, tile_step_size=step_size, verbose=verbose)
                         for m in self.models]
        keys = {n.preprocessing_key[:2] for n in self.networks}
        if len(keys) > 1:
            raise ModelError(f"{folder.path}: models were planned on different data sets or plans {sorted(keys)}")
        for model, network in zip(self.models, self.networks, strict=True):
            if network.n_classes != self.labels.n_classes:
                raise ModelError(f"{model.checkpoint}: the network has {network.n_classes} outputs, its "
                                 f"dataset.json {self.labels.n_classes} classes")

    def __len__(self) -> int:
        return len(self.networks)

    def prepare(self, image: CTImage) -> PreparedCase:
        """``image`` (canonical orientation) preprocessed once per configuration of the set, and
        sent to the networks' device."""
        return self.preparer.prepare(image).to(self.device)

    def probabilities(self, case: PreparedCase) -> Iterator[ModelOutput]:
        """Each model's output for a prepared case (here or from a CPU worker), one at a time:
        P(hemorrhage) for a one-class folder, the class probabilities for several classes."""
        case = case.to(self.device)
        for model, network in zip(self.models, self.networks, strict=True):
            inputs = case.inputs[network.preprocessing_key]
            if self.labels.is_multiclass:
                probability = self._revert_classes(network.class_probabilities(inputs))
            else:
                probability = self.preprocessing.revert_array(network.foreground_probability(inputs))
            yield ModelOutput(model.group, model.fold, probability)

    def _revert_classes(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The padding of the slice axis (the second of (K, z, y, x)) removed."""
        return self.preprocessing.revert_array(probabilities.transpose(0, 1)).transpose(0, 1)


def models_labels(models: Sequence[TrainedModel], model_json: Mapping[Path, ModelJson]) -> LabelScheme:
    """The classes the models segment, from their dataset.json (the same for every model)."""
    schemes = {}
    for folder in dict.fromkeys(m.nnunet_folder for m in models):
        try:
            schemes[folder] = LabelScheme.from_dataset_json(model_json[folder][1]["labels"])
        except (KeyError, LabelError) as error:
            raise ModelError(f"{folder / 'dataset.json'}: no usable labels ({error})") from None
    if len(set(schemes.values())) > 1:
        raise ModelError(f"models segment different classes: "
                         f"{'; '.join(f'{f}: {list(s.names)}' for f, s in schemes.items())}")
    return next(iter(schemes.values()))


def read_model_jsons(models: Sequence[TrainedModel]) -> dict[Path, ModelJson]:
    """Each model's plans.json and dataset.json, read once per nnU-Net folder (the folds of a
    group share one)."""
    return {folder: read_model_json(folder) for folder in dict.fromkeys(m.nnunet_folder for m in models)}
