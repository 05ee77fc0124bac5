"""How a case's models were combined, as a case's JSON and reports state it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The strategy named for a case segmented by one model: there is nothing to combine, so no half
#: ratio is reported.
SINGLE_MODEL = "single model"


@dataclass(frozen=True)
class EnsembleInfo:
    """The strategy, the number of models C, the case's half ratio HR (None when no model marked
    anything, or for one model), the branch of the rule applied and the strategy's parameters."""

    strategy: str
    n_models: int
    hr: float | None = None
    rule: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def single_model(cls) -> EnsembleInfo:
        return cls(SINGLE_MODEL, 1)

    @property
    def is_ensemble(self) -> bool:
        """Several models voted: a vote map, HR and the rule mean something."""
        return self.n_models > 1

    def to_json(self) -> dict[str, Any]:
        if not self.is_ensemble:
            return {"strategy": self.strategy, "n_models": self.n_models}
        return {"strategy": self.strategy, "n_models": self.n_models, "hr": self.hr, "rule": self.rule,
                "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnsembleInfo:
        return cls(str(data["strategy"]), int(data.get("n_models", 1)), data.get("hr"), data.get("rule"),
                   dict(data.get("params") or {}))
