"""Trained nnU-Net networks as in-memory predictors of hemorrhage probability.

nnU-Net's own route reads each case from disk, preprocesses it once per model, resamples every
model's logits back with scipy and writes files for the ensembling step to read again. Here a case
is preprocessed once per (plans, configuration) and shared by every model that uses it, the
networks stay loaded on the device, and logits go back to the input's shape with torch
interpolation on the device, exactly as nnU-Net's export resamples them
(:mod:`ichseg.engine.resampling`). Preprocessing and the sliding window are nnU-Net's computations
without nnU-Net's predictor and preprocessor classes, whose modules import ``torch._dynamo`` and
nnU-Net's training code (:mod:`ichseg.engine.preprocessing`, :mod:`ichseg.engine.sliding_window`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from ichseg.engine.checkpoint import load_checkpoint
from ichseg.engine.preprocessing import preprocess_case
from ichseg.engine.resampling import ExportResampling, resample_logits
from ichseg.engine.sliding_window import SlidingWindow
from ichseg.errors import ModelError
from ichseg.layout import FINAL_CHECKPOINT, fold_folder_name

PreprocessingKey = tuple[str, str, str]


@dataclass
class PreprocessedCase:
    """A case as one configuration's network sees it, plus what is needed to go back."""

    data: torch.Tensor
    properties: dict[str, Any]

    def to(self, device: torch.device) -> PreprocessedCase:
        """On ``device`` (the copy to a GPU overlaps other work); itself when already there."""
        if self.data.device == device or device.type != "cuda":
            return self
        return PreprocessedCase(self.data.to(device, non_blocking=True), self.properties)


class CasePreprocessor:
    """nnU-Net's preprocessing of one (plans, configuration), without a network: a process with
    no GPU and no weights loaded can prepare cases for networks that run elsewhere."""

    def __init__(self, plans_manager: PlansManager, configuration: str, dataset_json: dict[str, Any]) -> None:
        self.plans_manager = plans_manager
        self.configuration = configuration
        self.configuration_manager = plans_manager.get_configuration(configuration)
        self.dataset_json = dataset_json

    @classmethod
    def from_folder(cls, nnunet_folder: Path, configuration: str) -> CasePreprocessor:
        """The preprocessing of a trained model's nnU-Net folder (its plans.json and dataset.json)."""
        try:
            plans = json.loads((nnunet_folder / "plans.json").read_text())
            dataset_json = json.loads((nnunet_folder / "dataset.json").read_text())
        except (OSError, ValueError) as error:
            raise ModelError(f"{nnunet_folder}: unreadable model files ({error})") from None
        return cls(PlansManager(plans), configuration, dataset_json)

    @property
    def preprocessing_key(self) -> PreprocessingKey:
        return (self.plans_manager.dataset_name, self.plans_manager.plans_name, self.configuration)

    def preprocess(self, array: np.ndarray, spacing: tuple[float, float, float]) -> PreprocessedCase:
        """nnU-Net's preprocessing (crop, CT normalisation, resampling) of one (z, y, x) volume, on the CPU."""
        data, properties = preprocess_case(array, spacing, self.plans_manager, self.configuration_manager,
                                           self.dataset_json)
        return PreprocessedCase(torch.from_numpy(np.ascontiguousarray(data)), properties)


class TrainedNetwork:
    """One fold of one model group, loaded once and ready to predict many cases."""

    def __init__(self, nnunet_folder: Path, fold: int | str, device: torch.device, *,
                 use_mirroring: bool = True, tile_step_size: float = 0.5, verbose: bool = False) -> None:
        checkpoint_path = nnunet_folder / fold_folder_name(fold) / FINAL_CHECKPOINT
        if not checkpoint_path.is_file():
            raise ModelError(f"{checkpoint_path}: missing (the model of fold {fold} is not trained)")
        try:
            checkpoint = load_checkpoint(checkpoint_path)
            self.dataset_json = json.loads((nnunet_folder / "dataset.json").read_text())
            plans = json.loads((nnunet_folder / "plans.json").read_text())
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelError(f"{nnunet_folder}: unreadable model files ({error})") from None
        self.plans_manager = PlansManager(plans)
        self.configuration = checkpoint["init_args"]["configuration"]
        self.configuration_manager = self.plans_manager.get_configuration(self.configuration)
        self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)
        # what nnUNetTrainer.build_network_architecture does (IchsegTrainer keeps nnU-Net's networks),
        # without the random initialisation the checkpoint's weights replace anyway
        manager = self.configuration_manager
        network = get_network_from_plans(
            manager.network_arch_class_name, manager.network_arch_init_kwargs,
            manager.network_arch_init_kwargs_req_import,
            determine_num_input_channels(self.plans_manager, manager, self.dataset_json),
            self.label_manager.num_segmentation_heads, allow_init=False, deep_supervision=False)
        network.load_state_dict(checkpoint["network_weights"])
        network.to(device).eval()
        self.device = device
        self.window = SlidingWindow(network, tuple(manager.patch_size), self.label_manager.num_segmentation_heads,
                                    device, step_size=tile_step_size,
                                    mirror_axes=_mirror_axes(checkpoint) if use_mirroring else None,
                                    batch_mirrors=device.type == "cuda", verbose=verbose)

    @property
    def preprocessing_key(self) -> PreprocessingKey:
        """Networks with equal keys take identical preprocessed input (a :class:`CasePreprocessor`'s)."""
        return (self.plans_manager.dataset_name, self.plans_manager.plans_name, self.configuration)

    @property
    def export_resampling(self) -> ExportResampling:
        configuration = self.configuration_manager.configuration
        return ExportResampling(configuration["resampling_fn_probabilities"],
                                dict(configuration["resampling_fn_probabilities_kwargs"]))

    @torch.inference_mode()
    def foreground_probability(self, case: PreprocessedCase) -> torch.Tensor:
        """P(hemorrhage) per voxel of the volume given to :meth:`preprocess` (on the device).

        The logits go back to the input's grid as nnU-Net's export takes them there
        (:mod:`ichseg.engine.resampling`), then softmax; outside nnU-Net's crop P is 0.
        """
        logits = self.window.logits(case.data).to(self.device)
        props = case.properties
        case_spacing = [props["spacing"][axis] for axis in self.plans_manager.transpose_forward]
        shape = tuple(props["shape_after_cropping_and_before_resampling"])
        planned = list(self.configuration_manager.spacing)
        current_spacing = planned if len(planned) == len(shape) else [case_spacing[0], *planned]  # 2d: slices kept
        resampled = resample_logits(logits, shape, current_spacing, case_spacing, self.export_resampling)
        probability = torch.softmax(resampled.float(), dim=0)[1]  # nnU-Net's inference nonlinearity, in float32
        full = torch.zeros(tuple(props["shape_before_cropping"]), dtype=probability.dtype, device=probability.device)
        full[tuple(slice(lo, hi) for lo, hi in props["bbox_used_for_cropping"])] = probability
        return full.permute(*self.plans_manager.transpose_backward)


def _mirror_axes(checkpoint: dict[str, Any]) -> tuple[int, ...] | None:
    """The axes the trainer allowed mirroring along at inference (nnU-Net stores them)."""
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return tuple(int(a) for a in axes) if axes is not None else None
