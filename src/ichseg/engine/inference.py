"""Trained nnU-Net networks as in-memory predictors of hemorrhage (or class) probabilities.

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

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from ichseg.engine.checkpoint import load_checkpoint
from ichseg.engine.plans import ModelJson, NetworkPlan, PreprocessingKey
from ichseg.engine.resampling import ExportResampling, resample_logits
from ichseg.engine.sliding_window import SlidingWindow
from ichseg.errors import ModelError
from ichseg.layout import final_checkpoint


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
    no GPU and no weights loaded can prepare cases for networks that run elsewhere. nnU-Net's
    plans manager (and the modules it imports) is made on the first case, not at loading."""

    def __init__(self, plans: dict[str, Any], configuration: str, dataset_json: dict[str, Any]) -> None:
        self.plans = plans
        self.configuration = configuration
        self.dataset_json = dataset_json


    @property
    def preprocessing_key(self) -> PreprocessingKey:
        return (self.plans["dataset_name"], self.plans["plans_name"], self.configuration)

    @cached_property
    def _managers(self) -> tuple[Any, Any]:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(self.plans)
        return plans_manager, plans_manager.get_configuration(self.configuration)

    def preprocess(self, array: np.ndarray, spacing: tuple[float, float, float]) -> PreprocessedCase:
        """nnU-Net's preprocessing (crop, CT normalisation, resampling) of one (z, y, x) volume, on the CPU."""
        from ichseg.engine.preprocessing import preprocess_case

        plans_manager, configuration_manager = self._managers
        data, properties = preprocess_case(array, spacing, plans_manager, configuration_manager, self.dataset_json)
        return PreprocessedCase(torch.from_numpy(np.ascontiguousarray(data)), properties)


class TrainedNetwork:
    """One fold of one model group, loaded once and ready to predict many cases."""

    def __init__(self, nnunet_folder: Path, fold: int | str, device: torch.device, model_json: ModelJson, *,
                 use_mirroring: bool = True, tile_step_size: float = 0.5, verbose: bool = False) -> None:
        """The fold's network from its checkpoint; ``model_json``: the folder's plans.json and
        dataset.json (:func:`ichseg.engine.plans.read_model_json`), read once for all its folds."""
        checkpoint_path = final_checkpoint(nnunet_folder, fold)
        if not checkpoint_path.is_file():
            raise ModelError(f"{checkpoint_path}: missing (the model of fold {fold} is not trained)")
        try:
            checkpoint = load_checkpoint(checkpoint_path)
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelError(f"{nnunet_folder}: unreadable model files ({error})") from None
        self.nnunet_folder = nnunet_folder
        self.plan = NetworkPlan.from_json(model_json, checkpoint["init_args"]["configuration"], nnunet_folder)
        network = _network(self.plan, checkpoint, checkpoint_path)
        if device.type == "cpu":
            group_norms_for_instance_norms(network)
        network.to(device).eval()
        self.device = device
        self.window = SlidingWindow(network, self.plan.patch_size, self.plan.num_segmentation_heads, device,
                                    step_size=tile_step_size,
                                    mirror_axes=_mirror_axes(checkpoint) if use_mirroring else None,
                                    mirror_batch=mirror_batch(device), verbose=verbose)

    @property
    def preprocessing_key(self) -> PreprocessingKey:
        """Networks with equal keys take identical preprocessed input (a :class:`CasePreprocessor`'s)."""
        return self.plan.preprocessing_key

    @property
    def export_resampling(self) -> ExportResampling:
        return ExportResampling(self.plan.resampling_fn_probabilities,
                                dict(self.plan.resampling_fn_probabilities_kwargs))

    @property
    def n_classes(self) -> int:
        """The classes of its softmax, background included (2 for hemorrhage or not)."""
        return self.plan.num_segmentation_heads

    @torch.inference_mode()
    def foreground_probability(self, case: PreprocessedCase) -> torch.Tensor:
        """P(hemorrhage) per voxel of the volume given to :meth:`preprocess` (on the device), for
        a network of two classes; outside nnU-Net's crop P is 0."""
        if self.n_classes != 2:
            raise ModelError(f"{self.nnunet_folder}: the network has {self.n_classes} classes; "
                             f"its output is its class probabilities, not one foreground probability")
        probabilities, props = self._cropped_probabilities(case)
        return self._uncropped(probabilities[1], props)

    @torch.inference_mode()
    def class_probabilities(self, case: PreprocessedCase) -> torch.Tensor:
        """Each class's probability, (classes, z, y, x), per voxel of the volume given to
        :meth:`preprocess` (on the device); outside nnU-Net's crop the background's is 1."""
        probabilities, props = self._cropped_probabilities(case)
        return self._uncropped(probabilities, props)

    def _cropped_probabilities(self, case: PreprocessedCase) -> tuple[torch.Tensor, dict[str, Any]]:
        """The softmax (classes, z, y, x) on nnU-Net's crop of the input's grid, in nnU-Net's axis
        order: the logits go back to the input's spacing as nnU-Net's export takes them there
        (:mod:`ichseg.engine.resampling`), then softmax in float32, nnU-Net's inference nonlinearity."""
        logits = self.window.logits(case.data).to(self.device)
        props = case.properties
        case_spacing = [props["spacing"][axis] for axis in self.plan.transpose_forward]
        shape = tuple(props["shape_after_cropping_and_before_resampling"])
        planned = list(self.plan.spacing)
        current_spacing = planned if len(planned) == len(shape) else [case_spacing[0], *planned]  # 2d: slices kept
        resampled = resample_logits(logits, shape, current_spacing, case_spacing, self.export_resampling)
        return torch.softmax(resampled.float(), dim=0), props

    def _uncropped(self, probability: torch.Tensor, props: dict[str, Any]) -> torch.Tensor:
        """``probability`` (one map, or classes along a first axis) put back into the grid before
        nnU-Net's crop, in the input's axis order: outside the crop a voxel is background."""
        channels = probability.shape[:-3]
        full = torch.zeros((*channels, *props["shape_before_cropping"]), dtype=probability.dtype,
                           device=probability.device)
        if channels:
            full[0] = 1.0
        crop: tuple[Any, ...] = (..., *(slice(lo, hi) for lo, hi in props["bbox_used_for_cropping"]))
        full[crop] = probability
        leading = tuple(range(len(channels)))
        return full.permute(*leading, *(axis + len(channels) for axis in self.plan.transpose_backward))


def _network(plan: NetworkPlan, checkpoint: dict[str, Any], checkpoint_path: Path) -> nn.Module:
    """What nnUNetTrainer.build_network_architecture builds (IchsegTrainer keeps nnU-Net's networks),
    without the random initialisation the checkpoint's weights replace anyway: built on the meta
    device (no memory, no initialisation), then given the checkpoint's tensors themselves."""
    with torch.device("meta"):
        network = get_network_from_plans(plan.arch_class_name, plan.arch_kwargs, plan.arch_kwargs_requiring_import,
                                         plan.num_input_channels, plan.num_segmentation_heads, allow_init=False,
                                         deep_supervision=False)
    try:
        network.load_state_dict(checkpoint["network_weights"], assign=True)
    except (KeyError, RuntimeError) as error:  # torch's message: a header line, then what does not fit
        detail = str(error).strip().splitlines()[-1].strip()
        raise ModelError(f"{checkpoint_path}: its weights do not fit the network of its plans "
                         f"({detail[:200]})") from None
    if any(tensor.is_meta for tensor in (*network.parameters(), *network.buffers())):
        raise ModelError(f"{checkpoint_path}: the checkpoint does not hold every weight of its network")
    return network


def mirror_batch(device: torch.device) -> int:
    """Mirrored copies of a tile per network pass: all 8 on a GPU (one launch of a larger batch);
    2 on a CPU, where pairs ran about 15 % faster per copy than single passes and larger batches
    slower (3d_fullres of the demo's plans, 2 cores)."""
    return 8 if device.type == "cuda" else 2


def group_norms_for_instance_norms(module: nn.Module) -> None:
    """Each instance norm of ``module`` replaced by the group norm with one channel per group and
    the same affine parameters: the same function (statistics over each channel of each sample),
    which torch's CPU kernels compute about three times faster (instance norm goes through batch
    norm there). Results agree to float32 rounding (tested against nnU-Net's predictor)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
            norm = nn.GroupNorm(child.num_features, child.num_features, child.eps, child.affine)
            if child.affine:
                norm.load_state_dict(child.state_dict())
            setattr(module, name, norm)
        else:
            group_norms_for_instance_norms(child)


def _mirror_axes(checkpoint: dict[str, Any]) -> tuple[int, ...] | None:
    """The axes the trainer allowed mirroring along at inference (nnU-Net stores them)."""
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    return tuple(int(a) for a in axes) if axes is not None else None
