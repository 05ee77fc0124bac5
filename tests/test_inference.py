"""Prediction plumbing without trained models: the sliding window against nnU-Net's predictor,
mirror batching, read-ahead, light imports."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from torch import nn

from ichseg.batch.read_ahead import ReadAhead
from ichseg.engine.sliding_window import SlidingWindow


class AsymmetricNet(nn.Module):
    """A small convolutional net whose output changes under flips (so a wrong un-flip shows)."""

    def __init__(self, dims: int, fail_on_batches: bool = False) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        torch.manual_seed(0)
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), nn.LeakyReLU(), conv(4, 2, 3, padding=1))
        self.fail_on_batches = fail_on_batches
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        if self.fail_on_batches and x.shape[0] > 1:
            raise torch.OutOfMemoryError("simulated: the batch does not fit")
        ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x)
        return self.body(x + ramp)


def nnunet_predictor(network: nn.Module, patch_size: tuple[int, ...], axes: tuple[int, ...] | None,
                     step: float = 0.5) -> nnUNetPredictor:
    """nnU-Net's own predictor around ``network``: the reference."""
    made = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=axes is not None,
                           device=torch.device("cpu"), verbose=False, allow_tqdm=False,
                           perform_everything_on_device=False)
    made.network = network
    made.allowed_mirroring_axes = axes
    made.configuration_manager = SimpleNamespace(patch_size=list(patch_size))
    made.label_manager = SimpleNamespace(num_segmentation_heads=2)
    return made


def window(network: nn.Module, patch_size: tuple[int, ...], axes: tuple[int, ...] | None, batch: int = 1,
           step: float = 0.5) -> SlidingWindow:
    return SlidingWindow(network, patch_size, 2, torch.device("cpu"), step_size=step, mirror_axes=axes,
                         mirror_batch=batch)


@pytest.mark.parametrize(("patch", "image", "axes", "step"), [
    ((4, 8, 8), (7, 13, 11), (0, 1, 2), 0.5),   # 3d, several tiles per axis, mirroring
    ((4, 8, 8), (7, 13, 11), None, 0.5),
    ((4, 8, 8), (3, 6, 20), (0, 1, 2), 0.5),     # smaller than a patch on two axes: padded, then cut
    ((8, 8), (5, 13, 11), (0, 1), 0.5),          # 2d network: every slice tiled
    ((8, 8), (5, 13, 11), None, 1.0),
])
def test_sliding_window_equals_nnunets_predictor(patch, image, axes, step) -> None:
    dims = len(patch)
    network = AsymmetricNet(dims)
    volume = torch.randn(1, *image)
    expected = nnunet_predictor(network, patch, axes, step).predict_sliding_window_return_logits(volume)
    ours = window(network, patch, axes, step=step).logits(volume)
    assert ours.dtype == expected.dtype == torch.float16 and ours.shape == expected.shape == (2, *image)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize(("dims", "axes", "batch", "passes"), [
    (3, (0, 1, 2), 8, [8]), (3, (0, 1, 2), 2, [2, 2, 2, 2]), (3, (0, 1, 2), 3, [3, 3, 2]),
    (3, (1, 2), 4, [4]), (2, (0, 1), 2, [2, 2]),
])
def test_batched_mirrors_equal_nnunets_one_by_one_average(dims: int, axes: tuple[int, ...], batch: int,
                                                          passes: list[int]) -> None:
    tile = torch.randn(1, 1, *([6, 8, 10][-dims:]))
    network = AsymmetricNet(dims)
    patch = tuple(tile.shape[2:])
    expected = nnunet_predictor(network, patch, axes)._internal_maybe_mirror_and_predict(tile)
    assert network.batch_sizes == [1] * 2 ** len(axes)  # nnU-Net's loop: one pass per mirror
    network.batch_sizes.clear()
    batched = window(network, patch, axes, batch=batch).mirrored_prediction(tile)
    assert network.batch_sizes == passes
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(window(network, patch, None).mirrored_prediction(tile), expected)


def test_a_batch_that_does_not_fit_falls_back_to_one_by_one_for_good() -> None:
    tile = torch.randn(1, 1, 4, 6, 8)
    patch = tuple(tile.shape[2:])
    reference = nnunet_predictor(AsymmetricNet(3), patch, (0, 1, 2))._internal_maybe_mirror_and_predict(tile)
    network = AsymmetricNet(3, fail_on_batches=True)
    made = window(network, patch, (0, 1, 2), batch=8)
    torch.testing.assert_close(made.mirrored_prediction(tile), reference)
    assert made.mirror_batch == 1
    network.batch_sizes.clear()
    made.mirrored_prediction(tile)
    assert network.batch_sizes == [1] * 8


def test_the_next_case_is_read_while_this_one_is_worked_on(tmp_path: Path) -> None:
    cases = [tmp_path / f"case{i}" for i in range(3)]
    started = {path.name: threading.Event() for path in cases}

    def read(path: Path) -> str:
        started[path.name].set()
        if path.name == "case1":
            raise ValueError("unreadable")
        return path.name

    seen = []
    for index, (path, reading) in enumerate(ReadAhead(cases, read)):
        if index + 1 < len(cases):  # the next reading starts before this case is taken
            assert started[cases[index + 1].name].wait(timeout=30)
        try:
            seen.append((path.name, reading.result()))
        except ValueError as error:
            seen.append((path.name, str(error)))
    assert seen == [("case0", "case0"), ("case1", "unreadable"), ("case2", "case2")]


def test_the_first_case_is_read_from_the_start_while_the_networks_load(tmp_path: Path) -> None:
    """predict() makes its reading before loading the networks: the first read must not wait
    for the iteration, and no later case is read ahead of it."""
    cases = [tmp_path / f"case{i}" for i in range(3)]
    started = {path.name: threading.Event() for path in cases}
    with ReadAhead(cases, lambda path: started[path.name].set()) as reading:
        assert started["case0"].wait(timeout=30)
        assert not started["case1"].is_set() and reading.cases == cases


def test_prediction_imports_neither_dynamo_nor_nnunets_training_code() -> None:
    """nnU-Net's predictor and preprocessor modules import torch._dynamo and nnU-Net's training
    data loaders: seconds of start-up. Prediction must not pull either in."""
    code = ("import sys, ichseg.commands, ichseg.model.networks, ichseg.engine.inference; "
            "print(sorted(m for m in sys.modules if m.startswith(('nnunetv2.training', 'torch._dynamo', "
            "'nnunetv2.inference.predict_from_raw_data'))))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


@pytest.mark.slow
def test_loading_networks_leaves_nnunets_plans_and_preprocessing_modules_to_the_first_case(tiny_model) -> None:
    """Loading reads the plans itself (:mod:`ichseg.engine.plans`): nnU-Net's plans module and
    what it imports (image readers, resamplers, pandas) come with the first case's preprocessing."""
    heavy = "('pandas', 'nnunetv2.utilities.plans_handling', 'nnunetv2.preprocessing', 'blosc2', 'nibabel')"
    code = ("import sys; from ichseg.segmentation.segmenter import Segmenter; "
            f"seen = lambda: sorted({{m.split('.')[0] if m.startswith(('pandas', 'blosc2', 'nibabel')) else m "
            f"for m in sys.modules if m.startswith({heavy})}}); "
            f"s = Segmenter.load({str(tiny_model)!r}, device='cpu'); print(seen()); "
            "import numpy as np; s.segment(np.full((6, 24, 24), -1000, np.int16), (5.0, 1.0, 1.0), "
            "accept_intensities=True); print('nnunetv2.utilities.plans_handling.plans_handler' in seen())")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.split("\n")[:2] == ["[]", "True"], imported.stdout


def test_group_norms_replace_instance_norms_with_the_same_function() -> None:
    from ichseg.engine.inference import group_norms_for_instance_norms

    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv3d(1, 6, 3), nn.InstanceNorm3d(6, affine=True),
                            nn.Sequential(nn.Conv3d(6, 4, 3), nn.InstanceNorm3d(4, eps=1e-3)),
                            nn.InstanceNorm3d(4, track_running_stats=True)).eval()
    with torch.no_grad():
        network[1].weight.uniform_(0.5, 2.0)
        network[1].bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 1, 7, 12, 10) * 50 + 20
    expected, bias = network(x), network[1].bias.clone()
    group_norms_for_instance_norms(network)
    kinds = [type(m).__name__ for m in (network[1], network[2][1], network[3])]
    assert kinds == ["GroupNorm", "GroupNorm", "InstanceNorm3d"]  # running statistics: not the same function
    assert network[2][1].eps == 1e-3 and not network[2][1].affine and torch.equal(network[1].bias, bias)
    assert torch.allclose(network(x), expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_its_plans_is_named(tiny_model, tmp_path) -> None:
    """Networks are built on the meta device and take the checkpoint's tensors: a weight missing
    from the checkpoint is a ModelError naming the file, not a half-built network."""
    import shutil

    from ichseg.engine.checkpoint import load_checkpoint
    from ichseg.engine.inference import TrainedNetwork
    from ichseg.engine.plans import read_model_json
    from ichseg.errors import ModelError
    from ichseg.model.folder import ModelFolder

    (model,) = ModelFolder.open(tiny_model).select()
    copy = tmp_path / model.nnunet_folder.name
    shutil.copytree(model.nnunet_folder, copy)
    path = copy / "fold_0" / "checkpoint_final.pth"
    checkpoint = load_checkpoint(path)
    weights = dict(checkpoint["network_weights"])
    weights.pop(next(iter(weights)))
    torch.save({**checkpoint, "network_weights": weights}, path)
    with pytest.raises(ModelError, match="checkpoint_final.pth: its weights do not fit the network of its plans "
                                         r"\(Missing key\(s\) in state_dict"):
        TrainedNetwork(copy, 0, torch.device("cpu"), read_model_json(copy))
    network = TrainedNetwork(model.nnunet_folder, 0, torch.device("cpu"), read_model_json(model.nnunet_folder))
    assert network.window.network.training is False
