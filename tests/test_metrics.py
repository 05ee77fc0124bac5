"""Metrics on hand-made masks whose values can be worked out on paper."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from ichseg.errors import InputError
from ichseg.metrics import case_metrics, rank_methods, summarize, summary_table
from ichseg.metrics.surface import surface_distances

SPACING = (5.0, 0.42, 0.42)


def box(shape=(12, 20, 20), z=(3, 6), y=(5, 10), x=(5, 10)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = 1
    return mask


def test_overlap_and_volumes_from_counts():
    ref = np.zeros((4, 4, 4), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[1, 1, 0:3] = 1
    ref[1, 2, 0:3] = 1          # 6 voxels
    pred[1, 1, 1:4] = 1
    pred[2, 1, 0] = 1           # 4 voxels, 2 of them in ref
    metrics = case_metrics(pred, ref, (2.0, 0.5, 0.25))
    assert metrics["dice"] == pytest.approx(2 * 2 / 10)
    assert metrics["rvd_signed"] == pytest.approx((4 - 6) / 6)
    assert metrics["rvd"] == pytest.approx(2 / 6)
    assert metrics["volume_ref_ml"] == pytest.approx(6 * 0.25 / 1000)
    assert metrics["volume_pred_ml"] == pytest.approx(4 * 0.25 / 1000)


def test_identical_masks_are_perfect():
    metrics = case_metrics(box(), box(), SPACING)
    assert metrics == {"dice": 1.0, "hd": 0.0, "hd95": 0.0, "nsd": 1.0, "rvd": 0.0,
                       "rvd_signed": 0.0, "volume_pred_ml": metrics["volume_ref_ml"],
                       "volume_ref_ml": pytest.approx(75 * 5.0 * 0.42 * 0.42 / 1000),
                       "fp_ml": 0.0, "fp_components": 0}


def test_single_voxels_three_slices_apart():
    # Corner points lie on slices {3, 4} and {6, 7}: directed distances are 2 and 3 slices.
    ref = np.zeros((10, 5, 5), dtype=bool)
    pred = np.zeros_like(ref)
    ref[3, 2, 2] = True
    pred[6, 2, 2] = True
    metrics = case_metrics(pred, ref, (5.0, 0.4, 0.4))
    assert metrics["hd"] == 15.0
    assert metrics["hd95"] == 15.0
    assert metrics["nsd"] == 0.0
    assert metrics["dice"] == 0.0


def test_one_pixel_shift_lies_exactly_at_the_default_tolerance():
    # Every surface point moves by one in-plane pixel of 0.42 mm: HD is exactly 0.42 and all of
    # the surface is within INSTANCE's 0.42 mm tolerance, but not within 0.41 mm.
    ref = box()
    pred = np.roll(ref, 1, axis=2)
    metrics = case_metrics(pred, ref, SPACING)
    assert metrics["hd"] == 0.42
    assert metrics["nsd"] == 1.0
    assert metrics["dice"] == pytest.approx(2 * 60 / 150)
    assert case_metrics(pred, ref, SPACING, nsd_tolerance_mm=0.41)["nsd"] < 0.9


def test_one_slice_shift_costs_the_slice_spacing():
    ref = box()
    metrics = case_metrics(np.roll(ref, 1, axis=0), ref, SPACING)
    assert metrics["hd"] == 5.0
    assert metrics["hd95"] == 5.0


def test_hd95_ignores_a_small_far_outlier_that_hd_counts():
    # A lone voxel 16 pixels to the right of the box face: HD = 16 × 0.5 mm. Its surface is ~1% of
    # the prediction's, so the 95th percentile stays on the box, where the masks agree.
    ref = box((12, 40, 40), z=(2, 5), y=(10, 20), x=(10, 20))
    pred = ref.copy()
    pred[2, 10, 35] = 1
    metrics = case_metrics(pred, ref, (5.0, 0.5, 0.5))
    assert metrics["hd"] == 8.0
    assert metrics["hd95"] == 0.0
    assert 0.98 < metrics["nsd"] < 1.0


def test_single_voxel_surface_is_the_octahedron_through_its_face_centres():
    s0, s1, s2 = 5.0, 0.42, 0.6
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    areas = surface_distances(mask, mask, (s0, s1, s2)).ref_areas
    # Eight triangles with vertices at the face centres (±s0/2, ±s1/2, ±s2/2).
    triangle = 0.5 * np.linalg.norm(np.cross([-s0 / 2, s1 / 2, 0], [-s0 / 2, 0, s2 / 2]))
    assert areas.size == 8
    assert areas.sum() == pytest.approx(8 * triangle, rel=1e-12)


@pytest.mark.parametrize(("pred_empty", "ref_empty", "expected"), [
    (True, False, {"dice": 0.0, "hd": math.inf, "hd95": math.inf, "nsd": 0.0, "rvd": 1.0,
                   "rvd_signed": -1.0}),
    (False, True, {"dice": 0.0, "hd": math.inf, "hd95": math.inf, "nsd": 0.0, "rvd": math.nan,
                   "rvd_signed": math.nan}),
    (True, True, {"dice": 1.0, "hd": 0.0, "hd95": 0.0, "nsd": 1.0, "rvd": math.nan,
                  "rvd_signed": math.nan}),
])
def test_empty_masks_follow_the_challenge_rules(pred_empty, ref_empty, expected):
    empty = np.zeros((12, 20, 20), dtype=np.uint8)
    pred = empty if pred_empty else box()
    ref = empty if ref_empty else box()
    metrics = case_metrics(pred, ref, SPACING)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, nan_ok=True), key


def test_values_do_not_depend_on_surrounding_background_or_the_array_border():
    rng = np.random.default_rng(3)
    ref = (rng.random((4, 6, 6)) > 0.4).astype(np.uint8)   # touches every face of its array
    pred = (rng.random((4, 6, 6)) > 0.4).astype(np.uint8)
    spacing = (4.4, 0.37, 0.6)
    tight = case_metrics(pred, ref, spacing)
    placed = [np.pad(mask, ((2, 7), (1, 30), (9, 0))) for mask in (pred, ref)]
    assert case_metrics(*placed, spacing) == tight


def test_swapping_prediction_and_reference_keeps_symmetric_metrics():
    rng = np.random.default_rng(5)
    a = (rng.random((6, 15, 15)) > 0.5).astype(np.uint8)
    b = (rng.random((6, 15, 15)) > 0.6).astype(np.uint8)
    forward, backward = case_metrics(a, b, SPACING), case_metrics(b, a, SPACING)
    for key in ("dice", "hd", "hd95", "nsd"):
        assert forward[key] == pytest.approx(backward[key], rel=1e-12)
    assert forward["rvd_signed"] != pytest.approx(backward["rvd_signed"])


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.uint16, np.float32, np.float64])
def test_binary_masks_of_any_numeric_type_give_the_same_values(dtype):
    ref, pred = box(), np.roll(box(), 2, axis=1)
    assert case_metrics(pred.astype(dtype), ref.astype(dtype), SPACING) == \
        case_metrics(pred.astype(bool), ref.astype(bool), SPACING)


@pytest.mark.parametrize(("pred", "ref", "spacing", "tolerance", "message"), [
    (box() * 2, box(), SPACING, 0.42, "prediction is not a binary mask"),
    (box(), box().astype(np.float32) * 0.5, SPACING, 0.42, "reference is not a binary mask"),
    (box(), box((12, 20, 21)), SPACING, 0.42, "differs from reference shape"),
    (box()[0], box()[0], SPACING, 0.42, "expected 3D masks"),
    (box(), box(), (5.0, 0.0, 0.42), 0.42, "invalid voxel spacing"),
    (box(), box(), (5.0, math.nan, 0.42), 0.42, "invalid voxel spacing"),
    (box(), box(), (5.0, 0.42), 0.42, "invalid voxel spacing"),
    (box(), box(), SPACING, -1.0, "NSD tolerance"),
])
def test_bad_input_raises_a_one_line_input_error(pred, ref, spacing, tolerance, message):
    with pytest.raises(InputError, match=message) as error:
        case_metrics(pred, ref, spacing, tolerance)
    assert "\n" not in str(error.value)


def rows(metric: str, values: list[float]) -> list[dict]:
    return [{"case": f"c{i}", metric: value} for i, value in enumerate(values)]


def test_summary_averages_finite_values_and_counts_the_others():
    summary = summarize(rows("hd", [1.0, 3.0, math.inf, 5.0, math.nan]), ["hd"])["hd"]
    assert summary == {"mean": 3.0, "sd": 2.0, "median": 3.0, "n": 3, "n_infinite": 1,
                       "n_undefined": 1}
    single = summarize(rows("hd", [math.inf]), ["hd"])["hd"]
    assert math.isnan(single["mean"]) and single["n"] == 0 and single["n_infinite"] == 1


def test_summary_table_formats_like_li_and_chen_table_1():
    results = {
        "2D nnU-Net": [{"case": "a", "dice": 0.5, "hd": 10.0, "rvd": 0.1},
                       {"case": "b", "dice": 0.7, "hd": math.inf, "rvd": 0.3}],
        "3D nnU-Net": [{"case": "a", "dice": 0.6, "hd": 20.0, "rvd": 0.2},
                       {"case": "b", "dice": 0.8, "hd": 30.0, "rvd": 0.4}],
    }
    assert summary_table(results) == (
        "| Method | Dice ↑ | HD (mm) ↓ | RVD ↓ |\n"
        "| --- | --- | --- | --- |\n"
        "| 2D nnU-Net | 0.6000 ± 0.1414 | 10.00 (1 inf) | 0.2000 ± 0.1414 |\n"
        "| 3D nnU-Net | 0.7000 ± 0.1414 | 25.00 ± 7.07 | 0.3000 ± 0.1414 |\n"
    )
    text = summary_table(results, fmt="text").splitlines()
    assert text[0].split() == ["Method", "Dice", "↑", "HD", "(mm)", "↓", "RVD", "↓"]
    assert len({len(line) for line in text}) == 1 and text[1].startswith("2D nnU-Net")
    table = list(csv.DictReader(io.StringIO(summary_table(results, ["hd"], fmt="csv"))))
    assert table[0]["method"] == "2D nnU-Net"
    assert float(table[1]["hd_mean"]) == 25.0 and table[0]["hd_n_infinite"] == "1"
    with pytest.raises(ValueError, match="unknown table format"):
        summary_table(results, fmt="latex")


def metric_rows(values: dict[str, tuple[float, float, float, float]]) -> list[dict]:
    return [{"case": case, "dice": d, "hd": h, "rvd": r, "nsd": n}
            for case, (d, h, r, n) in values.items()]


def test_ranking_averages_per_case_ranks_over_cases_then_metrics():
    results = {
        "A": metric_rows({"c1": (0.9, 2.0, 0.1, 0.9), "c2": (0.8, 3.0, 0.2, 0.8)}),
        "B": metric_rows({"c1": (0.8, 3.0, 0.2, 0.8), "c2": (0.9, math.inf, 0.1, 0.7)}),
        "C": metric_rows({"c1": (0.7, 1.0, 0.3, 0.6)}),  # no row for c2: ranks last there
    }
    ranking = rank_methods(results)
    assert [row["method"] for row in ranking] == ["A", "B", "C"]
    assert [row["rank"] for row in ranking] == [1, 2, 3]
    a, b, c = ranking
    assert (a["rank_dice"], a["rank_hd"], a["rank_rvd"], a["rank_nsd"]) == (1.5, 1.5, 1.5, 1.0)
    assert b["rank_hd"] == (3 + 2.5) / 2       # an infinite HD ties with a missing case
    assert c["rank_hd"] == (1 + 2.5) / 2
    assert a["mean_rank"] == 1.375 and b["mean_rank"] == 1.9375 and c["mean_rank"] == 2.6875
    assert c["n_cases"] == 1


def test_identical_methods_share_a_rank():
    rows_ = metric_rows({"c1": (0.9, 2.0, 0.1, 0.9)})
    ranking = rank_methods({"x": rows_, "y": rows_, "z": metric_rows({"c1": (0.1, 9.0, 0.9, 0.1)})})
    assert [(row["method"], row["rank"]) for row in ranking] == [("x", 1), ("y", 1), ("z", 3)]


# --- false positives (hand-counted) ---

def test_false_positives_are_the_predicted_voxels_outside_the_reference():
    ref = box()                              # z 3-5, y 5-9, x 5-9: 75 voxels
    pred = box(x=(6, 11))                    # shifted by one: 15 voxels outside (x = 10)
    pred[8, 15, 15] = 1                      # a lone voxel
    pred[9, 16, 16] = pred[9, 16, 17] = 1    # touches the lone voxel at a corner: same component
    pred[0, 0, 0:4] = 1                      # a row of 4 voxels in the first slice
    values = case_metrics(pred, ref, SPACING)
    outside = 15 + 1 + 2 + 4
    assert values["fp_ml"] == pytest.approx(outside * 5.0 * 0.42 * 0.42 / 1000, rel=1e-12)
    assert values["fp_components"] == 3      # the rim, the corner-touching pair, the row
    assert isinstance(values["fp_components"], int)


def test_false_positives_on_an_empty_reference_are_the_whole_prediction():
    empty = np.zeros((12, 20, 20), np.uint8)
    pred = box()
    pred[10, 0, 0] = 1
    values = case_metrics(pred, empty, SPACING)
    assert values["fp_ml"] == values["volume_pred_ml"] == pytest.approx(76 * 5.0 * 0.42 * 0.42 / 1000)
    assert values["fp_components"] == 2
    assert case_metrics(empty, box(), SPACING)["fp_components"] == 0
    assert case_metrics(box(), box(), SPACING)["fp_ml"] == 0.0


def test_empty_reference_summary_gives_mean_and_max_over_those_cases_only():
    from ichseg.metrics.summary import empty_reference_summary, empty_reference_table

    rows_ = [{"case": "a", "volume_ref_ml": 0.0, "fp_ml": 0.0, "fp_components": 0},
             {"case": "b", "volume_ref_ml": 0.0, "fp_ml": 2.5, "fp_components": 3},
             {"case": "c", "volume_ref_ml": 0.0, "fp_ml": 0.5, "fp_components": 1},
             {"case": "d", "volume_ref_ml": 7.0, "fp_ml": 9.0, "fp_components": 8}]
    assert empty_reference_summary(rows_) == {
        "n_cases": 3, "n_without_fp": 1,
        "fp_ml": {"mean": 1.0, "max": 2.5}, "fp_components": {"mean": 4 / 3, "max": 3.0}}
    _, body = empty_reference_table({"m": rows_})
    assert body == [["m", "3", "1", "1.00", "2.50", "1.3", "3.0"]]
    none = empty_reference_summary(rows_[3:])
    assert none["n_cases"] == 0 and math.isnan(none["fp_ml"]["max"])
