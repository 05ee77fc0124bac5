"""What one trained configuration's network needs from nnU-Net's plans, read without nnU-Net's
plans module.

``nnunetv2.utilities.plans_handling.plans_handler`` imports nnU-Net's image readers, resamplers,
label handling and through them pandas, scikit-image, nibabel, SimpleITK and blosc2: most of a
second that loading networks does not need. :class:`NetworkPlan` reads the few fields a network
and its sliding window use straight from plans.json and dataset.json, for plans as nnU-Net v2
writes them for one data set (no cascade, no regions, no inherited configuration); anything else
goes through nnU-Net's ``PlansManager`` itself (tested: equal fields either way). Preprocessing
still uses ``PlansManager`` (:class:`ichseg.engine.inference.CasePreprocessor`), on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ichseg.errors import ModelError

PreprocessingKey = tuple[str, str, str]
#: A trained model's plans.json and dataset.json, as read by :func:`read_model_json`.
ModelJson = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class NetworkPlan:
    """One configuration of a model's plans, as its network and sliding window see it."""

    dataset_name: str
    plans_name: str
    configuration: str
    arch_class_name: str
    arch_kwargs: dict[str, Any]
    arch_kwargs_requiring_import: tuple[str, ...]
    num_input_channels: int
    num_segmentation_heads: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    resampling_fn_probabilities: str
    resampling_fn_probabilities_kwargs: dict[str, Any]

    @property
    def preprocessing_key(self) -> PreprocessingKey:
        """Networks with equal keys take identical preprocessed input."""
        return (self.dataset_name, self.plans_name, self.configuration)

    @classmethod
    def read(cls, nnunet_folder: Path, configuration: str) -> NetworkPlan:
        """The plan of ``configuration`` in a trained model's nnU-Net folder."""
        return cls.from_json(read_model_json(nnunet_folder), configuration, nnunet_folder)

    @classmethod
    def from_json(cls, model_json: ModelJson, configuration: str, nnunet_folder: Path) -> NetworkPlan:
        """The plan of ``configuration`` in a model folder's plans.json and dataset.json, read
        already (:func:`read_model_json`; ``nnunet_folder`` names them in errors)."""
        plans, dataset_json = model_json
        if configuration not in plans.get("configurations", {}):
            raise ModelError(f"{nnunet_folder / 'plans.json'}: no configuration {configuration!r}")
        settings = plans["configurations"][configuration]
        if _needs_plans_manager(settings, dataset_json):
            return cls._through_plans_manager(plans, configuration, dataset_json)
        architecture = settings["architecture"]
        return cls(plans["dataset_name"], plans["plans_name"], configuration, architecture["network_class_name"],
                   dict(architecture["arch_kwargs"]), tuple(architecture["_kw_requires_import"]),
                   len(dataset_json["channel_names"]), len(dataset_json["labels"]),
                   tuple(settings["patch_size"]), tuple(settings["spacing"]),
                   tuple(plans["transpose_forward"]), tuple(plans["transpose_backward"]),
                   settings["resampling_fn_probabilities"], dict(settings["resampling_fn_probabilities_kwargs"]))

    @classmethod
    def _through_plans_manager(cls, plans: dict[str, Any], configuration: str,
                               dataset_json: dict[str, Any]) -> NetworkPlan:
        from nnunetv2.utilities.label_handling.label_handling import (
            determine_num_input_channels,
        )
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        manager = PlansManager(plans)
        settings = manager.get_configuration(configuration)
        resolved = settings.configuration
        return cls(manager.dataset_name, manager.plans_name, configuration, settings.network_arch_class_name,
                   dict(settings.network_arch_init_kwargs), tuple(settings.network_arch_init_kwargs_req_import),
                   determine_num_input_channels(manager, settings, dataset_json),
                   manager.get_label_manager(dataset_json).num_segmentation_heads,
                   tuple(settings.patch_size), tuple(settings.spacing),
                   tuple(manager.transpose_forward), tuple(manager.transpose_backward),
                   resolved["resampling_fn_probabilities"], dict(resolved["resampling_fn_probabilities_kwargs"]))


def read_model_json(nnunet_folder: Path) -> ModelJson:
    """A trained model's plans.json and dataset.json."""
    try:
        plans = json.loads((nnunet_folder / "plans.json").read_text())
        dataset_json = json.loads((nnunet_folder / "dataset.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{nnunet_folder}: unreadable model files ({error})") from None
    return plans, dataset_json


def _needs_plans_manager(settings: dict[str, Any], dataset_json: dict[str, Any]) -> bool:
    """Plans whose reading takes nnU-Net's own rules: inherited configurations, cascades, regions,
    an ignore label or repeated label values, old-style architecture fields, the old 'modality' key."""
    labels = dataset_json.get("labels", {})
    return ("inherits_from" in settings or settings.get("previous_stage") is not None
            or "architecture" not in settings or "channel_names" not in dataset_json
            or "ignore" in labels or len(set(labels.values())) != len(labels)
            or any(isinstance(value, (list, tuple)) for value in labels.values()))
