"""The demo's promises that need no training: its test set holds a phantom without hemorrhage, and
what it counts outside the skull is what the phantom's tissue map says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ichseg import demo as demo_module
from ichseg.data.synth import case_seed, generate_case
from ichseg.data.synth.vocabulary import INTRACRANIAL_TISSUES
from ichseg.io.image import load_image
from ichseg.io.nifti import save_mask


def test_the_first_test_phantom_has_no_hemorrhage():
    case = generate_case(case_seed(demo_module.TEST_SEED, 0), "tiny")
    assert case.types == () and not case.label.any()


def test_voxels_outside_the_skull_are_counted_on_the_phantoms_tissue_map(tmp_path: Path):
    case = generate_case(case_seed(demo_module.TEST_SEED, 1), "tiny")
    outside = ~np.isin(case.tissues, list(INTRACRANIAL_TISSUES))
    mask = case.label.astype(bool).copy()
    extra = np.argwhere(outside)[::50][:7]  # 7 voxels outside, e.g. scalp and muscle
    mask[tuple(extra.T)] = True
    save_mask(case.image, mask, tmp_path / "ich_001.nii.gz")
    count = demo_module._outside_skull(2, "tiny")
    assert count(tmp_path / "ich_001.nii.gz", "ich_001") == 7 + int(np.count_nonzero(case.label.astype(bool) & outside))


def test_the_table_shows_both_routes_and_the_negative_phantom():
    rows = [{"case": "ich_000", "true_ml": 0.0, "dice_raw": 0.0, "fp_ml_raw": 1.25, "outside_raw": 30,
             "dice": 1.0, "predicted_ml": 0.0, "fp_ml": 0.0, "outside": 0},
            {"case": "ich_001", "true_ml": 4.78, "dice_raw": 0.61, "fp_ml_raw": 0.5, "outside_raw": 4,
             "dice": 0.64, "predicted_ml": 4.1, "fp_ml": 0.2, "outside": 0}]
    table = demo_module.format_table(demo_module.DemoResult(rows, Path("out"), Path("model"), 1.0))
    assert "0.000 → 1.000" in table and "30 → 0" in table
    assert "false-positive volume at most 0.00 mL with the rule (1.25 mL without)" in table


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_the_rule_only_removes(tmp_path: Path):
    """The newcomer's first command, shortened (one epoch): both predictions land side by side and
    the rule's masks are the raw masks less what it removed."""
    result = demo_module.demo(tmp_path / "ws", n_train=5, epochs=1, iterations=2, progress=False)
    output = tmp_path / "ws" / "demo-output"
    assert result.output_dir == output / "with-rule"
    for folder in (output / "without-rule", output / "with-rule"):
        assert sorted(p.name for p in folder.glob("ich_*.nii.gz")) == ["ich_000.nii.gz", "ich_001.nii.gz",
                                                                        "ich_002.nii.gz"]
    for row in result.rows:
        raw = load_image(output / "without-rule" / f"{row['case']}.nii.gz").array != 0
        ruled = load_image(output / "with-rule" / f"{row['case']}.nii.gz").array != 0
        assert not (ruled & ~raw).any()
        assert row["outside"] <= row["outside_raw"] and row["fp_ml"] <= row["fp_ml_raw"] + 1e-9
    assert [row["true_ml"] == 0 for row in result.rows] == [True, False, False]
    assert "→" in demo_module.format_table(result)
