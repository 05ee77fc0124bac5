"""End to end on tiny phantoms: synth → import → plan → train → predict → evaluate, on the CPU.

One module-scoped workspace is planned once for nnU-Net's default plans (2d and 3d_fullres) and
shared: the nnunet and li2022 recipes both train on it. Schedules are one or two epochs of two
iterations: the point is that every step runs for real and leaves what it should, not accuracy.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from ichseg.cli import main
from ichseg.commands import predict, train
from ichseg.crossval import cv_report, select_postprocessing
from ichseg.engine.trainer import IchsegTrainer
from ichseg.errors import IchsegError, ModelError
from ichseg.io.image import load_image
from ichseg.model.folder import ModelFolder
from ichseg.model.out_of_fold import load_out_of_fold
from ichseg.recipes import load_recipe

pytestmark = pytest.mark.slow
QUICK = {"epochs": 1, "iterations": 2, "val_iterations": 1, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def planned(planned_tiny):
    return planned_tiny


@pytest.fixture(scope="module")
def nnunet_model(planned):
    """A plain nnU-Net 3d_fullres model (fold 0), trained through the command line."""
    _, ws = planned
    assert main(["train", "--dataset", "tiny", "--recipe", "nnunet", "--fold", "0", "--epochs", "1",
                 "--iterations", "2", "--val-iterations", "1", "--device", "cpu",
                 "--workspace", str(ws.root)]) == 0
    return ModelFolder.open(ws.model_dir("tiny", "nnunet"))


def test_cli_train_predict_evaluate_keeps_input_geometry(planned, nnunet_model, capsys):
    root, ws = planned
    common = ["--workspace", str(ws.root)]
    out = root / "pred-nnunet"
    assert main(["predict", "-i", str(root / "test" / "data"), "-o", str(out), "--dataset", "tiny",
                 "--device", "cpu", "--no-mirroring", *common]) == 0
    for source in sorted((root / "test" / "data").glob("*.nii.gz")):
        image, mask = load_image(source), load_image(out / source.name)
        assert mask.same_geometry(image), source.name
        assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) <= {0, 1}
        assert json.loads((out / source.name.replace(".nii.gz", ".json")).read_text())
    assert main(["evaluate", str(out), str(root / "test" / "label"), "-o", str(root / "eval")]) == 0
    assert (root / "eval" / "metrics.csv").is_file()
    assert not [k for k in os.environ if k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
    # An existing output folder is refused without --overwrite, with one line on stderr.
    capsys.readouterr()
    assert main(["predict", "-i", str(root / "test" / "data"), "-o", str(out), "--dataset", "tiny",
                 "--device", "cpu", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]


def test_li2022_two_folds_trains_six_models_with_out_of_fold_predictions(planned):
    root, ws = planned
    folder = train("tiny", "li2022", workspace=ws, folds=[0, 1], **QUICK)
    models = folder.trained_models()
    assert sorted((m.group, m.fold) for m in models) == sorted(
        (g, f) for g in ("2d", "2d_wce", "3d_wce") for f in (0, 1))
    splits = json.loads((ws.preprocessed / folder.description["nnunet_dataset"] / "splits_final.json").read_text())
    held_out = set(splits[0]["val"]) | set(splits[1]["val"])
    for group in ("2d", "2d_wce", "3d_wce"):
        oof = load_out_of_fold(folder, group)
        assert set(oof) == held_out
        reference = load_image(ws.raw / "Dataset001_tiny" / "labelsTr" / f"{sorted(held_out)[0]}.nii.gz")
        assert oof[sorted(held_out)[0]].shape == reference.shape
    model = next(m for m in models if m.group == "2d_wce" and m.fold == 0)
    params = json.loads((model.nnunet_folder / "fold_0" / "trainer_params.json").read_text())
    assert params["loss"] == {"dice_weight": 0.6, "ce_weight": 0.4, "class_weights": [0.2, 0.8]}
    checkpoint = torch.load(model.nnunet_folder / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    assert "betas" in checkpoint["optimizer_state"]["param_groups"][0]  # Adam, as the recipe says
    assert checkpoint["trainer_name"] == "IchsegTrainer"

    out = root / "pred-li2022"
    result = predict(root / "test" / "data", out, folder.path, device="cpu", mirroring=False, progress=False)
    assert not result.failures
    for source in sorted((root / "test" / "data").glob("*.nii.gz")):
        name = source.name[: -len(".nii.gz")]
        image = load_image(source)
        votes = load_image(out / f"{name}_votes.nii.gz")
        assert votes.same_geometry(image) and votes.array.max() <= 6
        record = json.loads((out / f"{name}.json").read_text())
        assert record["uncertainty"]["strategy"] == "uncertainty"
        assert record["uncertainty"]["n_models"] == 6

    report = cv_report(folder.path, ws, progress=False)
    assert {"2d", "2d_wce", "3d_wce", "ensemble: uncertainty (printed HR)"} <= set(report.results)
    assert all(len(rows) == len(held_out) for rows in report.results.values())
    assert (folder.path / "cv_report.md").is_file()

    # Misfits are refused before any prediction starts, and nothing is written.
    with pytest.raises(IchsegError, match="N2 must be an integer from 0 to 6"):
        predict(root / "test" / "data", root / "pred-bad", folder.path, ensemble="uncertainty",
                ensemble_params={"n2": 9}, device="cpu", progress=False)
    with pytest.raises(ModelError, match="no finished model"):
        incomplete = root / "models-incomplete" / "li2022"
        incomplete.mkdir(parents=True)
        shutil.copy(folder.path / "ichseg_model.json", incomplete)
        predict(root / "test" / "data", root / "pred-bad", incomplete, device="cpu", progress=False)
    assert not (root / "pred-bad").exists()
    without_oof = root / "models-no-oof" / "li2022"
    shutil.copytree(folder.path, without_oof, ignore=shutil.ignore_patterns("oof"))
    with pytest.raises(ModelError, match="no out-of-fold predictions"):
        select_postprocessing(without_oof, ws, progress=False)

    selection = select_postprocessing(folder.path, ws, progress=False)
    saved = json.loads(folder.postprocessing_file.read_text())
    assert saved["steps"] == selection.chosen.to_list()
    again = predict(root / "test" / "data", root / "pred-post", folder.path, device="cpu", mirroring=False,
                    progress=False)
    record = json.loads((root / "pred-post" / f"{again.cases[0].name}.json").read_text())
    assert record["postprocessing"]["rule"] == selection.chosen.name


def test_a_bad_case_in_a_folder_is_listed_and_the_others_finish(planned, nnunet_model, capsys):
    root, _ = planned
    inputs = root / "mixed"
    inputs.mkdir()
    good = sorted((root / "test" / "data").glob("*.nii.gz"))[0]
    (inputs / good.name).write_bytes(good.read_bytes())
    (inputs / "broken.nii.gz").write_bytes(good.read_bytes()[:300])
    capsys.readouterr()
    code = main(["predict", "-i", str(inputs), "-o", str(root / "pred-mixed"), "--model", str(nnunet_model.path),
                 "--device", "cpu", "--no-mirroring"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.startswith("ichseg:")]  # the others: progress (not a terminal)
    assert len(err) == 1 and "broken.nii.gz" in err[0]
    assert any(line.startswith("Predicting with 1 model(s): 2/2 (100%)") for line in lines)
    assert (root / "pred-mixed" / good.name).is_file()
    assert not list((root / "pred-mixed").glob("broken*"))
    assert "broken.nii.gz" in (root / "pred-mixed" / "cases.csv").read_text() + \
        (root / "pred-mixed" / "report.html").read_text()


def test_dicom_series_in_gives_nifti_dicom_seg_json_png_html_out(planned, nnunet_model):
    import pydicom

    from ichseg.io.dicom import write_ct_series

    root, _ = planned
    phantom = load_image(sorted((root / "test" / "data").glob("*.nii.gz"))[0])
    series = write_ct_series(phantom, root / "dicom" / "study", patient_name="DOE^JOHN", patient_id="PID-99")
    out = root / "pred-dicom"
    result = predict(series, out, nnunet_model.path, device="cpu", mirroring=False, progress=False)
    assert not result.failures
    name = result.cases[0].name
    for suffix in (".nii.gz", ".json", ".png", ".html", "_seg.dcm"):
        assert (out / f"{name}{suffix}").is_file(), suffix
    dicom_image = load_image(series)
    mask = load_image(out / f"{name}.nii.gz")
    assert mask.same_geometry(dicom_image)
    seg = pydicom.dcmread(out / f"{name}_seg.dcm")
    assert seg.Modality == "SEG"
    for text_output in (f"{name}.json", f"{name}.html", "cases.csv", "report.html"):
        content = (out / text_output).read_text()
        assert "DOE^JOHN" not in content and "PID-99" not in content


def test_interrupted_model_resumes_from_its_last_checkpoint(planned, monkeypatch):
    root, ws = planned
    recipe = load_recipe("nnunet").to_dict()
    recipe["name"] = "resumable"  # a recipe file of its own, so its model folder is its own too
    recipe_file = root / "resumable.json"
    recipe_file.write_text(json.dumps(recipe))
    original = IchsegTrainer.on_epoch_end
    epochs_run = []

    def crash_after_first_epoch(self):
        original(self)
        epochs_run.append(self.current_epoch)
        if self.current_epoch == 1:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(IchsegTrainer, "on_epoch_end", crash_after_first_epoch)
    quick = dict(QUICK, epochs=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train("tiny", str(recipe_file), workspace=ws, folds=[1], checkpoint_every=1, **quick)
    fold_dir = ModelFolder.open(ws.model_dir("tiny", "resumable")).nnunet_folder("3d_fullres") / "fold_1"
    assert (fold_dir / "checkpoint_latest.pth").is_file()
    assert not (fold_dir / "checkpoint_final.pth").is_file()

    def count_epochs(self):
        original(self)
        epochs_run.append(self.current_epoch)

    monkeypatch.setattr(IchsegTrainer, "on_epoch_end", count_epochs)
    train("tiny", str(recipe_file), workspace=ws, folds=[1], checkpoint_every=1, **quick)
    assert epochs_run == [1, 2]  # the second run trained only the missing epoch
    assert (fold_dir / "checkpoint_final.pth").is_file()
    before = (fold_dir / "checkpoint_final.pth").stat().st_mtime_ns
    train("tiny", str(recipe_file), workspace=ws, folds=[1], checkpoint_every=1, **quick)  # finished: skipped
    assert (fold_dir / "checkpoint_final.pth").stat().st_mtime_ns == before


def test_liangwei_recipe_windows_pads_and_restores_geometry(planned_tiny_liangwei):
    root, ws = planned_tiny_liangwei
    derived = ws.raw / ws.dataset_folder_name("tiny__w59l96-pad1")
    base = ws.raw / ws.dataset_folder_name("tiny")
    case = sorted((base / "imagesTr").glob("*.nii.gz"))[0].name
    original, windowed = load_image(base / "imagesTr" / case), load_image(derived / "imagesTr" / case)
    assert windowed.shape[0] == original.shape[0] + 2
    assert windowed.array.min() >= 66.5 - 1e-3 and windowed.array.max() <= 125.5 + 1e-3
    plans = json.loads((ws.preprocessed / derived.name / "nnUNetPlans_z5-xy2.json").read_text())
    spacing = plans["configurations"]["3d_fullres"]["spacing"]  # in nnU-Net's transposed axis order
    slice_axis = plans["transpose_forward"].index(0)
    assert spacing[slice_axis] == pytest.approx(5.0)
    folder = train("tiny", "liangwei2022", workspace=ws, folds=[0], **QUICK)
    assert folder.description["preprocessing"] == {"window": {"level": 96.0, "width": 59.0}, "pad_slices": 1}
    out = root / "pred-liangwei"
    predict(root / "test" / "data", out, folder.path, device="cpu", mirroring=False, progress=False)
    for source in sorted((root / "test" / "data").glob("*.nii.gz")):
        assert load_image(out / source.name).same_geometry(load_image(source))


def test_training_an_unplanned_dataset_or_bad_fold_fails_cleanly(planned, capsys):
    _, ws = planned
    capsys.readouterr()
    assert main(["train", "--dataset", "nope", "--workspace", str(ws.root)]) == 2
    assert "not in workspace" in capsys.readouterr().err
    assert main(["train", "--dataset", "tiny", "--fold", "7", "--workspace", str(ws.root)]) == 2
    assert "fold '7' is out of range" in capsys.readouterr().err
    assert main(["train", "--dataset", "tiny", "--recipe", "nosuch", "--workspace", str(ws.root)]) == 2
    assert "unknown recipe" in capsys.readouterr().err
