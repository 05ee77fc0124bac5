"""Shared fixtures; the helper modules beside the tests are importable whatever pytest's import mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def planned_tiny(tmp_path_factory):
    """A workspace with 6 tiny phantoms imported as data set ``tiny`` and planned (nnU-Net's
    default plans, 2d and 3d_fullres, which li2022 and nnunet share), plus 2 test phantoms.

    Returns (root, workspace): ``root / "train"`` and ``root / "test"`` hold the phantoms
    (INSTANCE layout, ``data/`` and ``label/``). Planned once per session: about half a minute.
    """
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.training import plan
    from ichseg.workspace import Workspace

    leaked = [k for k in os.environ if k.startswith("nnUNet_") and k not in ("nnUNet_def_n_proc", "nnUNet_compile")]
    assert not leaked, f"tests must run without nnU-Net's variables, found {leaked}"
    root = tmp_path_factory.mktemp("planned-tiny")
    synthesize(root / "train", 6, seed=0, size="tiny", progress=False)
    synthesize(root / "test", 2, seed=77, size="tiny", progress=False)
    ws = Workspace.open(root / "ws")
    import_dataset(root / "train", "tiny", ws, progress=False)
    plan("tiny", "li2022", workspace=ws, progress=False)
    return root, ws


@pytest.fixture(scope="session")
def planned_tiny_liangwei(planned_tiny):
    """``planned_tiny`` also planned for liangwei2022 (its windowed, padded derived data set and
    own target spacing, 3d_fullres only), once per session."""
    from ichseg.training import plan

    _, ws = planned_tiny
    plan("tiny", "liangwei2022", workspace=ws, configurations=("3d_fullres",), progress=False)
    return planned_tiny


@pytest.fixture(scope="session")
def tiny_model(planned_tiny):
    """The nnunet recipe's 3d_fullres fold 0 on ``planned_tiny``, 1 epoch of 2 iterations on the
    CPU: a smoke model for tests that need any trained model folder (returns its path).

    Training skips a finished model, so a test that trains the same model in the same workspace
    reuses this one instead of training again.
    """
    from ichseg.commands import train

    _, ws = planned_tiny
    return train("tiny", "nnunet", workspace=ws, folds=[0], epochs=1, iterations=2, val_iterations=1,
                 progress=False, device="cpu").path


@pytest.fixture
def ichseg_evaluate(monkeypatch, capsys):
    """Run ``ichseg`` with only its evaluate command registered; return (exit code, stdout, stderr)."""
    from ichseg import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("evaluate",))

    def run(*args):
        code = cli.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
