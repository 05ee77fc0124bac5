"""Bad inputs are refused up front and cleanly, nothing is left behind, and batches resume.

Each kind goes through the command line: exit code 2, one ``ichseg: error`` line on stderr that
names the file, no traceback, and the folder tree unchanged (or, for a batch, only the good
cases' outputs). The model is the session's tiny smoke model (``tiny_model`` in conftest).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ichseg.cli import main
from ichseg.io.image import load_image

pytestmark = pytest.mark.slow
PREDICT = ("--device", "cpu", "--no-mirroring", "--no-report")


def tree(root: Path) -> list[tuple[str, int]]:
    """Every entry under ``root`` with its size: what a run may not change."""
    return sorted((str(p.relative_to(root)), p.lstat().st_size) for p in root.rglob("*"))


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    """Exit code and the ``ichseg:`` lines on stderr (progress lines aside), no traceback."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("ichseg:")]


@pytest.fixture(scope="module")
def phantom(planned_tiny) -> Path:
    root, _ = planned_tiny
    return sorted((root / "test" / "data").glob("*.nii.gz"))[0]


def _write(array: np.ndarray, path: Path, spacing=(0.5, 0.5, 5.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: array.ndim])
    sitk.WriteImage(image, str(path))
    return path


def _bad_input(kind: str, phantom: Path, folder: Path) -> Path:
    """One broken input of ``kind``, made from the good phantom."""
    hu = load_image(phantom).array.astype(np.float32)
    if kind == "truncated":
        (folder / "cut.nii.gz").write_bytes(phantom.read_bytes()[:300])
        return folder / "cut.nii.gz"
    if kind == "empty file":
        (folder / "empty.nii.gz").write_bytes(b"")
        return folder / "empty.nii.gz"
    if kind == "2D":
        return _write(hu[0], folder / "flat.nii.gz")
    if kind == "NaN voxels":
        hu[2, 5:9, 5:9] = np.nan
        return _write(hu, folder / "nan.nii.gz")
    if kind == "8-bit export":
        return _write(np.clip((hu + 40) * 255 / 120, 0, 255).astype(np.uint8), folder / "display.nii.gz")
    if kind == "beyond any CT scale":
        hu[0, 0, 0] = 1e30
        return _write(hu, folder / "huge.nii.gz")
    if kind == "DICOM without rescale":
        import pydicom

        from ichseg.io.dicom import write_ct_series

        series = write_ct_series(load_image(phantom), folder / "norescale")
        for file in sorted(Path(series).glob("*.dcm")):
            ds = pydicom.dcmread(file)
            del ds.RescaleIntercept, ds.RescaleSlope
            ds.save_as(file)
        return Path(series)
    if kind == "DICOM missing slice":
        from ichseg.io.dicom import write_ct_series

        series = write_ct_series(load_image(phantom), folder / "gap")
        sorted(Path(series).glob("*.dcm"))[5].unlink()
        return Path(series)
    raise ValueError(kind)


BAD_KINDS = ("truncated", "empty file", "2D", "NaN voxels", "8-bit export", "beyond any CT scale",
             "DICOM without rescale", "DICOM missing slice")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_single_bad_input_is_one_line_exit_2_and_writes_nothing(kind, phantom, tiny_model, tmp_path, capsys):
    bad = _bad_input(kind, phantom, tmp_path)
    (tmp_path / "existing-empty").mkdir()
    before = tree(tmp_path)
    for out in (tmp_path / "out", tmp_path / "existing-empty"):
        code, lines = run_cli(capsys, "predict", "-i", bad, "-o", out, "--model", tiny_model, *PREDICT)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("ichseg: error:"), lines
        assert bad.name in lines[0]
        assert tree(tmp_path) == before, kind


def test_intensity_refusals_become_warnings_with_accept_intensities(phantom, tiny_model, tmp_path, capsys):
    bad = _bad_input("8-bit export", phantom, tmp_path)
    code, lines = run_cli(capsys, "predict", "-i", bad, "-o", tmp_path / "out", "--model", tiny_model,
                          "--accept-intensities", *PREDICT)
    assert code == 0 and (tmp_path / "out" / "display.nii.gz").is_file()
    assert any(line.startswith("ichseg: warning:") and "8-bit" in line for line in lines), lines


def test_an_unusual_range_is_a_warning_and_segmented(phantom, tiny_model, tmp_path, capsys):
    stripped = _write(np.clip(load_image(phantom).array.astype(np.float32), 0, 80), tmp_path / "brain.nii.gz")
    code, lines = run_cli(capsys, "predict", "-i", stripped, "-o", tmp_path / "out", "--model", tiny_model,
                          *PREDICT)
    assert code == 0 and (tmp_path / "out" / "brain.nii.gz").is_file()
    assert lines and all(line.startswith("ichseg: warning: ") and "brain.nii.gz" in line for line in lines)
    assert any("no voxel below -500 HU" in line for line in lines)


def test_links_that_lead_nowhere_are_listed_and_the_good_case_finishes(phantom, tiny_model, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(phantom, inputs / phantom.name)
    (inputs / "loop.nii.gz").symlink_to("loop.nii.gz")
    (inputs / "gone.nii.gz").symlink_to(tmp_path / "nowhere.nii.gz")
    code, lines = run_cli(capsys, "predict", "-i", inputs, "-o", tmp_path / "out", "--model", tiny_model,
                          *PREDICT)
    assert code == 2 and len(lines) == 2
    assert "gone.nii.gz: broken symbolic link" in lines[0] and "loop.nii.gz: symbolic link loop" in lines[1]
    table = (tmp_path / "out" / "cases.csv").read_text()
    assert "gone.nii.gz" in table and "loop.nii.gz" in table and (tmp_path / "out" / phantom.name).is_file()


@pytest.mark.parametrize("kind", ["output is a file", "a file on the way", "holds results"])
def test_output_paths_are_checked_before_work(kind, phantom, tiny_model, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.json").write_text("{}")
    out = {"output is a file": tmp_path / "file", "a file on the way": tmp_path / "file" / "out",
           "holds results": tmp_path / "results"}[kind]
    before = tree(tmp_path)
    code, lines = run_cli(capsys, "predict", "-i", phantom, "-o", out, "--model", tiny_model, *PREDICT)
    assert code == 2 and len(lines) == 1 and str(out) in lines[0], lines
    assert tree(tmp_path) == before


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write into: a chmod'ed one, or for root (whom permission bits do not
    stop) /sys, which containers and hosts mount so that even root cannot create files there."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        (folder / "ichseg-probe").touch()
    except OSError:
        yield folder
        return
    (folder / "ichseg-probe").unlink()
    pytest.skip("no folder here is read-only for root")


@pytest.mark.parametrize("command", ["predict", "synth", "evaluate", "cv-report"])
def test_a_read_only_output_is_one_line_before_any_work(command, phantom, tiny_model, read_only, tmp_path,
                                                        capsys):
    model = Path(tiny_model)
    if command == "cv-report":
        if os.geteuid() == 0:
            pytest.skip("root writes into any model folder")
        model = shutil.copytree(model, tmp_path / "model")
        model.chmod(0o555)
    out = read_only / "ichseg-out"
    args = {"predict": ["predict", "-i", phantom, "-o", out, "--model", model, *PREDICT],
            "synth": ["synth", out, "-n", "1", "--size", "tiny"],
            "cv-report": ["cv-report", model],
            "evaluate": ["evaluate", phantom, phantom, "-o", out]}[command]
    before = tree(tmp_path)
    code, lines = run_cli(capsys, *args)
    if command == "cv-report":
        model.chmod(0o755)
    assert code == 2 and len(lines) == 1 and "cannot write here" in lines[0], lines
    assert str(model if command == "cv-report" else out) in lines[0]
    assert tree(tmp_path) == before and not out.exists()


@pytest.mark.parametrize("command", ["import", "synth", "train", "compare"])
def test_other_commands_refuse_a_file_in_place_of_their_output(command, planned_tiny, tmp_path, capsys):
    root, _ = planned_tiny
    (tmp_path / "file").write_text("x")
    case = tmp_path / "case.json"
    case.write_text('{"measures": {"volume_ml": 1.0}}')
    args = {"import": ["import", root / "train", "--name", "other", "--workspace", tmp_path / "file"],
            "synth": ["synth", tmp_path / "file", "-n", "1", "--size", "tiny"],
            "train": ["train", "--dataset", "tiny", "--workspace", tmp_path / "file"],
            "compare": ["compare", case, case, "--json", tmp_path / "file" / "growth.json"]}[command]
    before = tree(tmp_path)
    code, lines = run_cli(capsys, *args)
    assert code == 2 and len(lines) == 1 and str(tmp_path / "file") in lines[0], lines
    assert tree(tmp_path) == before


def test_a_missing_input_fails_before_torch_is_imported(tiny_model, tmp_path):
    program = ("import sys; from ichseg.cli import main; "
               f"code = main(['predict', '-i', {str(tmp_path / 'missing.nii.gz')!r}, '-o', "
               f"{str(tmp_path / 'out')!r}, '--model', {str(tiny_model)!r}]); "
               "print(code, 'torch' in sys.modules, 'nnunetv2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert done.stderr.strip() == f"ichseg: error: {tmp_path / 'missing.nii.gz'}: no such file or folder"


def test_a_damaged_checkpoint_is_refused_before_torch_is_imported(phantom, tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    checkpoint = next(model.rglob("checkpoint_final.pth"))
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    program = ("import sys; from ichseg.cli import main; "
               f"code = main(['predict', '-i', {str(phantom)!r}, '-o', {str(tmp_path / 'out')!r}, "
               f"'--model', {str(model)!r}]); print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "checkpoint_final.pth: damaged checkpoint" in done.stderr and not (tmp_path / "out").exists()


def test_evaluation_refuses_a_reference_without_prediction_unless_scored_empty(phantom, tmp_path, capsys):
    from ichseg.io.image import save_mask

    reference = load_image(phantom)
    for folder, names in (("ref", ("a", "b", "c")), ("pred", ("a", "x"))):
        for name in names:
            (tmp_path / folder).mkdir(exist_ok=True)
            save_mask(reference, reference.array > 40, tmp_path / folder / f"{name}.nii.gz")
    before = tree(tmp_path)
    code, lines = run_cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "ref", "-o", tmp_path / "eval")
    assert code == 2 and len(lines) == 1 and "no prediction for 2 reference case(s): b, c" in lines[0]
    assert tree(tmp_path) == before
    code, lines = run_cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "ref", "-o", tmp_path / "eval",
                          "--missing", "empty")
    assert code == 0
    assert any("b, c" in line for line in lines) and any("no reference for 1 prediction(s): x" in line
                                                         for line in lines)
    table = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert len(table) == 4 and sum(line.startswith(("b,", "c,")) for line in table) == 2


def test_predict_fold_takes_what_train_takes(phantom, tiny_model, tmp_path, capsys):
    code, lines = run_cli(capsys, "predict", "-i", phantom, "-o", tmp_path / "a", "--model", tiny_model,
                          "--fold", "full", *PREDICT)
    assert code == 2 and "no trained model for fold(s) ['all']" in lines[0]
    code, lines = run_cli(capsys, "predict", "-i", phantom, "-o", tmp_path / "b", "--model", tiny_model,
                          "--fold", "9", *PREDICT)
    assert code == 2 and "fold '9' is out of range" in lines[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    code, _ = run_cli(capsys, "predict", "-i", phantom, "-o", tmp_path / "c", "--model", tiny_model,
                      "--fold", "0", *PREDICT)
    assert code == 0 and (tmp_path / "c" / phantom.name).is_file()


def test_kill_9_during_a_batch_then_resume_finishes_it(planned_tiny, tiny_model, tmp_path, capsys):
    root, _ = planned_tiny
    inputs = tmp_path / "in"
    inputs.mkdir()
    for source in sorted((root / "test" / "data").glob("*.nii.gz")):
        shutil.copy(source, inputs / source.name)
    shutil.copy(sorted((root / "train" / "data").glob("*.nii.gz"))[0], inputs / "train_case.nii.gz")
    names = sorted(p.name[: -len(".nii.gz")] for p in inputs.iterdir())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ichseg", "predict", "-i", str(inputs), "-o", str(out), "--model",
               str(tiny_model), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / f"{names[0]}.json"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists(), "the first case's outputs never appeared"
    written_first = {p.name: p.stat().st_mtime_ns for p in out.glob(f"{names[0]}*")}

    code, lines = run_cli(capsys, "predict", "-i", inputs, "-o", out, "--model", tiny_model, "--device", "cpu")
    assert code == 2 and "already exists" in lines[0]
    code, lines = run_cli(capsys, "predict", "-i", inputs, "-o", out, "--model", tiny_model, "--device", "cpu",
                          "--no-mirroring", "--resume")
    assert code == 2 and "different settings.mirroring" in lines[0]
    code, lines = run_cli(capsys, "predict", "-i", inputs, "-o", out, "--model", tiny_model, "--device", "cpu",
                          "--resume")
    assert code == 0 and not lines
    assert not [p.name for p in out.iterdir() if ".partial-" in p.name]
    for name in names:
        for suffix in (".nii.gz", ".json", ".png", ".html"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    rows = (out / "cases.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == names and all(",ok," in row for row in rows)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob(f"{names[0]}*")} == written_first
