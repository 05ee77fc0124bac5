"""Prediction plumbing without trained models: mirror batching, read-ahead, light imports."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from ichseg.engine.inference import MirrorBatchingPredictor
from ichseg.segmenter import _read_ahead


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


def predictor(network: nn.Module, axes: tuple[int, ...], batch: bool) -> MirrorBatchingPredictor:
    made = MirrorBatchingPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False,
                                   perform_everything_on_device=False)
    made.network = network
    made.allowed_mirroring_axes = axes
    made.batch_mirrors = batch
    return made


@pytest.mark.parametrize(("dims", "axes"), [(3, (0, 1, 2)), (3, (1, 2)), (2, (0, 1))])
def test_batched_mirrors_equal_nnunets_one_by_one_average(dims: int, axes: tuple[int, ...]) -> None:
    tile = torch.randn(1, 1, *([6, 8, 10][-dims:]))
    network = AsymmetricNet(dims)
    expected = predictor(network, axes, batch=False)._internal_maybe_mirror_and_predict(tile)
    assert network.batch_sizes == [1] * 2 ** len(axes)  # nnU-Net's loop: one pass per mirror
    network.batch_sizes.clear()
    batched = predictor(network, axes, batch=True)._internal_maybe_mirror_and_predict(tile)
    assert network.batch_sizes == [2 ** len(axes)]  # one pass for all
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-6)
    unmirrored = predictor(network, axes, batch=True)
    unmirrored.use_mirroring = False
    assert not torch.allclose(unmirrored._internal_maybe_mirror_and_predict(tile), expected)


def test_a_batch_that_does_not_fit_falls_back_to_nnunets_loop_for_good() -> None:
    tile = torch.randn(1, 1, 4, 6, 8)
    reference = predictor(AsymmetricNet(3), (0, 1, 2), batch=False)._internal_maybe_mirror_and_predict(tile)
    network = AsymmetricNet(3, fail_on_batches=True)
    made = predictor(network, (0, 1, 2), batch=True)
    torch.testing.assert_close(made._internal_maybe_mirror_and_predict(tile), reference)
    assert made.batch_mirrors is False
    network.batch_sizes.clear()
    made._internal_maybe_mirror_and_predict(tile)
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
    for index, (path, reading) in enumerate(_read_ahead(cases, read)):
        if index + 1 < len(cases):  # the next reading starts before this case is taken
            assert started[cases[index + 1].name].wait(timeout=30)
        try:
            seen.append((path.name, reading.result()))
        except ValueError as error:
            seen.append((path.name, str(error)))
    assert seen == [("case0", "case0"), ("case1", "unreadable"), ("case2", "case2")]


def test_prediction_does_not_import_nnunets_trainer() -> None:
    code = ("import sys, ichseg.prediction, ichseg.model_set, ichseg.engine.inference; "
            "print(sorted(m for m in sys.modules if m.startswith('nnunetv2.training.nnUNetTrainer')))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
