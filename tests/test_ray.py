"""Training and prediction on a real local Ray instance (2 CPUs, no dashboard), on tiny phantoms.

Models train for one or two epochs of two iterations: the point is that every model runs as a Ray
task and leaves what the local route leaves, that a killed worker's model resumes from its
checkpoint, and that the Ray Data pipeline writes the local route's files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import ray
import torch

from ichseg.commands import predict, train
from ichseg.distributed import ModelEvent, ModelsFailedError, train_on_ray
from ichseg.layout import FINAL_CHECKPOINT, LATEST_CHECKPOINT
from ichseg.model.folder import ModelFolder
from ichseg.model.out_of_fold import load_out_of_fold
from ichseg.training.jobs import TrainingRequest, prepare_training
from ichseg.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(planned_tiny, tmp_path_factory):
    """The shared planned workspace without its models: the models trained here are this module's."""
    root, ws = planned_tiny
    copy = Workspace.open(tmp_path_factory.mktemp("ray") / "ws")
    shutil.copytree(ws.root, copy.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("models"))
    return root, copy


@pytest.fixture(scope="module")
def ray_model(workspace, ray_instance):
    """nnU-Net's 3d_fullres, folds 0 and 1, trained as two Ray tasks; and the progress lines."""
    _, ws = workspace
    events: list[ModelEvent] = []
    folder = train_on_ray(_plan(ws, "nnunet", folds=[0, 1]), report=events.append)
    return folder, events


def _plan(ws: Workspace, recipe: str, **options):
    request = TrainingRequest(epochs=options.pop("epochs", 1), iterations=2, val_iterations=1, **options)
    return prepare_training("tiny", recipe, request, workspace=ws)


def _layout(folder: Path) -> set[str]:
    """A model folder's files, with nnU-Net's time-stamped log names made generic."""
    return {("training_log.txt" if p.name.startswith("training_log_") else str(p.relative_to(folder)))
            for p in folder.rglob("*") if p.is_file()}


def test_models_train_as_ray_tasks_like_the_local_route_and_resume(workspace, ray_model, tmp_path):
    root, ws = workspace
    folder, events = ray_model
    assert sorted((m.group, m.fold) for m in folder.trained_models()) == [("3d_fullres", 0), ("3d_fullres", 1)]
    started = {e.name: e for e in events if e.kind == "started"}
    finished = [e for e in events if e.kind == "finished"]
    assert set(started) == {"3d_fullres fold 0", "3d_fullres fold 1"}
    assert len({e.pid for e in started.values()}) == 2  # two worker processes
    assert sorted(e.done for e in finished) == [1, 2] and all(e.total == 2 for e in finished)
    splits = json.loads((ws.preprocessed / "Dataset001_tiny" / "splits_final.json").read_text())
    assert set(load_out_of_fold(folder, "3d_fullres")) == set(splits[0]["val"]) | set(splits[1]["val"])

    # The local route leaves the same files for fold 0 (fold 1's are left out of the comparison).
    local_ws = Workspace.open(tmp_path / "ws")
    shutil.copytree(ws.root, local_ws.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("models"))
    local = train("tiny", "nnunet", workspace=local_ws, folds=[0], epochs=1, iterations=2, val_iterations=1,
                  device="cpu", progress=False)
    fold_1 = {f"3d_fullres/oof/{case}.npz" for case in splits[1]["val"]}
    assert {f for f in _layout(folder.path) - fold_1 if "fold_1" not in f} == _layout(local.path)
    assert ModelFolder.open(folder.path).description["groups"] == local.description["groups"]

    # Re-running trains nothing: both models are reported as already trained.
    final = folder.nnunet_folder("3d_fullres") / "fold_0" / FINAL_CHECKPOINT
    stamp = final.stat().st_mtime_ns
    again: list[ModelEvent] = []
    train_on_ray(_plan(ws, "nnunet", folds=[0, 1]), report=again.append)
    assert [e.detail for e in again if e.kind == "finished"] == [", already trained"] * 2
    assert final.stat().st_mtime_ns == stamp


def test_killed_worker_resumes_from_its_checkpoint_and_a_broken_model_is_named(workspace, ray_instance):
    """li2022's 3d_wce, two epochs with a checkpoint after each: fold 0's worker is killed once its
    first checkpoint is saved; fold 1 starts from a damaged checkpoint, a real failure."""
    _, ws = workspace
    group = "3d_wce"
    fold_dirs = {fold: ws.model_dir("tiny", "li2022") / group / "Dataset001_tiny" /
                 "IchsegTrainer__nnUNetPlans__3d_fullres" / f"fold_{fold}" for fold in (0, 1)}
    fold_dirs[1].mkdir(parents=True)
    (fold_dirs[1] / LATEST_CHECKPOINT).write_bytes(b"not a checkpoint")
    events: list[ModelEvent] = []
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            train_on_ray(_plan(ws, "li2022", groups=[group], folds=[0, 1], epochs=2, checkpoint_every=1),
                         report=events.append)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    killed = _kill_after_first_checkpoint(fold_dirs[0] / LATEST_CHECKPOINT, events, f"{group} fold 0", thread)
    thread.join(timeout=240)
    assert not thread.is_alive()

    assert len(outcome) == 1 and isinstance(outcome[0], ModelsFailedError), outcome
    assert [name for name, _ in outcome[0].failures] == [f"{group} fold 1"]
    assert "1 of 2 model(s) failed" in str(outcome[0])
    attempts = [e for e in events if e.kind == "started" and e.name == f"{group} fold 0"]
    assert len(attempts) == 2 and attempts[0].pid == killed and attempts[1].pid != killed
    (done,) = [e for e in events if e.kind == "finished"]
    assert done.name == f"{group} fold 0" and done.detail == ", resumed from epoch 1"
    final = torch.load(fold_dirs[0] / FINAL_CHECKPOINT, map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2
    # The resumed attempt logged epoch 1 only (nnU-Net counts from 0): it did not start again.
    logs = sorted(fold_dirs[0].glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    assert "Epoch 0" not in logs[-1].read_text() and "Epoch 1" in logs[-1].read_text()


def _kill_after_first_checkpoint(checkpoint: Path, events: list[ModelEvent], name: str,
                                 training: threading.Thread) -> int:
    """SIGKILL the worker training ``name`` once ``checkpoint`` is complete; returns its pid."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and training.is_alive():
        pids = [e.pid for e in events if e.kind == "started" and e.name == name]
        if pids and checkpoint.is_file():
            try:
                torch.load(checkpoint, map_location="cpu", weights_only=False)
            except Exception:  # noqa: BLE001 - still being written
                time.sleep(0.01)
                continue
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(0.01)
    raise AssertionError(f"{checkpoint} did not appear while {name} trained")


def test_ray_pipeline_writes_the_local_routes_outputs_and_lists_a_corrupt_case(workspace, ray_model, tmp_path):
    root, _ = workspace
    folder, _ = ray_model
    inputs = tmp_path / "inputs"
    shutil.copytree(root / "test" / "data", inputs)
    (inputs / "broken.nii.gz").write_bytes(b"not a NIfTI file")
    common = {"device": "cpu", "mirroring": False, "progress": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a model actor with one CPU: float sums then agree to the bit
    try:
        local = predict(inputs, tmp_path / "local", folder.path, **common)
    finally:
        torch.set_num_threads(threads)
    distributed = predict(inputs, tmp_path / "ray", folder.path, ray=True, ray_workers=1, **common)

    assert [name for name, _ in distributed.failures] == ["broken.nii.gz"] == [n for n, _ in local.failures]
    assert sorted(c.name for c in distributed.cases) == sorted(c.name for c in local.cases) == ["ich_000", "ich_001"]
    local_files = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert local_files == sorted(p.name for p in (tmp_path / "ray").iterdir())
    for name in local_files:
        mine, theirs = tmp_path / "local" / name, tmp_path / "ray" / name
        if name.endswith(".nii.gz"):
            a, b = nib.load(mine), nib.load(theirs)
            assert a.header.binaryblock == b.header.binaryblock, name
            assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), name
        elif name.endswith(".json") and name != "ichseg_run.json":
            a, b = (json.loads(p.read_text()) for p in (mine, theirs))
            a.pop("created"), b.pop("created")
            assert a == b, name
    rows = list(csv.DictReader((tmp_path / "ray" / "cases.csv").open()))
    assert rows == list(csv.DictReader((tmp_path / "local" / "cases.csv").open()))
    assert rows[-1]["case"] == "broken.nii.gz" and rows[-1]["status"] == "failed"


def test_without_ray_the_option_says_how_to_install_it(tmp_path):
    """``--ray`` where Ray cannot be imported: one line with the install command, exit code 2."""
    code = ("import sys; sys.modules['ray'] = None; from ichseg.cli import main; "
            f"sys.exit(main(['train', '--dataset', 'tiny', '--ray', '--workspace', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["ichseg: error: --ray needs Ray, which is not installed: "
                                                "pip install 'ichseg[ray]'"]
