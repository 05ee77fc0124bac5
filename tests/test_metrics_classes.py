"""Evaluating label maps of hemorrhage types: where the class names come from, what is refused,
the rows and summaries per class, the rankings per class, and ``ichseg evaluate`` on them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ichseg.errors import InputError
from ichseg.io import CTImage, save_mask
from ichseg.labels import ONE_CLASS, SUBTYPES, LabelError, LabelScheme
from ichseg.metrics import (
    ANY,
    METRICS,
    EvaluationLabels,
    case_metrics,
    compare_methods,
    evaluate,
    evaluate_folders,
    find_label_scheme,
    parse_labels_option,
    rank_class,
)
from ichseg.metrics.classes import label_map
from ichseg.metrics.writing import CASE_COLUMNS

SPACING = (5.0, 0.45, 0.45)
STORED_SPACING = tuple(float(np.float32(s)) for s in SPACING)
SHAPE = (8, 30, 30)


def write(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_mask(CTImage(labels, spacing=SPACING), labels, path)


def reference(case: int) -> np.ndarray:
    """IPH in every case but the last; IVH in even cases, SDH in odd ones; case 3 is empty."""
    labels = np.zeros(SHAPE, np.uint8)
    if case < 3:
        labels[2:5, 4:12, 4:12] = 2
        labels[2:4, 16:24, 16:22] = 3 if case % 2 == 0 else 5
    return labels


@pytest.fixture
def typed(tmp_path):
    """``data/ref`` (with ``data/labels.json``), ``data/shifted`` (the reference moved by one
    voxel, plus an EDH false positive in case 0) and ``data/swapped`` (SDH called SAH, and a
    small IPH in the empty case)."""
    data = tmp_path / "data"
    for case in range(4):
        ref = reference(case)
        shifted = np.roll(ref, 1, axis=2)
        if case == 0:
            shifted[6, 26:28, 26:28] = 1
        swapped = np.where(ref == 5, 4, ref).astype(np.uint8)
        if case == 3:
            swapped[1, 1:3, 1:3] = 2
        write(data / "ref" / f"c{case}.nii.gz", ref)
        write(data / "shifted" / f"c{case}.nii.gz", shifted)
        write(data / "swapped" / f"c{case}.nii.gz", swapped)
    (data / "labels.json").write_text(json.dumps(SUBTYPES.to_dataset_json()))
    return data


# --- where the class names come from ---

def test_class_names_are_found_in_the_reference_folder_or_the_one_above(tmp_path):
    ref = tmp_path / "Dataset001" / "labelsTr"
    ref.mkdir(parents=True)
    assert find_label_scheme(ref) is None
    (tmp_path / "Dataset001" / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": SUBTYPES.to_dataset_json(), "numTraining": 1}))
    found = find_label_scheme(ref)
    assert found.scheme == SUBTYPES and found.source == str(tmp_path / "Dataset001" / "dataset.json")
    (ref / "labels.json").write_text(json.dumps({"background": 0, "IPH": 1}))
    assert find_label_scheme(ref).scheme == LabelScheme(("background", "IPH"))
    write(ref / "c0.nii.gz", reference(0))
    assert find_label_scheme(ref / "c0.nii.gz").source == str(ref / "labels.json")


@pytest.mark.parametrize("content, message", [
    ("{", "cannot read the class names"),
    ('["EDH"]', "no 'labels' mapping"),
    ('{"background": 0, "EDH": 2}', "without holes"),
    ('{"background": 0, "any": 1}', "confused with any hemorrhage"),
])
def test_unusable_label_files_are_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "labels.json").write_text(content)
    with pytest.raises(InputError, match=message) as error:
        find_label_scheme(tmp_path)
    assert str(tmp_path / "labels.json") in str(error.value) and "\n" not in str(error.value)


def test_labels_option():
    assert parse_labels_option("EDH=1,IPH=2,IVH=3,SAH=4,SDH=5") == SUBTYPES
    assert parse_labels_option(" IPH = 2 , EDH=1") == LabelScheme(("background", "EDH", "IPH"))
    for bad, message in [("EDH", "NAME=VALUE"), ("EDH=x", "NAME=VALUE"), ("EDH=-1", "NAME=VALUE"),
                         ("EDH=1,EDH=2", "used twice"), ("any=1", "reserved"),
                         ("background=1", "used twice"), ("EDH=2", "without holes")]:
        with pytest.raises(LabelError, match=message):
            parse_labels_option(bad)


# --- what is refused ---

def test_values_outside_the_classes_name_the_file_and_the_values():
    labels = EvaluationLabels(LabelScheme(("background", "IPH", "IVH")), "labels.json")
    array = np.array([[[0, 1, 2, 7, 9, 7]]], dtype=np.int16)
    with pytest.raises(InputError) as error:
        label_map(array, labels, "p/c0.nii.gz", "prediction")
    assert str(error.value) == ("p/c0.nii.gz: the prediction holds 7, 9, outside the classes 0-2 "
                                "named by labels.json")
    with pytest.raises(InputError, match=r"c0.nii.gz: the reference is not a binary mask: it holds "
                                         r"-1, 2; to evaluate a label map, name its classes"):
        label_map(np.array([[[0, 1, 2, -1]]]), None, "c0.nii.gz", "reference")
    with pytest.raises(InputError, match="holds 1.5"):
        label_map(np.array([[[0.0, 1.5]]]), labels, "c0.nii.gz", "reference")
    for dtype in (bool, np.uint8, np.int32, np.float32):
        assert label_map(np.array([[[0, 1, 1]]], dtype=dtype), labels, "", "").dtype == np.uint8


def test_label_maps_without_class_names_are_refused_case_by_case(typed):
    (typed / "labels.json").unlink()
    evaluation = evaluate_folders(typed / "shifted", typed / "ref", workers=1, progress=False)
    assert [row["case"] for row in evaluation.rows] == ["c3"]  # the empty case is binary
    reasons = dict(evaluation.failures)
    assert reasons["c0"].startswith(f"{typed / 'ref' / 'c0.nii.gz'}: the reference is not a "
                                    f"binary mask: it holds 2, 3;")


def test_one_class_names_keep_the_binary_evaluation(typed, tmp_path):
    binary = tmp_path / "binary"
    for case in range(4):
        write(binary / "ref" / f"c{case}.nii.gz", (reference(case) > 0).astype(np.uint8))
        write(binary / "pred" / f"c{case}.nii.gz", (np.roll(reference(case), 1, 2) > 0).astype(np.uint8))
    (binary / "labels.json").write_text(json.dumps(ONE_CLASS.to_dataset_json()))
    named = evaluate(binary / "pred", binary / "ref", tmp_path / "named", workers=1, progress=False)
    (binary / "labels.json").unlink()
    plain = evaluate(binary / "pred", binary / "ref", tmp_path / "plain", workers=1, progress=False)
    np.testing.assert_equal(named.rows, plain.rows)
    assert named.class_rows == {} and not named.is_multiclass
    for name in ("metrics.csv", "summary.md"):
        assert (tmp_path / "named" / name).read_text() == (tmp_path / "plain" / name).read_text()
    assert (tmp_path / "plain" / "metrics.csv").read_text().splitlines()[0] == ",".join(CASE_COLUMNS)
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert "classes" not in summary and "labels" not in summary
    assert not (tmp_path / "plain" / "dice_boxplot_by_class.png").exists()


# --- rows and summaries per class ---

def test_rows_for_any_hemorrhage_and_each_class(typed):
    evaluation = evaluate_folders(typed / "shifted", typed / "ref", workers=1, progress=False)
    assert evaluation.ok and evaluation.labels.scheme == SUBTYPES
    assert evaluation.labels.source == str(typed / "labels.json")
    for case, row, *class_rows in zip(range(4), evaluation.rows, *evaluation.class_rows.values(), strict=True):
        pred, ref = np.roll(reference(case), 1, axis=2), reference(case)
        if case == 0:
            pred[6, 26:28, 26:28] = 1
        np.testing.assert_equal(row, {"case": f"c{case}",
                                      **case_metrics(pred > 0, ref > 0, STORED_SPACING)})
        for value, class_row in enumerate(class_rows, start=1):
            if (pred == value).any() or (ref == value).any():
                expected = case_metrics(pred == value, ref == value, STORED_SPACING)
            else:
                expected = dict.fromkeys(METRICS)
            np.testing.assert_equal(class_row, {"case": f"c{case}", **expected})
    edh = evaluation.class_rows["EDH"][0]
    assert edh["dice"] == 0.0 and edh["fp_ml"] == pytest.approx(4 * np.prod(STORED_SPACING) / 1000)
    summaries = evaluation.class_summaries()
    assert {name: (s["n_scored"], s["absent_cases"]) for name, s in summaries.items()} == {
        "EDH": (1, ["c1", "c2", "c3"]), "IPH": (3, ["c3"]), "IVH": (2, ["c1", "c3"]),
        "SAH": (0, ["c0", "c1", "c2", "c3"]), "SDH": (1, ["c0", "c2", "c3"])}
    assert summaries["IVH"]["metrics"]["dice"]["mean"] == pytest.approx(
        np.mean([row["dice"] for row in evaluation.class_rows["IVH"] if row["dice"] is not None]))
    assert summaries["SAH"]["metrics"]["dice"]["n"] == 0


def test_outputs_of_a_label_map_evaluation(typed, tmp_path):
    out = tmp_path / "out"
    evaluation = evaluate(typed / "shifted", typed / "ref", out, workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "bland_altman.png", "dice_boxplot.png", "dice_boxplot_by_class.png", "metrics.csv",
        "summary.json", "summary.md"]
    with open(out / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["case", "class", *METRICS]
    assert [(row["case"], row["class"]) for row in table[:7]] == [
        ("c0", ANY), ("c0", "EDH"), ("c0", "IPH"), ("c0", "IVH"), ("c0", "SAH"), ("c0", "SDH"),
        ("c1", ANY)]
    assert float(table[0]["dice"]) == evaluation.rows[0]["dice"]
    assert table[4]["dice"] == "" and table[4]["hd"] == ""  # SAH in neither mask: not scored
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == {"classes": SUBTYPES.to_dataset_json(),
                                 "source": str(typed / "labels.json")}
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(evaluation.summary()["dice"]["mean"])
    assert summary["classes"]["SDH"]["absent_cases"] == ["c0", "c2", "c3"]
    assert summary["empty_references"]["n_cases"] == 1
    markdown = (out / "summary.md").read_text()
    assert "## Summary (any hemorrhage)" in markdown and "## By class" in markdown
    assert "| SAH | 0 | 4 | — |" in markdown
    assert "## Cases without hemorrhage in the reference" in markdown


# --- rankings per class ---

def test_a_method_that_leaves_an_absent_class_alone_ranks_above_one_that_marks_it():
    scored = {"case": "c0", "dice": 0.0, "hd": math.inf, "rvd": math.nan, "nsd": 0.0}
    absent = {"case": "c0", **dict.fromkeys(METRICS)}
    never = {"case": "c1", **dict.fromkeys(METRICS)}
    ranking = rank_class({"marks": [scored, never], "leaves": [absent, never]})
    assert [row["method"] for row in ranking] == ["leaves", "marks"]
    assert ranking[0]["n_cases"] == 1  # c1: nobody has the class, so it is not ranked
    assert rank_class({"a": [never], "b": [never]}) == []


def test_compare_ranks_any_hemorrhage_and_each_class(typed, tmp_path):
    out = tmp_path / "comparison"
    comparison = compare_methods([typed / "shifted", typed / "swapped"], typed / "ref", out,
                                 workers=1, progress=False)
    assert [row["method"] for row in comparison.ranking] == ["swapped", "shifted"]
    assert list(comparison.class_rankings) == ["EDH", "IPH", "IVH", "SAH", "SDH"]
    assert [row["method"] for row in comparison.class_rankings["EDH"]] == ["swapped", "shifted"]
    assert [row["method"] for row in comparison.class_rankings["SDH"]] == ["shifted", "swapped"]
    assert [row["method"] for row in comparison.class_rankings["SAH"]] == ["shifted", "swapped"]
    with open(out / "ranking.csv", newline="") as handle:
        ranking = list(csv.DictReader(handle))
    assert [(row["class"], row["method"]) for row in ranking[:4]] == [
        (ANY, "swapped"), (ANY, "shifted"), ("EDH", "swapped"), ("EDH", "shifted")]
    with open(out / "metrics.csv", newline="") as handle:
        assert list(next(csv.DictReader(handle))) == ["method", "case", "class", *METRICS]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["class_rankings"]) == list(comparison.class_rankings)
    markdown = (out / "summary.md").read_text()
    assert "## Ranking: any hemorrhage" in markdown and "## Ranking: SDH" in markdown
    assert (out / "dice_boxplot_by_class.png").read_bytes()[:4] == b"\x89PNG"


# --- the command line ---

def test_cli_names_the_classes_with_labels(typed, ichseg_evaluate):
    (typed / "labels.json").unlink()
    code, out, err = ichseg_evaluate("evaluate", typed / "shifted", typed / "ref", "--workers", "1",
                            "--labels", "EDH=1,IPH=2,IVH=3,SAH=4,SDH=5")
    assert code == 0, err
    assert "Per case, any hemorrhage" in out and "By class" in out and "SDH" in out
    assert "False positives on cases without hemorrhage" in out


def test_cli_compare_prints_each_class_ranking(typed, ichseg_evaluate):
    code, out, _ = ichseg_evaluate("evaluate", "--compare", typed / "shifted", typed / "swapped",
                          "--ref", typed / "ref", "--workers", "1")
    assert code == 0
    assert "INSTANCE ranking, any hemorrhage" in out and "INSTANCE ranking, IVH" in out


@pytest.mark.parametrize("labels, message", [
    ("EDH", "expected NAME=VALUE entries"),
    ("IPH=1", "outside the classes 0-1 named by --labels"),
])
def test_cli_label_errors_are_one_line(typed, ichseg_evaluate, labels, message):
    code, _, err = ichseg_evaluate("evaluate", typed / "shifted", typed / "ref", "--workers", "1",
                          "--labels", labels)
    errors = [line for line in err.splitlines() if line.startswith("ichseg: error: ")]
    assert code == 2 and errors and all(message in line for line in errors)

