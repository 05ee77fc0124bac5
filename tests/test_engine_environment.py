"""nnU-Net kept quiet and scoped: no process-wide settings, W&B ignored, stdout captured only in a
block, warnings hidden by category, checkpoints read without unpickling code."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from ichseg.engine import checkpoint, environment
from ichseg.errors import ModelError
from ichseg.workspace import Workspace


def test_importing_the_engine_sets_none_of_nnunets_variables():
    code = ("import os; import ichseg.engine; "
            "print(sorted(k for k in os.environ if k.startswith('nnUNet_')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_inherited_wandb_switch_is_reported_once_and_off_only_inside(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("nnUNet_wandb_enabled", "1")
    monkeypatch.setattr(environment, "_reported", set())
    ws = Workspace.open(tmp_path / "ws")
    for _ in range(2):
        with environment.nnunet_paths(ws):
            assert os.environ["nnUNet_wandb_enabled"] == "0"
            assert os.environ["nnUNet_raw"] == str(ws.raw)
    assert os.environ["nnUNet_wandb_enabled"] == "1" and "nnUNet_raw" not in os.environ
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ichseg: warning: nnUNet_wandb_enabled=1 is ignored")


def test_captured_output_takes_stdout_and_deprecations_only(tmp_path, capsys):
    log = tmp_path / "logs" / "call.log"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with environment.captured_output(log, verbose=False):
            print("nnU-Net says hello")
            print("ichseg: an error", file=sys.stderr)
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
            warnings.warn("planned change", FutureWarning, stacklevel=1)
            warnings.warn("something about the data", UserWarning, stacklevel=1)
    assert log.read_text() == "nnU-Net says hello\n"
    assert capsys.readouterr() == ("", "ichseg: an error\n")
    assert [str(w.message) for w in caught] == ["something about the data"]


def test_a_checkpoint_with_numpy_scalars_loads_without_unpickling_code(tmp_path: Path):
    weights = {"conv.weight": torch.arange(6.0).reshape(2, 3)}
    saved = {"network_weights": weights, "_best_ema": np.float32(0.25), "current_epoch": 3,
             "logging": {"train_losses": [np.float64(-0.5), np.float32(-0.75)]},
             "init_args": {"device": torch.device("cpu"), "fold": 0},
             "inference_allowed_mirroring_axes": (0, 1, 2)}
    torch.save(saved, tmp_path / "checkpoint_final.pth")
    loaded = checkpoint.load_checkpoint(tmp_path / "checkpoint_final.pth")
    assert torch.equal(loaded["network_weights"]["conv.weight"], weights["conv.weight"])
    assert loaded["_best_ema"] == np.float32(0.25) and loaded["logging"]["train_losses"][1] == np.float32(-0.75)
    assert loaded["init_args"]["device"] == torch.device("cpu")


def test_a_checkpoint_holding_other_objects_is_refused_in_one_line(tmp_path: Path):
    torch.save({"network_weights": {}, "extra": Fraction(1, 3)}, tmp_path / "checkpoint_final.pth")
    with pytest.raises(ModelError, match="checkpoint_final.pth: holds objects other than") as raised:
        checkpoint.load_checkpoint(tmp_path / "checkpoint_final.pth")
    assert "\n" not in str(raised.value)
