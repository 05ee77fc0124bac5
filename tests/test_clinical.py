"""Clinical measures against analytic shapes, and hematoma expansion between two scans."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from ichseg.cli import compare as compare_cli
from ichseg.clinical import (
    CaseMeasures,
    abc2,
    case_measures,
    compare_files,
    compare_scans,
    components,
    hematoma_volume_ml,
)
from ichseg.errors import InputError, OutputExistsError
from ichseg.io import CTImage, save_mask

SPACING = (5.0, 0.5, 0.5)


def ellipsoid(a: float, b: float, c: float, spacing=SPACING, angle_deg: float = 0.0,
              n_slices: int = 8) -> np.ndarray:
    """Semi-axes a (x), b (y), c (z) in mm, turned in-plane by ``angle_deg``; slice centres at
    ±spacing/2, ±3·spacing/2, … so that ``n_slices`` slices span the height exactly."""
    z = (np.arange(n_slices) - (n_slices - 1) / 2) * spacing[0]
    half = 1.2 * max(a, b)  # in-plane field of view: ±20 % beyond the longer axis
    y = (np.arange(int(2 * half / spacing[1])) - int(half / spacing[1])) * spacing[1]
    x = (np.arange(int(2 * half / spacing[2])) - int(half / spacing[2])) * spacing[2]
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    t = np.radians(angle_deg)
    u, v = xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 + (zz / c) ** 2 <= 1


def test_volume_is_voxel_count_times_voxel_volume():
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[1:3, 2:7, 3:5] = 1  # 2 × 5 × 2 = 20 voxels of 5 × 0.5 × 0.5 = 1.25 mm³
    assert hematoma_volume_ml(mask, SPACING) == pytest.approx(0.025)
    assert hematoma_volume_ml(mask * 2, SPACING) == pytest.approx(0.025)  # any label counts


def test_abc2_on_an_ellipsoid_matches_its_volume():
    a, b, c = 20.0, 12.0, 15.0  # 6 slices of 5 mm span the height 2c = 30 mm
    mask = ellipsoid(a, b, c, n_slices=6)
    analytic_ml = 4 / 3 * math.pi * a * b * c / 1000
    # the largest slices are the middle two, 2.5 mm off the equator: their axes are shorter
    shrink = math.sqrt(1 - (2.5 / c) ** 2)
    plain = abc2(mask, SPACING, weighting="none")
    assert plain.slice_index in (2, 3)
    assert plain.a_mm == pytest.approx(2 * a * shrink, abs=SPACING[2])
    assert plain.b_mm == pytest.approx(2 * b * shrink, abs=SPACING[1])
    assert plain.c_mm == 2 * c
    assert plain.volume_ml == pytest.approx(plain.a_mm * plain.b_mm * plain.c_mm / 2 / 1000)
    # A·B·C/2 = 4abc against 4/3·π·abc: 3/π of the ellipsoid, times the slices' shrink²
    assert plain.volume_ml == pytest.approx(analytic_ml * 3 / math.pi * shrink**2, rel=0.03)
    assert plain.volume_ml == pytest.approx(analytic_ml, rel=0.08)
    assert hematoma_volume_ml(mask, SPACING) == pytest.approx(analytic_ml, rel=0.03)


def test_kothari_weights_on_an_ellipsoid_follow_the_analytic_slice_areas():
    a, b, c = 20.0, 12.0, 15.0
    mask = ellipsoid(a, b, c, n_slices=6)
    centres = (np.arange(6) - 2.5) * SPACING[0]
    share = (1 - (centres / c) ** 2) / (1 - (2.5 / c) ** 2)  # area ∝ 1 - z²/c²: 0.31, 0.77, 1
    expected = np.where(share >= 0.75, 1.0, np.where(share >= 0.25, 0.5, 0.0))
    result = abc2(mask, SPACING)
    assert result.slice_weights == tuple(expected) == (0.5, 1.0, 1.0, 1.0, 1.0, 0.5)
    assert result.c_mm == 25.0
    assert result.volume_ml == pytest.approx(result.a_mm * result.b_mm * 25.0 / 2 / 1000)


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0])
def test_diameters_of_a_turned_ellipse_with_anisotropic_pixels(angle):
    spacing = (5.0, 0.45, 0.6)
    result = abc2(ellipsoid(18.0, 7.0, 100.0, spacing=spacing, angle_deg=angle, n_slices=1),
                  spacing)
    pixel = max(spacing[1:]) * 1.01  # outlines are measured to the pixels' edges
    assert result.a_mm == pytest.approx(36.0, abs=pixel)
    assert result.b_mm == pytest.approx(14.0, abs=pixel)


def test_kothari_slice_weights_on_squares_of_known_area():
    sides = [10, 9, 8, 5, 4, 7, 0]  # areas 100, 81, 64, 25, 16, 49, 0: share 1 .81 .64 .25 .16 .49
    mask = np.zeros((len(sides), 12, 12), bool)
    for k, side in enumerate(sides):
        mask[k, :side, :side] = True
    result = abc2(mask, (3.0, 1.0, 1.0))
    assert result.slice_index == 0
    assert result.slice_weights == (1.0, 1.0, 0.5, 0.5, 0.0, 0.5, 0.0)
    assert result.c_mm == 3.5 * 3.0
    ties = np.zeros((2, 8, 8), bool)
    ties[0, :4, :4] = True
    ties[1, :2, :6] = True  # 12 of 16 pixels: exactly 75 % counts as a full slice
    assert abc2(ties, (1.0, 1.0, 1.0)).slice_weights == (1.0, 1.0)


def test_b_is_a_chord_across_the_hemorrhage_not_its_width():
    """A half ring (radii 29-31 mm): A joins the tips; the longest chord perpendicular to it
    crosses the band near a tip, sqrt(31² - 29²) = 10.95 mm, although the shape is 31 mm wide."""
    step = 0.25
    y, x = np.meshgrid(np.arange(0, 128) * step, np.arange(-128, 129) * step, indexing="ij")
    radius = np.hypot(x, y)
    mask = ((radius >= 29) & (radius <= 31))[None]
    result = abc2(mask, (5.0, step, step))
    assert result.a_mm == pytest.approx(62.0, abs=2 * step)
    assert result.b_mm == pytest.approx(math.sqrt(31**2 - 29**2), abs=4 * step)


def test_empty_mask():
    result = abc2(np.zeros((3, 5, 5), bool), SPACING)
    assert (result.a_mm, result.b_mm, result.c_mm, result.volume_ml) == (0, 0, 0, 0)
    assert result.slice_index is None and result.slice_weights == (0.0, 0.0, 0.0)
    measures = case_measures(np.zeros((3, 5, 5), bool), SPACING).to_json()
    assert measures["components"] == {"connectivity": 26, "count": 0, "largest_ml": 0.0,
                                      "volumes_ml": []}
    assert measures["slices"]["involved"] == []


def test_components_use_26_connectivity():
    mask = np.zeros((4, 8, 8), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # touch at a corner only: one component
    mask[3, 5:8, 5:8] = True  # 9 voxels, separate
    result = components(mask, (2.0, 1.0, 1.0))
    assert result.count == 2
    assert result.volumes_ml == pytest.approx((0.018, 0.004))
    assert result.largest_ml == pytest.approx(0.018)


def test_case_measures_gathers_everything():
    mask = np.zeros((5, 10, 10), bool)
    mask[1, 2:6, 2:6] = True
    mask[2, 3:5, 3:5] = True
    mask[4, 8, 8] = True
    measures = case_measures(mask, (4.0, 0.5, 0.5)).to_json()
    assert measures["voxel_count"] == 21
    assert measures["volume_ml"] == pytest.approx(21 * 1.0 / 1000)
    assert measures["slices"] == {"involved": [1, 2, 4], "areas_mm2": [4.0, 1.0, 0.25],
                                  "count": 3, "total": 5}
    assert measures["components"]["count"] == 2
    # ABC/2 measures the largest hematoma (20 voxels); the lone voxel on slice 4 is left out
    abc = measures["abc2"]
    assert abc["slice_index"] == 1 and abc["slice_weights"] == [0.0, 1.0, 0.5, 0.0, 0.0]
    assert abc["c_mm"] == 6.0
    assert abc["measured_on"] == "largest component"
    assert abc["segmented_ml"] == pytest.approx(0.020)
    assert abc["difference_ml"] == pytest.approx(abc["volume_ml"] - 0.020)
    alone = abc2(mask[:4], (4.0, 0.5, 0.5))
    assert abc["a_mm"] == alone.a_mm and abc["volume_ml"] == alone.volume_ml
    assert abc2(mask, (4.0, 0.5, 0.5)).slice_weights[4] == 0.0  # too small to weigh anyway
    json.dumps(measures)  # plain JSON types only


def test_abc2_of_a_case_measures_its_largest_hematoma_only():
    yy, xx = np.mgrid[0:80, 0:80]
    mask = np.zeros((3, 80, 80), bool)
    mask[0:2] = (yy - 20) ** 2 + (xx - 20) ** 2 <= 12**2  # 25-pixel disc on slices 0-1
    mask[1] |= (yy - 65) ** 2 + (xx - 65) ** 2 <= 4**2  # a small bleed far away on slice 1
    measures = case_measures(mask, (5.0, 1.0, 1.0)).to_json()
    assert measures["components"]["count"] == 2
    assert measures["abc2"]["a_mm"] == pytest.approx(25.0, abs=1.0)
    assert abc2(mask, (5.0, 1.0, 1.0)).a_mm > 70  # across both bleeds


@pytest.mark.parametrize(("baseline", "followup", "expansion", "criteria"), [
    (20.0, 25.9, False, []),                          # +5.9 mL, +29.5 %
    (20.0, 26.7, True, ["absolute", "relative"]),     # +6.7 mL, +33.5 %
    (10.0, 13.4, True, ["relative"]),                 # +3.4 mL, +34 %
    (30.0, 36.0, False, []),                          # exactly 6 mL (20 %) is not more than 6
    (12.5, 16.625, False, []),                        # exactly 33 % is not more than 33 %
    (50.0, 57.0, True, ["absolute"]),                 # +7 mL, +14 %
    (40.0, 20.0, False, []),                          # shrinking
])
def test_expansion_thresholds(baseline, followup, expansion, criteria):
    result = compare_scans(baseline, followup)
    assert result["expansion"] is expansion
    assert result["criteria_met"] == criteria
    assert result["growth_ml"] == pytest.approx(followup - baseline)
    assert result["relative_growth"] == pytest.approx((followup - baseline) / baseline)


def test_expansion_from_no_hemorrhage_and_custom_thresholds():
    new = compare_scans(0.0, 4.0)
    assert new["relative_growth"] is None and new["expansion"] is False
    assert compare_scans(0.0, 6.5)["criteria_met"] == ["absolute"]
    strict = compare_scans(10.0, 12.5, absolute_threshold_ml=2.0, relative_threshold=0.5)
    assert strict["criteria_met"] == ["absolute"]
    assert strict["thresholds"] == {"absolute_ml": 2.0, "relative": 0.5}


def run_compare(argv):
    parser = argparse.ArgumentParser(prog="ichseg")
    compare_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compare", *argv])
    return args.run(args)


def test_compare_command_on_a_mask_and_a_case_json(tmp_path, capsys):
    reference = CTImage(np.zeros((4, 20, 20), np.float32), spacing=(5.0, 1.0, 1.0))
    mask = np.zeros(reference.shape, np.uint8)
    mask[1:3, 5:15, 5:15] = 1  # 200 voxels of 5 mm³: 1 mL
    baseline = save_mask(reference, mask, tmp_path / "baseline.nii.gz")
    followup = tmp_path / "followup.json"
    followup.write_text(json.dumps({"case": "followup", "measures": {"volume_ml": 8.0}}))
    out = tmp_path / "growth.json"

    assert run_compare([str(baseline), str(followup), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1.00 mL" in text and "8.00 mL" in text and "+7.00 mL" in text and "+700.0%" in text
    assert "YES: absolute and relative threshold exceeded (> 6 mL or > 33%)" in text
    saved = json.loads(out.read_text())
    assert saved["baseline_ml"] == pytest.approx(1.0) and saved["expansion"] is True
    assert saved["baseline"] == str(baseline)

    with pytest.raises(OutputExistsError):
        run_compare([str(baseline), str(followup), "--json", str(out)])
    assert run_compare([str(baseline), str(followup), "--json", str(out), "--overwrite",
                        "--absolute-threshold", "10", "--relative-threshold", "10"]) == 0
    assert "expansion  no (> 10 mL or > 1000%)" in capsys.readouterr().out


def test_compare_rejects_a_json_without_measures(tmp_path):
    stray = tmp_path / "other.json"
    stray.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="no measures.volume_ml"):
        compare_files(stray, stray)


def test_measures_read_back_from_their_json_unchanged():
    mask = np.zeros((5, 6, 6), bool)
    mask[1:3, 1:4, 1:4] = True
    mask[4, 5, 5] = True
    measures = case_measures(mask, (4.0, 0.5, 0.5))
    assert CaseMeasures.from_json(json.loads(json.dumps(measures.to_json()))) == measures
