"""What a recipe asks of one training: the loss and the optimiser's schedule, as plain values.

These frozen dataclasses sit below both :mod:`ichseg.recipes` (which reads them from recipe files
and checks every field) and :mod:`ichseg.engine.trainer` (which applies them), so that the engine
needs nothing from the recipes. They do no parsing of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ichseg.errors import RecipeError


@dataclass(frozen=True)
class LossSpec:
    """``dice_weight · Dice + ce_weight · class-weighted CE`` (Li & Chen eq. 1–2).

    ``class_weights`` is ``(background, hemorrhage)``: the weight of the background and the weight
    of every hemorrhage class. With one class that is the paper's pair; with K classes (the
    subtypes) it expands to ``(background, hemorrhage, ..., hemorrhage)``, K values (see
    :meth:`class_weight_vector`). None: unweighted CE.
    """

    dice_weight: float = 1.0
    ce_weight: float = 1.0
    class_weights: tuple[float, float] | None = None

    def class_weight_vector(self, n_classes: int) -> tuple[float, ...] | None:
        """One CE weight per network output (``n_classes`` includes the background)."""
        if self.class_weights is None:
            return None
        if n_classes < 2:
            raise ValueError(f"a segmentation has at least 2 classes (background and one), got {n_classes}")
        background, hemorrhage = self.class_weights
        return (background,) + (hemorrhage,) * (n_classes - 1)


@dataclass(frozen=True)
class TrainingSpec:
    """Optimiser and poly learning-rate schedule ``lr = initial_lr · (1 - epoch/epochs)^exponent``."""

    optimizer: str = "sgd"
    initial_lr: float = 0.01
    poly_exponent: float = 0.9
    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50

    def overridden(self, epochs: int | None = None, iterations: int | None = None,
                   val_iterations: int | None = None) -> TrainingSpec:
        """A shorter (or longer) schedule for quick runs; the rest unchanged."""
        return replace(
            self,
            epochs=self.epochs if epochs is None else _count(epochs, "--epochs"),
            iterations_per_epoch=self.iterations_per_epoch if iterations is None
            else _count(iterations, "--iterations"),
            val_iterations_per_epoch=self.val_iterations_per_epoch if val_iterations is None
            else _count(val_iterations, "--val-iterations"),
        )


def _count(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError(f"{option}: expected an integer >= 1, got {value!r}")
    return value
