"""The one typed description of how an ensemble's models are combined.

Recipes, the command line, ``cv-report`` and prediction all describe an ensemble the same way:
a strategy and, for the uncertainty estimation ensemble, Li & Chen's th, N1, N2 and the reading
of HR. An :class:`EnsembleSpec` is checked when it is made, and :meth:`EnsembleSpec.check_models`
checks it against a number of models before any network runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real
from typing import Any

from ichseg.ensemble.rules import READINGS, STRATEGIES, EnsembleError


@dataclass(frozen=True)
class EnsembleSpec:
    """A strategy (``mean``, ``vote`` or ``uncertainty``) and its parameters.

    ``th``, ``n1``, ``n2`` and ``reading`` belong to the uncertainty estimation ensemble
    (defaults 0.5, 1, ⌊C/2⌋ and ``printed``); the other strategies take none.
    """

    strategy: str = "mean"
    th: float | None = None
    n1: int | None = None
    n2: int | None = None
    reading: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise EnsembleError(f"unknown ensemble strategy {self.strategy!r} "
                                f"(choose from {', '.join(STRATEGIES)})")
        given = self.params()
        if self.strategy != "uncertainty" and given:
            raise EnsembleError(f"ensemble strategy {self.strategy!r} has no parameter "
                                f"{next(iter(given))!r} (it takes no parameters)")
        if self.th is not None and (not isinstance(self.th, Real) or isinstance(self.th, bool)
                                    or not 0.0 <= self.th <= 1.0):
            raise EnsembleError(f"uncertainty ensemble: th must be a number from 0 to 1, got {self.th!r}")
        for name, value in (("N1", self.n1), ("N2", self.n2)):
            if value is not None and (not isinstance(value, Integral) or isinstance(value, bool) or value < 0):
                raise EnsembleError(f"uncertainty ensemble: {name} must be a whole number ≥ 0, got {value!r}")
        if self.reading is not None and self.reading not in READINGS:
            raise EnsembleError(f"unknown HR reading {self.reading!r} (choose from {', '.join(READINGS)})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleSpec:
        """From a recipe's ``ensemble`` entry (``strategy`` plus parameters; nulls mean defaults)."""
        unknown = sorted(set(data) - {"strategy", "th", "n1", "n2", "reading"})
        if unknown:
            raise EnsembleError(f"ensemble: unknown field {unknown[0]!r}")
        return cls(**data)

    def params(self) -> dict[str, Any]:
        """The parameters set explicitly (not left to their defaults): keyword arguments for
        :func:`ichseg.ensemble.ensemble_mask`."""
        return {key: value for key, value in asdict(self).items() if key != "strategy" and value is not None}

    def with_overrides(self, strategy: str | None = None, **params: Any) -> EnsembleSpec:
        """This spec with another strategy and/or parameters; switching strategy drops the old
        strategy's parameters (the recipe's N2 means nothing to a vote)."""
        given = {key: value for key, value in params.items() if value is not None}
        base = self if strategy in (None, self.strategy) else EnsembleSpec(strategy)
        return replace(base, **given)

    def check_models(self, n_models: int) -> None:
        """Raise :class:`EnsembleError` unless the spec fits an ensemble of ``n_models``."""
        if not isinstance(n_models, Integral) or n_models < 1:
            raise EnsembleError(f"an ensemble needs at least one model, got {n_models!r}")
        for name, value in (("N1", self.n1), ("N2", self.n2)):
            if value is not None and value > n_models:
                raise EnsembleError(f"uncertainty ensemble: {name} must be an integer from 0 to "
                                    f"{n_models} (the number of models), got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, **self.params()}
