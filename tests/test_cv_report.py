"""``cv-report``'s tables: the false positives beside Dice, and on the cases without hemorrhage."""

from __future__ import annotations

import csv
import io

import pytest

from ichseg.crossval import CV_METRICS, cv_tables


def row(case: str, ref_ml: float, fp_ml: float, fp_components: int, dice: float) -> dict:
    return {"case": case, "dice": dice, "hd": 1.0, "rvd": 0.1, "nsd": 0.5, "volume_ref_ml": ref_ml,
            "fp_ml": fp_ml, "fp_components": fp_components}


RESULTS = {
    "2d": [row("a", 0.0, 1.5, 2, 0.0), row("b", 0.0, 0.0, 0, 1.0), row("c", 4.0, 0.25, 1, 0.8)],
    "ensemble: mean probability": [row("a", 0.0, 0.5, 1, 0.0), row("b", 0.0, 0.0, 0, 1.0),
                                   row("c", 4.0, 0.75, 3, 0.7)],
}


def test_markdown_shows_false_positives_beside_dice_and_on_empty_references():
    markdown, _ = cv_tables(RESULTS)
    header = markdown.splitlines()[0]
    assert header.index("Dice") < header.index("FP volume (mL)") < header.index("FP components")
    assert "| 2d | 0.6000 ± 0.5292 | 1.00 ± 0.00 | 0.1000 ± 0.0000 | 0.5000 ± 0.0000 | " \
           "0.58 ± 0.80 | 1.0 ± 1.0 |" in markdown
    section = markdown.split("## Cases without hemorrhage in the reference")[1]
    # 2d: FP 1.5 and 0 mL (mean 0.75, max 1.5), 2 and 0 components (mean 1, max 2)
    assert "| 2d | 2 | 1 | 0.75 | 1.50 | 1.0 | 2.0 |" in section
    assert "| ensemble: mean probability | 2 | 1 | 0.25 | 0.50 | 0.5 | 1.0 |" in section


def test_csv_has_the_empty_reference_columns():
    _, text = cv_tables(RESULTS)
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["method"] for r in table] == list(RESULTS)
    assert float(table[0]["fp_ml_mean"]) == pytest.approx((1.5 + 0.0 + 0.25) / 3)
    assert (table[0]["empty_ref_cases"], table[0]["empty_ref_without_fp"]) == ("2", "1")
    assert float(table[0]["empty_ref_fp_ml_max"]) == 1.5
    assert float(table[1]["empty_ref_fp_components_mean"]) == 0.5
    assert set(CV_METRICS) >= {"dice", "hd", "rvd", "nsd", "fp_ml", "fp_components"}


def test_no_empty_reference_no_section():
    markdown, _ = cv_tables({"2d": [row("c", 4.0, 0.25, 1, 0.8)]})
    assert "without hemorrhage" not in markdown
