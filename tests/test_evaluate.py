"""Folder evaluation, outputs, comparison and ``ichseg evaluate`` on tiny NIfTI files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import InputError, OutputExistsError
from ichseg.io import CTImage, save_mask
from ichseg.metrics import case_metrics, compare_methods, evaluate, evaluate_folders

SPACING = (5.0, 0.42, 0.45)
#: The spacing as a NIfTI header stores it (float32), which is what evaluation reads back.
STORED_SPACING = tuple(float(np.float32(s)) for s in SPACING)
SHAPE = (8, 24, 24)
LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def reference_mask(index: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:5, 5 + index:12 + index, 6:15] = 1
    return mask


def write(path: Path, mask: np.ndarray, spacing=SPACING, direction=LPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_mask(CTImage(mask, spacing=spacing, direction=direction), mask, path)


@pytest.fixture
def cases(tmp_path):
    """References ``c0``–``c2`` and predictions: ``c0``–``c2`` shifted copies, and ``x9``
    without a reference (a reference without a prediction is an error: test_reliability.py)."""
    ref, pred = tmp_path / "ref", tmp_path / "model_a"
    for index in range(3):
        write(ref / f"c{index}.nii.gz", reference_mask(index))
    for index in range(3):
        write(pred / f"c{index}.nii.gz", np.roll(reference_mask(index), index, axis=2))
    write(pred / "x9.nii.gz", reference_mask(0))
    return pred, ref


def expected_row(index: int) -> dict:
    return {"case": f"c{index}", **case_metrics(np.roll(reference_mask(index), index, axis=2),
                                                reference_mask(index), STORED_SPACING)}


def test_folders_are_matched_by_case_name(cases):
    pred, ref = cases
    evaluation = evaluate_folders(pred, ref, workers=1, progress=False)
    assert evaluation.rows == [expected_row(i) for i in range(3)]
    assert evaluation.missing == [] and evaluation.extra == ["x9"]
    assert evaluation.failures == [] and evaluation.ok


def test_single_pair_of_files(cases):
    pred, ref = cases
    evaluation = evaluate_folders(pred / "c1.nii.gz", ref / "c1.nii.gz", workers=1, progress=False)
    assert evaluation.rows == [expected_row(1)]


def test_bad_cases_are_listed_and_the_others_still_evaluated_in_parallel(cases):
    pred, ref = cases
    write(ref / "shape.nii.gz", reference_mask(0))
    write(pred / "shape.nii.gz", np.zeros((8, 24, 25), np.uint8))
    write(ref / "spacing.nii.gz", reference_mask(0))
    write(pred / "spacing.nii.gz", reference_mask(0), spacing=(5.0, 0.5, 0.45))
    write(ref / "labels.nii.gz", reference_mask(0))
    write(pred / "labels.nii.gz", reference_mask(0) * 2)
    write(ref / "flipped.nii.gz", reference_mask(0))
    write(pred / "flipped.nii.gz", reference_mask(0), direction=RAS)
    write(ref / "broken.nii.gz", reference_mask(0))
    (pred / "broken.nii.gz").write_bytes(b"not a NIfTI file")
    write(ref / "twice.nii.gz", reference_mask(0))
    write(pred / "twice.nii.gz", reference_mask(0))
    write(pred / "twice.nii", reference_mask(0))

    evaluation = evaluate_folders(pred, ref, workers=2, progress=False)

    assert evaluation.rows == [expected_row(i) for i in range(3)]
    reasons = dict(evaluation.failures)
    assert sorted(reasons) == ["broken", "flipped", "labels", "shape", "spacing", "twice"]
    assert "prediction shape (8, 24, 25) differs from reference shape (8, 24, 24)" \
        in reasons["shape"]
    assert "prediction spacing 5 × 0.5 × 0.45 mm differs" in reasons["spacing"]
    assert "prediction is not a binary mask" in reasons["labels"]
    assert "oriented differently" in reasons["flipped"]
    assert "broken.nii.gz" in reasons["broken"]
    assert "several files for one case" in reasons["twice"]
    assert all("\n" not in reason for reason in reasons.values())
    assert not evaluation.ok


@pytest.mark.parametrize("kind", ["file and folder", "missing", "no masks", "no workers"])
def test_unusable_inputs_raise_one_line_errors(cases, tmp_path, kind):
    pred, ref = cases
    workers = 1
    if kind == "file and folder":
        arguments = (pred / "c0.nii.gz", ref)
        message = "give two folders of masks or two mask files"
    elif kind == "missing":
        arguments, message = (tmp_path / "nowhere", ref), "no such file or folder"
    elif kind == "no masks":
        (tmp_path / "empty").mkdir()
        arguments, message = (tmp_path / "empty", ref), "no mask files"
    else:
        arguments, message, workers = (pred, ref), "number of workers must be at least 1", 0
    with pytest.raises(InputError, match=message):
        evaluate_folders(*arguments, workers=workers, progress=False)


def test_outputs_are_written_and_not_overwritten_by_default(cases, tmp_path):
    pred, ref = cases
    out = tmp_path / "out"
    evaluation = evaluate(pred, ref, out, workers=1, progress=False)

    assert sorted(p.name for p in out.iterdir()) == [
        "bland_altman.png", "dice_boxplot.png", "metrics.csv", "summary.json", "summary.md"]
    with open(out / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["case"] for row in table] == ["c0", "c1", "c2"]
    for written, row in zip(table, evaluation.rows, strict=True):
        assert {key: float(value) for key, value in written.items() if key != "case"} == \
            {key: value for key, value in row.items() if key != "case"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 3
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(
        np.mean([row["dice"] for row in evaluation.rows]))
    assert summary["missing_predictions"] == []
    assert summary["predictions_without_reference"] == ["x9"]
    assert "| Dice ↑ |" in (out / "summary.md").read_text()
    assert (out / "dice_boxplot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (out / "metrics.csv").write_text("kept")
    with pytest.raises(OutputExistsError):
        evaluate(pred, ref, out, workers=1, progress=False)
    assert (out / "metrics.csv").read_text() == "kept"
    evaluate(pred, ref, out, workers=1, overwrite=True, plots=False, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "summary.json", "summary.md"]


def test_infinite_hd_is_written_as_inf_in_csv_and_null_in_json(cases, tmp_path):
    pred, ref = cases
    write(pred / "c3.nii.gz", np.zeros(SHAPE, np.uint8))
    write(ref / "c3.nii.gz", reference_mask(3))
    out = tmp_path / "out"
    evaluate(pred, ref, out, workers=1, plots=False, progress=False)
    with open(out / "metrics.csv", newline="") as handle:
        empty = [row for row in csv.DictReader(handle) if row["case"] == "c3"][0]
    assert math.isinf(float(empty["hd"])) and float(empty["dice"]) == 0.0
    hd = json.loads((out / "summary.json").read_text())["metrics"]["hd"]
    assert hd["n_infinite"] == 1 and hd["n"] == 3 and math.isfinite(hd["mean"])


def test_compare_ranks_methods_and_writes_one_table(cases, tmp_path):
    pred, ref = cases
    perfect = tmp_path / "perfect"
    for index in range(4):
        write(perfect / f"c{index}.nii.gz", reference_mask(index))
    out = tmp_path / "comparison"
    comparison = compare_methods([pred, perfect], ref, out, workers=1, progress=False)

    assert [row["method"] for row in comparison.ranking] == ["perfect", "model_a"]
    assert comparison.ranking[0]["rank_dice"] < comparison.ranking[1]["rank_dice"]
    assert comparison.evaluations["model_a"].missing == []
    with open(out / "metrics.csv", newline="") as handle:
        methods = [row["method"] for row in csv.DictReader(handle)]
    assert methods.count("perfect") == 3 and methods.count("model_a") == 3
    with open(out / "ranking.csv", newline="") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == ["perfect", "model_a"]
    assert "## Ranking" in (out / "summary.md").read_text()
    assert (out / "bland_altman.png").exists()


def test_compare_refuses_two_methods_with_one_name(cases, tmp_path):
    pred, ref = cases
    twin = tmp_path / "other" / pred.name
    write(twin / "c0.nii.gz", reference_mask(0))
    with pytest.raises(InputError, match="several prediction folders are named 'model_a'"):
        compare_methods([pred, twin], ref, workers=1, progress=False)


def test_cli_evaluates_prints_tables_and_reports_missing_cases(cases, tmp_path, ichseg_evaluate):
    pred, ref = cases
    code, out, err = ichseg_evaluate("evaluate", pred, ref, "-o", tmp_path / "out", "--workers", "1")
    assert code == 0
    assert "Per case" in out and "c2" in out and "Summary of 3 cases" in out
    assert "no prediction" not in err
    assert "no reference for 1 prediction(s): x9" in err
    assert (tmp_path / "out" / "summary.json").exists()


def test_cli_exits_2_and_names_the_failed_case(cases, ichseg_evaluate):
    pred, ref = cases
    write(ref / "bad.nii.gz", reference_mask(0))
    write(pred / "bad.nii.gz", reference_mask(0) * 3)
    code, out, err = ichseg_evaluate("evaluate", pred, ref, "--workers", "1", "--tolerance", "1.0")
    assert code == 2
    assert f"ichseg: error: case bad: {pred / 'bad.nii.gz'}: the prediction is not a binary mask: " \
           "it holds 3; to evaluate a label map, name its classes" in err
    assert "NSD tolerance 1 mm" in out


def test_cli_compare_prints_the_ranking(cases, tmp_path, ichseg_evaluate):
    pred, ref = cases
    perfect = tmp_path / "perfect"
    for index in range(4):
        write(perfect / f"c{index}.nii.gz", reference_mask(index))
    code, out, err = ichseg_evaluate("evaluate", "--compare", pred, perfect, "--ref", ref, "--workers", "1")
    assert code == 0
    assert "INSTANCE ranking" in out
    assert out.index("perfect") < out.index("model_a")


@pytest.mark.parametrize("args", [("evaluate",), ("evaluate", "a"), ("evaluate", "--compare", "a"),
                                  ("evaluate", "a", "b", "--ref", "c"),
                                  ("evaluate", "{pred}", "{ref}", "--tolerance", "-1")])
def test_cli_usage_errors_are_one_line(cases, ichseg_evaluate, args):
    pred, ref = cases
    code, _, err = ichseg_evaluate(*(arg.format(pred=pred, ref=ref) for arg in args))
    assert code == 2
    assert err.startswith("ichseg: error: ") and err.count("\n") == 1


def test_cli_refuses_to_overwrite_outputs(cases, tmp_path, ichseg_evaluate):
    pred, ref = cases
    (tmp_path / "out").mkdir()
    code, _, err = ichseg_evaluate("evaluate", pred, ref, "-o", tmp_path / "out")
    assert code == 2 and "already exists (use --overwrite to replace it)" in err
