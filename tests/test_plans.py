"""NetworkPlan reads what nnU-Net's PlansManager reads, on nnU-Net's own plans for the tiny phantoms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from nnunetv2.utilities.label_handling.label_handling import (
    determine_num_input_channels,
)
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from ichseg.engine.plans import NetworkPlan
from ichseg.errors import ModelError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_json(planned_tiny) -> tuple[dict, dict]:
    """nnU-Net's plans and dataset.json of the planned tiny data set."""
    _, ws = planned_tiny
    folder = ws.preprocessed / ws.dataset_folder_name("tiny")
    return json.loads((folder / "nnUNetPlans.json").read_text()), json.loads((folder / "dataset.json").read_text())


def nnunet_folder(tmp_path: Path, plans: dict, dataset_json: dict) -> Path:
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    (tmp_path / "dataset.json").write_text(json.dumps(dataset_json))
    return tmp_path


def expected_plan(plans: dict, configuration: str, dataset_json: dict) -> dict:
    """The fields as nnU-Net's own managers give them."""
    manager = PlansManager(plans)
    settings = manager.get_configuration(configuration)
    return {
        "dataset_name": manager.dataset_name, "plans_name": manager.plans_name, "configuration": configuration,
        "arch_class_name": settings.network_arch_class_name, "arch_kwargs": settings.network_arch_init_kwargs,
        "arch_kwargs_requiring_import": tuple(settings.network_arch_init_kwargs_req_import),
        "num_input_channels": determine_num_input_channels(manager, settings, dataset_json),
        "num_segmentation_heads": manager.get_label_manager(dataset_json).num_segmentation_heads,
        "patch_size": tuple(settings.patch_size), "spacing": tuple(settings.spacing),
        "transpose_forward": tuple(manager.transpose_forward), "transpose_backward": tuple(manager.transpose_backward),
        "resampling_fn_probabilities": settings.configuration["resampling_fn_probabilities"],
        "resampling_fn_probabilities_kwargs": settings.configuration["resampling_fn_probabilities_kwargs"],
    }


def test_every_configuration_reads_as_nnunet_reads_it(model_json, tmp_path) -> None:
    plans, dataset_json = model_json
    folder = nnunet_folder(tmp_path, plans, dataset_json)
    assert {"2d", "3d_fullres"} <= set(plans["configurations"])
    for configuration in plans["configurations"]:
        assert dataclasses.asdict(NetworkPlan.read(folder, configuration)) == \
            expected_plan(plans, configuration, dataset_json), configuration


def test_inherited_configurations_and_regions_go_through_nnunets_manager(model_json, tmp_path) -> None:
    """An inherited configuration with its own patch size, on a region-based data set with an
    extra input channel: nnU-Net's rules (inheritance, regions) decide the fields."""
    plans, dataset_json = json.loads(json.dumps(model_json))
    plans["configurations"]["3d_small"] = {"inherits_from": "3d_fullres", "patch_size": [8, 32, 32]}
    dataset_json["channel_names"] = {"0": "CT", "1": "CT2"}
    dataset_json["labels"] = {"background": 0, "hemorrhage": [1, 2], "core": 2}
    dataset_json["regions_class_order"] = [1, 2]
    folder = nnunet_folder(tmp_path, plans, dataset_json)
    plan = NetworkPlan.read(folder, "3d_small")
    assert dataclasses.asdict(plan) == expected_plan(plans, "3d_small", dataset_json)
    assert plan.patch_size == (8, 32, 32) and plan.num_input_channels == 2 and plan.num_segmentation_heads == 2
    assert plan.arch_class_name == plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"]


def test_a_missing_configuration_or_unreadable_plans_is_a_model_error(model_json, tmp_path) -> None:
    folder = nnunet_folder(tmp_path, *model_json)
    with pytest.raises(ModelError, match="no configuration '3d_cascade_fullres'"):
        NetworkPlan.read(folder, "3d_cascade_fullres")
    (folder / "plans.json").write_text("{")
    with pytest.raises(ModelError, match="unreadable model files"):
        NetworkPlan.read(folder, "3d_fullres")
