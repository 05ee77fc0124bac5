"""Named recipes: what each paper trained, as data files the code reads.

A recipe is a JSON file (``src/ichseg/recipes/NAME.json``, or any path) that says how to
preprocess the CT, which nnU-Net configurations to train with which loss, the optimiser and
schedule, the folds, how to ensemble the resulting models, and the postprocessing its models
apply until ``ichseg postprocess-select`` chooses theirs (``postprocessing``: rules in order, as
in ``postprocessing.json``; e.g. ``[{"name": "intracranial"}]``; none by default). :func:`load_recipe` validates it
field by field, so a mistake is reported before anything is trained.

Every recipe trains as many classes as the data set's ``dataset.json`` declares: one
(hemorrhage, INSTANCE) or the five subtypes (BHSD, MBH-Seg), with nnU-Net's softmax over them.
A loss's ``class_weights`` are two, ``[background, hemorrhage]``; the second weights each
hemorrhage class. The loss and schedule values are :class:`~ichseg.engine.params.LossSpec` and
:class:`~ichseg.engine.params.TrainingSpec`, re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ichseg.engine.params import LossSpec, TrainingSpec
from ichseg.ensemble.rules import EnsembleError
from ichseg.ensemble.spec import EnsembleSpec
from ichseg.errors import RecipeError
from ichseg.postprocessing.rules import RuleError
from ichseg.postprocessing.sequence import Postprocessing
from ichseg.preprocessing.pipeline import CTPreprocessing

CONFIGURATIONS = ("2d", "3d_fullres")
OPTIMIZERS = ("sgd", "adam")
MAX_FOLDS = 5


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise RecipeError(f"{where}: missing field '{key}'")
    return data[key]


def _check_fields(data: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise RecipeError(f"{where}: unknown field(s) {sorted(unknown)}")
    return data


def _number(value: Any, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{where}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise RecipeError(f"{where}: must be positive, got {value!r}")
    return float(value)


def _integer(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def loss_from_dict(data: Any, where: str) -> LossSpec:
    """A group's ``loss``: ``dice_weight``, ``ce_weight`` and ``class_weights``.

    ``class_weights`` is ``[background, hemorrhage]`` or null: two weights, whatever the number of
    classes of the data set; with the five subtypes the second weights every hemorrhage class
    (Li & Chen's ``[0.2, 0.8]`` becomes 0.2, 0.8, 0.8, 0.8, 0.8, 0.8; see
    :meth:`LossSpec.class_weight_vector`).
    """
    data = _check_fields(data, {"dice_weight", "ce_weight", "class_weights"}, where)
    weights = data.get("class_weights")
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != 2:
            raise RecipeError(f"{where}.class_weights: expected [background, hemorrhage] or null")
        weights = tuple(_number(w, f"{where}.class_weights", positive=True) for w in weights)
    return LossSpec(
        dice_weight=_number(data.get("dice_weight", 1.0), f"{where}.dice_weight"),
        ce_weight=_number(data.get("ce_weight", 1.0), f"{where}.ce_weight"),
        class_weights=weights,
    )


def training_from_dict(data: Any, where: str) -> TrainingSpec:
    """A recipe's ``training``: optimiser, initial rate, poly exponent, epochs and iterations."""
    data = _check_fields(data, set(TrainingSpec.__dataclass_fields__), where)
    optimizer = data.get("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise RecipeError(f"{where}.optimizer: {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    return TrainingSpec(
        optimizer=optimizer,
        initial_lr=_number(data.get("initial_lr", 0.01), f"{where}.initial_lr", positive=True),
        poly_exponent=_number(data.get("poly_exponent", 0.9), f"{where}.poly_exponent", positive=True),
        epochs=_integer(data.get("epochs", 1000), f"{where}.epochs"),
        iterations_per_epoch=_integer(data.get("iterations_per_epoch", 250), f"{where}.iterations_per_epoch"),
        val_iterations_per_epoch=_integer(data.get("val_iterations_per_epoch", 50),
                                          f"{where}.val_iterations_per_epoch"),
    )


@dataclass(frozen=True)
class ModelGroup:
    """One nnU-Net configuration trained with one loss, over the recipe's folds."""

    name: str
    configuration: str
    loss: LossSpec

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelGroup:
        data = _check_fields(data, {"name", "configuration", "loss"}, where)
        name = _require(data, "name", where)
        configuration = _require(data, "configuration", where)
        if configuration not in CONFIGURATIONS:
            raise RecipeError(f"{where}.configuration: {configuration!r} is not one of {', '.join(CONFIGURATIONS)}")
        return cls(str(name), configuration, loss_from_dict(data.get("loss", {}), f"{where}.loss"))


@dataclass(frozen=True)
class TargetSpacing:
    """nnU-Net target spacing for 3d_fullres: slices at ``slice_mm``, in-plane median × factor."""

    slice_mm: float
    inplane_factor: float = 1.0

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TargetSpacing | None:
        if data is None:
            return None
        data = _check_fields(data, {"slice_mm", "inplane_factor"}, where)
        return cls(_number(_require(data, "slice_mm", where), f"{where}.slice_mm", positive=True),
                   _number(data.get("inplane_factor", 1.0), f"{where}.inplane_factor", positive=True))

    def resolve(self, median_spacing_zyx: tuple[float, float, float]) -> tuple[float, float, float]:
        return (self.slice_mm, median_spacing_zyx[1] * self.inplane_factor,
                median_spacing_zyx[2] * self.inplane_factor)

    @property
    def slug(self) -> str:
        return f"z{self.slice_mm:g}-xy{self.inplane_factor:g}".replace(".", "p")


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    source: str
    description: str
    preprocessing: CTPreprocessing
    target_spacing: TargetSpacing | None
    training: TrainingSpec
    groups: tuple[ModelGroup, ...]
    default_groups: tuple[str, ...]
    folds: tuple[int, ...]
    ensemble: dict[str, Any] = field(default_factory=lambda: {"strategy": "mean"})
    postprocessing: tuple[dict[str, Any], ...] = ()
    """The rules a model applies, in order, until a postprocessing is chosen for it."""

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> Recipe:
        allowed = {"name", "title", "source", "description", "preprocessing", "target_spacing", "training",
                   "groups", "default_groups", "folds", "ensemble", "postprocessing"}
        data = _check_fields(data, allowed, where)
        name = str(_require(data, "name", where))
        where = f"recipe {name!r}"
        groups_data = _require(data, "groups", where)
        if not isinstance(groups_data, list) or not groups_data:
            raise RecipeError(f"{where}.groups: expected a non-empty list")
        groups = tuple(ModelGroup.from_dict(g, f"{where}.groups[{i}]") for i, g in enumerate(groups_data))
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise RecipeError(f"{where}.groups: group names must be unique, got {names}")
        default_groups = tuple(data.get("default_groups", names))
        for g in default_groups:
            if g not in names:
                raise RecipeError(f"{where}.default_groups: {g!r} is not a group of this recipe")
        folds = data.get("folds", list(range(MAX_FOLDS)))
        if not isinstance(folds, list) or not folds or any(
                isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < MAX_FOLDS for f in folds):
            raise RecipeError(f"{where}.folds: expected a list of folds from 0 to {MAX_FOLDS - 1}")
        ensemble = _check_fields(data.get("ensemble", {"strategy": "mean"}),
                                 {"strategy", "th", "n1", "n2", "reading"}, f"{where}.ensemble")
        try:
            EnsembleSpec.from_dict(ensemble)
        except EnsembleError as error:
            raise RecipeError(f"{where}.ensemble: {error}") from None
        try:
            preprocessing = CTPreprocessing.from_dict(data.get("preprocessing"))
        except RecipeError as error:
            raise RecipeError(f"{where}.{error}") from None
        return cls(
            name=name,
            title=str(data.get("title", name)),
            source=str(data.get("source", "")),
            description=str(data.get("description", "")),
            preprocessing=preprocessing,
            target_spacing=TargetSpacing.from_dict(data.get("target_spacing"), f"{where}.target_spacing"),
            training=training_from_dict(data.get("training", {}), f"{where}.training"),
            groups=groups,
            default_groups=default_groups,
            folds=tuple(folds),
            ensemble=dict(ensemble),
            postprocessing=_postprocessing(data.get("postprocessing", []), f"{where}.postprocessing"),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        for group in data["groups"]:
            weights = group["loss"]["class_weights"]
            group["loss"]["class_weights"] = list(weights) if weights is not None else None
        data["groups"] = list(data["groups"])
        data["default_groups"] = list(self.default_groups)
        data["folds"] = list(self.folds)
        data["postprocessing"] = [dict(step) for step in self.postprocessing]
        return data

    def group(self, name: str) -> ModelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise RecipeError(f"recipe {self.name!r} has no group {name!r} (groups: "
                          f"{', '.join(g.name for g in self.groups)})")

    def select_groups(self, names: list[str] | None = None,
                      configuration: str | None = None) -> tuple[ModelGroup, ...]:
        """The groups to train: by name, by configuration, or the recipe's defaults."""
        if names:
            return tuple(self.group(n) for n in names)
        if configuration is not None:
            chosen = tuple(g for g in self.groups if g.configuration == configuration)
            if not chosen:
                raise RecipeError(f"recipe {self.name!r} has no group with configuration {configuration!r}")
            return chosen
        return tuple(self.group(n) for n in self.default_groups)

    @property
    def configurations(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.configuration for g in self.groups))

    @property
    def plans_name(self) -> str:
        """nnU-Net plans identifier: the default unless the recipe sets its own target spacing."""
        return "nnUNetPlans" if self.target_spacing is None else f"nnUNetPlans_{self.target_spacing.slug}"


def _postprocessing(data: Any, where: str) -> tuple[dict[str, Any], ...]:
    """The recipe's default postprocessing, checked rule by rule, in its saved form."""
    try:
        return tuple(Postprocessing.from_list(data).to_list())
    except RuleError as error:
        raise RecipeError(f"{where}: {error}") from None


def builtin_recipe_names() -> list[str]:
    files = resources.files("ichseg.recipes")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name, or a recipe JSON file by path."""
    text = str(name_or_path)
    if text in builtin_recipe_names():
        source = resources.files("ichseg.recipes").joinpath(f"{text}.json")
        label = f"recipe {text!r}"
        raw = source.read_text(encoding="utf-8")
    elif text.endswith(".json") and Path(text).is_file():
        label = text
        raw = Path(text).read_text(encoding="utf-8")
    else:
        raise RecipeError(f"unknown recipe {text!r} (built-in: {', '.join(builtin_recipe_names())}; "
                          f"or give the path of a recipe .json file)")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RecipeError(f"{label}: not valid JSON ({error.msg} at line {error.lineno})") from None
    return Recipe.from_dict(data, label)


def describe_recipe(recipe: Recipe) -> str:
    """A few lines for ``ichseg recipes``: groups, schedule, preprocessing, ensemble."""
    pre = recipe.preprocessing.to_dict()
    lines = [f"{recipe.name}: {recipe.title}", f"  source: {recipe.source}"]
    for g in recipe.groups:
        loss = g.loss
        weights = "none" if loss.class_weights is None else "/".join(f"{w:g}" for w in loss.class_weights)
        default = "" if g.name in recipe.default_groups else " (on request)"
        lines.append(f"  group {g.name}: {g.configuration}, loss {loss.dice_weight:g}·Dice + "
                     f"{loss.ce_weight:g}·CE (class weights {weights}){default}")
    if any(g.loss.class_weights is not None for g in recipe.groups):
        lines.append("  class weights: background / each hemorrhage class (one, or the five subtypes)")
    t = recipe.training
    lines.append(f"  training: {t.optimizer}, lr {t.initial_lr:g}, poly {t.poly_exponent:g}, "
                 f"{t.epochs} epochs × {t.iterations_per_epoch} iterations, folds {list(recipe.folds)}")
    window = pre["window"]
    lines.append("  preprocessing: " + ", ".join(filter(None, [
        (f"window L{window['level']:g}/W{window['width']:g} with clipping" if window
         else "nnU-Net CT normalisation only"),
        f"{pre['pad_slices']} slice(s) outward padding" if pre["pad_slices"] else "",
        (f"target spacing {recipe.target_spacing.slice_mm:g} mm slices, "
         f"in-plane ×{recipe.target_spacing.inplane_factor:g}" if recipe.target_spacing else ""),
    ])))
    params = {k: v for k, v in recipe.ensemble.items() if k != "strategy"}
    lines.append(f"  ensemble: {recipe.ensemble['strategy']}" + (f" {params}" if params else ""))
    steps = " then ".join(step["name"] for step in recipe.postprocessing)
    lines.append(f"  postprocessing until one is chosen: {steps or 'none'}")
    return "\n".join(lines)
