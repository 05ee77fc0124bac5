"""Connected-component rules on hand-built masks, their JSON form, and cross-validated selection.

The intracranial rule, on phantoms, is in test_intracranial.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ichseg.errors import IchsegError, OutputExistsError
from ichseg.postprocessing import (
    CONNECTIVITY,
    Postprocessing,
    Rule,
    RuleError,
    apply_rule,
    candidate_grid,
    format_selection,
    load_rule,
    save_rule,
    select_rule,
)

SPACING = (5.0, 1.0, 1.0)  # 5 mm³ voxels: 200 voxels make 1 mL


def bleeds() -> dict[str, np.ndarray]:
    """Four separate components of known size in a (z, y, x) case."""
    parts = {name: np.zeros((6, 20, 20), dtype=bool) for name in
             ("large", "small", "speck", "sliver")}
    parts["large"][0:3, 2:6, 2:6] = True     # 48 voxels, 0.24 mL, 3 slices
    parts["small"][2:4, 12:14, 12:14] = True  # 8 voxels, 0.04 mL, 2 slices
    parts["speck"][5, 18, 2] = True           # 1 voxel, 0.005 mL, 1 slice
    parts["sliver"][4, 10, 4:10] = True       # 6 voxels, 0.03 mL, 1 slice
    return parts


def union(parts: dict[str, np.ndarray], *names: str) -> np.ndarray:
    return np.logical_or.reduce([parts[name] for name in names])


ALL = ("large", "small", "speck", "sliver")


@pytest.mark.parametrize("rule, kept", [
    (Rule("none"), ALL),
    (Rule("keep_largest"), ("large",)),
    (Rule("min_volume", {"min_ml": 0.04}), ("large", "small")),  # 0.04 mL exactly is kept
    (Rule("min_volume", {"min_ml": 0.041}), ("large",)),
    (Rule("min_volume", {"min_ml": 0.03}), ("large", "small", "sliver")),
    (Rule("min_volume", {"min_ml": 1}), ()),
    (Rule("min_slices", {"min_slices": 2}), ("large", "small")),
    (Rule("min_slices", {"min_slices": 3}), ("large",)),
])
def test_rules_keep_the_expected_components(rule, kept):
    parts = bleeds()
    result, report = apply_rule(union(parts, *ALL), SPACING, rule)
    expected = union(parts, *kept) if kept else np.zeros_like(result)
    assert result.dtype == bool and np.array_equal(result, expected)
    removed = [name for name in ALL if name not in kept]
    assert report == {
        "rule": rule.name, "params": rule.params,
        "removed_voxels": sum(int(parts[name].sum()) for name in removed),
        "removed_ml": pytest.approx(sum(int(parts[name].sum()) for name in removed) * 0.005),
        "removed_components": len(removed), "kept_components": len(kept),
    }
    json.dumps(report)


def test_volume_uses_the_spacing():
    parts = bleeds()
    mask = union(parts, *ALL)
    rule = Rule("min_volume", {"min_ml": 0.04})
    # Voxels of 10 mm³: the 6-voxel sliver is 0.06 mL now and stays.
    assert np.array_equal(apply_rule(mask, (10.0, 1.0, 1.0), rule)[0],
                          union(parts, "large", "small", "sliver"))


def test_components_touching_at_a_corner_or_an_edge_are_one():
    assert CONNECTIVITY == 26
    mask = np.zeros((3, 4, 4), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner contact across slices
    mask[1, 1, 2] = mask[2, 2, 3] = True  # face, then corner contact
    mask[2, 3, 0] = True                  # apart from the rest
    assert ndimage.label(mask)[1] == 4    # what 6-connectivity would see
    result, report = apply_rule(mask, SPACING, Rule("keep_largest"))
    expected = mask.copy()
    expected[2, 3, 0] = False
    assert np.array_equal(result, expected)
    assert (report["kept_components"], report["removed_components"]) == (1, 1)
    # The diagonal chain spans three slices as one component.
    assert np.array_equal(apply_rule(mask, SPACING, Rule("min_slices", {"min_slices": 3}))[0],
                          expected)


def test_edge_contact_within_a_slice():
    mask = np.zeros((1, 3, 3), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 2, 2] = True
    _, report = apply_rule(mask, SPACING, Rule("none"))
    assert report["kept_components"] == 1


def test_empty_mask():
    empty = np.zeros((2, 3, 3), dtype=bool)
    for rule in candidate_grid():
        result, report = apply_rule(empty, SPACING, rule)
        assert not result.any()
        assert report["kept_components"] == report["removed_voxels"] == 0


# --- rules as data ---

def test_rule_json_round_trip(tmp_path):
    path = tmp_path / "model" / "postprocessing.json"
    rule = Rule("min_volume", {"min_ml": 0.25})
    save_rule(path, rule, extra={"selection": {"n_cases": 3}})
    saved = json.loads(path.read_text())
    assert saved == {"steps": [{"name": "min_volume", "params": {"min_ml": 0.25}}],
                     "selection": {"n_cases": 3}}
    assert load_rule(path) == Postprocessing((rule,))
    with pytest.raises(OutputExistsError):
        save_rule(path, Rule("none"))
    save_rule(path, Rule("keep_largest"), overwrite=True)
    assert load_rule(path) == Postprocessing((Rule("keep_largest"),))
    assert sorted(p.name for p in path.parent.iterdir()) == ["postprocessing.json"]


def test_a_sequence_is_saved_as_a_list_of_steps(tmp_path):
    path = tmp_path / "postprocessing.json"
    steps = Postprocessing((Rule("intracranial"), Rule("min_volume", {"min_ml": 0.1})))
    save_rule(path, steps)
    assert json.loads(path.read_text()) == {"steps": [
        {"name": "intracranial", "params": {}}, {"name": "min_volume", "params": {"min_ml": 0.1}}]}
    assert load_rule(path) == steps
    assert steps.name == "intracranial then min_volume" and steps.needs_image
    assert str(steps) == "intracranial then min_volume(min_ml=0.1)"
    save_rule(path, Postprocessing(), overwrite=True)
    assert load_rule(path) == Postprocessing((Rule("none"),)) == Postprocessing()
    assert str(load_rule(path)) == "none"


def test_files_written_before_sequences_still_read(tmp_path):
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps({"rule": {"name": "min_slices", "params": {"min_slices": 2}},
                                "selected_on": "5 out-of-fold cases, ensemble mean"}))
    assert load_rule(path) == Postprocessing((Rule("min_slices", {"min_slices": 2}),))


def test_rule_from_dict():
    assert Rule.from_dict({"name": "none"}) == Rule("none", {})
    assert Rule.from_dict({"name": "min_slices", "params": {"min_slices": 2}}).params == \
        {"min_slices": 2}
    assert Rule("min_volume", {"min_ml": 1}).params["min_ml"] == 1.0
    assert str(Rule("min_volume", {"min_ml": 0.05})) == "min_volume(min_ml=0.05)"


@pytest.mark.parametrize("data, named", [
    ({"name": "largest"}, "'largest'"),
    ({"name": "min_volume"}, "'min_ml'"),
    ({"name": "min_volume", "params": {"min_ml": 0.1, "max_ml": 2}}, "'max_ml'"),
    ({"name": "none", "params": {"min_ml": 0.1}}, "'min_ml'"),
    ({"name": "min_volume", "params": {"min_ml": 0}}, "min_ml"),
    ({"name": "min_volume", "params": {"min_ml": -0.5}}, "min_ml"),
    ({"name": "min_volume", "params": {"min_ml": "0.1"}}, "min_ml"),
    ({"name": "min_volume", "params": {"min_ml": float("inf")}}, "min_ml"),
    ({"name": "min_slices", "params": {"min_slices": 2.5}}, "min_slices"),
    ({"name": "min_slices", "params": {"min_slices": True}}, "min_slices"),
    ({"name": "none", "extra": 1}, "'extra'"),
    ({"params": {}}, "name"),
    (["none"], "name"),
])
def test_bad_rules_are_one_line_errors(data, named):
    with pytest.raises(RuleError, match=named) as error:
        Rule.from_dict(data)
    assert isinstance(error.value, IchsegError) and "\n" not in str(error.value)


@pytest.mark.parametrize("content", [
    '{"rule": {"name": "median"}}', "{not json", '{"name": "none"}', "[1, 2]",
    '{"steps": {"name": "none"}}', '{"steps": [{"name": "intracranial", "params": {"x": 1}}]}',
])
def test_load_rule_names_the_file(tmp_path, content):
    path = tmp_path / "postprocessing.json"
    path.write_text(content)
    with pytest.raises(RuleError, match="postprocessing.json") as error:
        load_rule(path)
    assert "\n" not in str(error.value)
    with pytest.raises(RuleError, match="no such"):
        load_rule(tmp_path / "missing.json")


# --- cross-validated selection ---

def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    total = prediction.sum() + reference.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(prediction, reference).sum() / total


def two_bleeds_with_specks(shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction, reference and the prediction's spurious specks for one case.

    The reference has a large and a medium bleed; the prediction oversegments the large one a
    little and adds three thin specks. Each speck is 3 voxels (0.015 mL) over 3 slices, so slice
    counts cannot remove it but any volume threshold can; the medium bleed (75 voxels, 0.375 mL)
    survives volume thresholds up to 0.25 mL.
    """
    reference = np.zeros((8, 32, 32), dtype=bool)
    reference[1:5, 2:10, 2:10] = True      # 256 voxels
    reference[3:6, 20:25, 20:25] = True    # 75 voxels
    specks = np.zeros_like(reference)
    for k in range(3):
        specks[4:7, 12 + 2 * k, 2 + 5 * k + shift] = True
    prediction = reference | specks
    prediction[1:5, 2:10, 10] = True       # 32 voxels too many beside the large bleed
    return prediction, reference, specks


def test_min_volume_wins_where_specks_are_spurious():
    cases = [two_bleeds_with_specks(shift) for shift in range(3)]
    selection = select_rule([(p, r, SPACING) for p, r, _ in cases])  # INSTANCE metrics
    rows = {str(row.rule): row for row in selection.rows}
    # Without the cases' CT, the grid leaves out the intracranial rule.
    assert list(rows) == [str(rule) for rule in candidate_grid(intracranial=False)]
    assert list(rows["none"].means) == ["dice", "hd", "hd95", "nsd", "rvd"]
    # The three gentlest volume thresholds remove exactly the specks; ties go to the first.
    assert selection.chosen == Postprocessing((Rule("min_volume", {"min_ml": 0.05}),))
    without_specks = np.mean([dice(p & ~specks, r) for p, r, specks in cases])
    for threshold in ("0.05", "0.1", "0.25"):
        row = rows[f"min_volume(min_ml={threshold})"]
        assert row.means["dice"] == pytest.approx(without_specks)
        assert (row.removed_components, row.removed_voxels) == (9, 27)
        assert row.means["hd"] < rows["none"].means["hd"]
        assert row.means["rvd"] < rows["none"].means["rvd"]
    # keep_largest and the larger volume thresholds also drop the medium bleed.
    for name in ("keep_largest", "min_volume(min_ml=0.5)", "min_volume(min_ml=1)"):
        assert not rows[name].eligible and "dice" in rows[name].worse
    assert rows["min_slices(min_slices=3)"].means == rows["none"].means
    table = format_selection(selection)
    marked = [line.split() for line in table.splitlines() if line.startswith("*")]
    assert [line[1] for line in marked] == ["min_volume(min_ml=0.05)"]
    assert all(str(rule) in table for rule in candidate_grid(intracranial=False))


def test_keep_largest_loses_on_multiple_bleeds_even_where_it_helps_single_ones():
    single = np.zeros((8, 32, 32), dtype=bool)
    single[1:5, 2:10, 2:10] = True
    with_speck = single.copy()
    with_speck[2:6, 20:23, 20:23] = True   # 36 voxels, 0.18 mL: too large for small thresholds
    two_bleeds = two_bleeds_with_specks(0)[1]
    cases = [(with_speck, single, SPACING), (two_bleeds, two_bleeds, SPACING),
             (two_bleeds, two_bleeds, SPACING)]
    selection = select_rule(cases, [Rule("keep_largest"), Rule("min_volume", {"min_ml": 0.1})])
    rows = {str(row.rule): row for row in selection.rows}
    assert rows["keep_largest"].means["dice"] < rows["none"].means["dice"]
    assert selection.chosen == Postprocessing()
    # Alone, the single-bleed case is where keep_largest is right.
    assert select_rule(cases[:1], [Rule("keep_largest")]).chosen == Postprocessing.of(
        Rule("keep_largest"))


def table_metric(table: dict[int, dict[str, float]]):
    """A metric function that looks its values up by the prediction's voxel count."""
    return lambda prediction, reference, spacing: table[int(prediction.sum())]


def largest_and_speck() -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """One case: 8 voxels, and a 1-voxel speck that keep_largest removes (9 -> 8 voxels)."""
    prediction = np.zeros((3, 6, 6), dtype=bool)
    prediction[0:2, 0:2, 0:2] = True
    prediction[2, 5, 5] = True
    return [(prediction, prediction, SPACING)]


@pytest.mark.parametrize("after, margin, worse, chosen", [
    ({"dice": 0.9, "hd": 10.05}, 0.01, (), "keep_largest"),     # HD 0.5% longer: within 1%
    ({"dice": 0.9, "hd": 10.15}, 0.01, ("hd",), "none"),        # HD 1.5% longer: beyond 1%
    ({"dice": 0.9, "hd": 10.15}, 0.02, (), "keep_largest"),
    ({"dice": 0.9, "hd": float("inf")}, 0.5, ("hd",), "none"),  # a distance became infinite
    ({"dice": 0.9, "nsd": 0.489}, 0.01, ("nsd",), "none"),      # NSD 0.011 lower
    ({"dice": 0.9, "nsd": 0.491}, 0.01, (), "keep_largest"),
    ({"dice": 0.9, "rvd": 0.211}, 0.01, ("rvd",), "none"),      # RVD 0.011 higher
    ({"dice": 0.809, "hd": 5.0}, 0.01, (), "keep_largest"),
    ({"dice": 0.8, "hd": 5.0}, 0.01, (), "none"),               # equal Dice: the simpler rule
    ({"dice": 0.7, "hd": 5.0}, 0.5, (), "none"),                # lower Dice is never chosen
])
def test_margin_guards_every_metric(after, margin, worse, chosen):
    before = {"dice": 0.8, "hd": 10.0, "nsd": 0.5, "rvd": 0.2}
    metric = table_metric({9: before, 8: {**before, **after}})
    selection = select_rule(largest_and_speck(), [Rule("keep_largest")], margin, metric)
    assert [str(row.rule) for row in selection.rows] == ["none", "keep_largest"]  # none added
    assert selection.chosen == Postprocessing.of(Rule(chosen))
    assert selection.rows[1].worse == worse


def test_selection_is_saved_as_plain_data(tmp_path):
    prediction, reference, _ = two_bleeds_with_specks(0)
    selection = select_rule([(prediction, reference, SPACING)],
                            metric_fn=lambda p, r, s: {"dice": dice(p, r)})
    save_rule(tmp_path / "pp.json", selection.chosen, {"selection": selection.as_dict()})
    saved = json.loads((tmp_path / "pp.json").read_text())
    assert saved["selection"]["chosen"] == saved["steps"] == selection.chosen.to_list()
    assert len(saved["selection"]["rows"]) == len(candidate_grid(intracranial=False))


def test_selection_needs_cases_and_a_sane_margin():
    with pytest.raises(RuleError):
        select_rule([])
    with pytest.raises(RuleError):
        select_rule(largest_and_speck(), margin=-0.1, metric_fn=lambda p, r, s: {"dice": 1.0})
