"""Recipes as data: the built-in three, validation of recipe files, and the CLI listing."""

import json

import pytest

from ichseg.cli import main
from ichseg.errors import IchsegError, RecipeError
from ichseg.model.folder import parse_folds
from ichseg.recipes import builtin_recipe_names, load_recipe


def test_builtin_recipes_match_the_papers():
    assert builtin_recipe_names() == ["li2022", "liangwei2022", "nnunet"]
    li = load_recipe("li2022")
    assert [(g.name, g.configuration) for g in li.groups] == [("2d", "2d"), ("2d_wce", "2d"), ("3d_wce", "3d_fullres")]
    assert li.group("2d").loss.class_weights is None
    assert li.group("3d_wce").loss.class_weights == (0.2, 0.8)
    assert (li.group("3d_wce").loss.dice_weight, li.group("3d_wce").loss.ce_weight) == (0.6, 0.4)
    assert li.training.optimizer == "adam" and li.training.initial_lr == 0.01 and li.training.poly_exponent == 0.9
    assert len(li.groups) * len(li.folds) == 15 and li.ensemble["strategy"] == "uncertainty"
    lw = load_recipe("liangwei2022")
    assert lw.preprocessing.to_dict() == {"window": {"level": 96.0, "width": 59.0}, "pad_slices": 1}
    assert lw.training.optimizer == "sgd" and lw.target_spacing.resolve((4.8, 0.45, 0.45)) == (5.0, 0.9, 0.9)
    plain = load_recipe("nnunet")
    assert [g.name for g in plain.select_groups()] == ["3d_fullres"]
    assert [g.name for g in plain.select_groups(configuration="2d")] == ["2d"]


def test_recipe_round_trips_through_its_dictionary():
    for name in builtin_recipe_names():
        recipe = load_recipe(name)
        assert type(recipe).from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("groups"), "missing field 'groups'"),
    (lambda r: r["training"].update(optimizer="rmsprop"), "optimizer: 'rmsprop' is not one of"),
    (lambda r: r["groups"][0].update(configuration="3d_lowres"), "configuration: '3d_lowres'"),
    (lambda r: r["groups"][0]["loss"].update(class_weights=[1.0]), "class_weights"),
    (lambda r: r.update(folds=[0, 5]), "folds"),
    (lambda r: r.update(colour="red"), "unknown field(s) ['colour']"),
    (lambda r: r["training"].update(epochs=0), "epochs"),
    (lambda r: r.update(ensemble={"strategy": "median"}), "unknown ensemble strategy 'median'"),
])
def test_malformed_recipe_file_is_a_one_line_error(tmp_path, change, message):
    data = load_recipe("li2022").to_dict()
    change(data)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecipeError) as raised:
        load_recipe(str(path))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_unknown_recipe_and_bad_json(tmp_path):
    with pytest.raises(RecipeError, match="unknown recipe 'li2023'"):
        load_recipe("li2023")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_recipe(str(broken))


def test_fold_selection():
    recipe = load_recipe("li2022")
    assert parse_folds("all", recipe) == [0, 1, 2, 3, 4]
    assert parse_folds("0,2", recipe) == [0, 2]
    assert parse_folds(3, recipe) == [3]
    assert parse_folds("full", recipe) == ["all"]
    for bad in ("5", "-1", "x"):
        with pytest.raises(IchsegError, match="out of range"):
            parse_folds(bad, recipe)


def test_cli_lists_commands_and_recipes(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listing = capsys.readouterr().out
    for command in ("demo", "synth", "import", "plan", "recipes", "train", "predict", "evaluate",
                    "cv-report", "postprocess-select", "compare"):
        assert command in listing
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "li2022" in out and "0.6·Dice + 0.4·CE (class weights 0.2/0.8)" in out and "window L96/W59" in out
    assert out.count("class weights: background / each hemorrhage class") == 1  # li2022's, not the others
    assert main(["recipes", "nosuch"]) == 2
    assert capsys.readouterr().err.startswith("ichseg: error: unknown recipe 'nosuch'")


def test_the_engine_imports_nothing_above_it():
    """Recipes are read above the engine: the trainer takes plain values from engine.params,
    which recipes re-export, so that callers of ichseg.recipes keep working."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import ichseg.engine
    from ichseg import recipes
    from ichseg.engine import params

    above = ("ichseg.recipes", "ichseg.training", "ichseg.model", "ichseg.segmentation", "ichseg.batch",
             "ichseg.commands", "ichseg.cli", "ichseg.data")
    for path in Path(ichseg.engine.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            assert not [n for n in names if n.startswith(above)], f"{path.name} imports {names}"
    assert recipes.LossSpec is params.LossSpec and recipes.TrainingSpec is params.TrainingSpec
    # reading a recipe (as prediction does, before its inputs are checked) imports no torch
    code = "import sys, ichseg.recipes; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
