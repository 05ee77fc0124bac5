"""The intracranial rule where it is used: a recipe's default postprocessing, a segmentation's
postprocessing and report, the preview's boundary and ``ichseg predict --show-intracranial``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ichseg.batch.runner import predict_folder
from ichseg.cli import build_parser
from ichseg.data.synth import Tissue, generate_case
from ichseg.errors import RecipeError
from ichseg.io.image import save_image
from ichseg.model.folder import ModelFolder
from ichseg.postprocessing import (
    Postprocessing,
    Rule,
    find_intracranial_space,
    save_rule,
)
from ichseg.recipes import builtin_recipe_names, load_recipe
from ichseg.report.options import OutputOptions
from ichseg.report.preview import save_montage
from ichseg.segmentation.segmenter import Segmenter, folder_rule


class ThresholdModel:
    """One model that marks every voxel above 45 HU: bleeds, but also bone, muscle and skin."""

    def __len__(self) -> int:
        return 1

    def prepare(self, image):
        return image.array.astype(np.float32)

    def probabilities(self, prepared):
        yield type("Output", (), {"probability": (prepared > 45).astype(np.float32)})()


@pytest.fixture(scope="module")
def phantom():
    return generate_case(7, "tiny", hemorrhage=True)


def test_recipes_apply_no_postprocessing_unless_they_say_so(tmp_path):
    for name in builtin_recipe_names():
        assert load_recipe(name).postprocessing == ()
    data = load_recipe("nnunet").to_dict()
    data["postprocessing"] = [{"name": "intracranial"}, {"name": "min_volume", "params": {"min_ml": 0.1}}]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    recipe = load_recipe(str(path))
    assert recipe.postprocessing == ({"name": "intracranial", "params": {}},
                                     {"name": "min_volume", "params": {"min_ml": 0.1}})
    assert type(recipe).from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    data["postprocessing"] = [{"name": "skull"}]
    path.write_text(json.dumps(data))
    with pytest.raises(RecipeError, match="postprocessing: unknown postprocessing rule 'skull'"):
        load_recipe(str(path))


def test_a_folder_applies_its_chosen_postprocessing_else_its_recipes(tmp_path):
    recipe = load_recipe("nnunet").to_dict()
    description = {"recipe": recipe, "groups": [], "preprocessing": {}, "nnunet_dataset": "x",
                   "plans_name": "nnUNetPlans"}
    folder = ModelFolder(tmp_path, description)
    assert folder_rule(folder) is None
    recipe["postprocessing"] = [{"name": "intracranial"}]
    assert folder_rule(folder) == Postprocessing((Rule("intracranial"),))
    assert folder_rule(folder, postprocess=False) is None
    save_rule(folder.postprocessing_file, Rule("keep_largest"))
    assert folder_rule(folder) == Postprocessing((Rule("keep_largest"),))


def test_a_segmentation_keeps_only_what_lies_inside_the_skull(phantom):
    image = phantom.image
    plain = Segmenter(ThresholdModel()).segment(image)
    rule = Postprocessing((Rule("intracranial"),))
    inside = Segmenter(ThresholdModel(), rule=rule).segment(image)
    found = find_intracranial_space(image)
    space, room = found.mask, found.room
    marked = plain.mask.array.astype(bool)
    assert (marked & ~space).sum() > 100  # bone, skin and muscle above 45 HU
    assert (marked & space & ~room).any()  # the inner table's partial volume, inside the space
    np.testing.assert_array_equal(inside.mask.array.astype(bool), marked & room)
    np.testing.assert_array_equal(inside.intracranial, space)
    assert inside.postprocessing["removed_voxels"] == int((marked & ~room).sum())
    assert plain.intracranial is None and plain.postprocessing is None


def boundary_pixels(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 200)


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB")).astype(int)


def test_the_preview_draws_the_boundary_in_its_own_colour(tmp_path, phantom):
    image = phantom.image
    space = find_intracranial_space(image).mask
    z = int(np.argmax(space.sum(axis=(1, 2))))
    with_line = read_rgb(save_montage(image, None, tmp_path / "b.png", slices=[z], boundary=space))
    without = read_rgb(save_montage(image, None, tmp_path / "n.png", slices=[z]))
    assert boundary_pixels(with_line).sum() > 100 and not boundary_pixels(without).any()
    rows, columns = np.nonzero(boundary_pixels(with_line))
    scale = with_line.shape[1] / image.shape[2]
    ys, xs = np.nonzero(space[z])
    assert abs(rows.min() / scale - ys.min()) <= 1.5 and abs(columns.max() / scale - xs.max()) <= 1.5


@pytest.mark.parametrize("rule", [None, Postprocessing((Rule("intracranial"),))])
def test_predict_shows_the_boundary_when_asked(tmp_path, phantom, rule):
    inputs = tmp_path / "in"
    save_image(phantom.image, inputs / "case.nii.gz")
    segmenter = Segmenter(ThresholdModel(), rule=rule)
    for show in (False, True):
        out = tmp_path / f"out-{show}"
        predict_folder(segmenter, inputs, out, OutputOptions(html=False, show_intracranial=show), progress=False)
        assert boundary_pixels(read_rgb(out / "case.png")).any() == show
    record = json.loads((tmp_path / "out-True" / "case.json").read_text())
    assert (record["postprocessing"] is None) == (rule is None)


def test_the_command_line_flag():
    args = build_parser().parse_args(["predict", "-i", "in", "-o", "out", "--show-intracranial"])
    assert args.show_intracranial
    assert not build_parser().parse_args(["predict", "-i", "in", "-o", "out"]).show_intracranial


def fake_trained_folder(root: Path, cases: dict[str, tuple], images: bool) -> Path:
    """A workspace with phantoms imported as data set ``phantoms`` (their CTs in ``imagesTr``
    when ``images``) and a model folder whose out-of-fold predictions are given."""
    raw = root / "nnUNet_raw" / "Dataset001_phantoms"
    folder = root / "models" / "phantoms" / "nnunet"
    fold_dir = folder / "3d_fullres" / "nnunet" / "fold_0"
    fold_dir.mkdir(parents=True)
    (fold_dir / "checkpoint_final.pth").write_bytes(b"")
    (folder / "3d_fullres" / "oof").mkdir()
    for name, (image, reference, prediction) in cases.items():
        if images:
            save_image(image, raw / "imagesTr" / f"{name}_0000.nii.gz")
        save_image(image.with_array(reference.astype(np.uint8)), raw / "labelsTr" / f"{name}.nii.gz")
        np.savez_compressed(folder / "3d_fullres" / "oof" / f"{name}.npz",
                            probability=prediction.astype(np.uint8) * 255, fold=0)
    description = {"recipe": load_recipe("nnunet").to_dict(), "dataset": "phantoms",
                   "groups": {"3d_fullres": {"configuration": "3d_fullres",
                                             "nnunet_folder": "3d_fullres/nnunet"}},
                   "preprocessing": {}, "nnunet_dataset": "Dataset001_phantoms",
                   "plans_name": "nnUNetPlans"}
    (folder / "ichseg_model.json").write_text(json.dumps(description))
    return folder


@pytest.mark.parametrize("images", [True, False])
def test_postprocess_select_reads_the_imported_cts(tmp_path, images):
    """Predictions that mark the scalp beside each bleed: with the CTs, the intracranial rule is
    chosen and saved; without them it is not a candidate."""
    from ichseg.crossval import select_postprocessing

    cases = {}
    for seed in (11, 12, 13):
        case = generate_case(seed, "tiny", hemorrhage=True)
        reference = case.label.astype(bool)
        scalp = np.zeros_like(reference)
        half = reference.shape[2] // 2
        scalp[:, :, :half] = case.tissues[:, :, :half] == Tissue.SCALP
        cases[f"case{seed}"] = (case.image, reference, reference | scalp)
    folder = fake_trained_folder(tmp_path, cases, images)
    selection = select_postprocessing(folder, tmp_path, progress=False)
    saved = json.loads((folder / "postprocessing.json").read_text())
    assert saved["steps"] == selection.chosen.to_list()
    names = [str(row.rule) for row in selection.rows]
    if images:
        assert "intracranial" in names and selection.chosen.steps[0] == Rule("intracranial")
    else:
        assert not any("intracranial" in name for name in names)
