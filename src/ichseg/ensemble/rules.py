"""Ensemble rules: turn an ensemble's probability sum or vote counts into one hemorrhage mask.

Three strategies:

- ``mean``: mean probability > 0.5, which for two classes is nnU-Net's ensembling
  (``nnUNetv2_ensemble`` averages the softmax outputs, then takes the argmax);
- ``vote``: a strict majority of the models, ``n(x) > C/2``;
- ``uncertainty``: Li & Chen's uncertainty estimation ensemble (INSTANCE 2022, eq. 4-5), which
  picks the number of votes a voxel needs from the case's half ratio (HR).

Every function works on numpy arrays and on torch tensors alike and returns a boolean mask of
the same library. HR is reported for every strategy, as the case's uncertainty measure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from ichseg.errors import IchsegError

if TYPE_CHECKING:  # imported for the hint only: the strategy names stay free of numpy
    from ichseg.ensemble.accumulator import EnsembleAccumulator

#: The one list of strategy names (recipes, the CLI, :class:`~ichseg.ensemble.spec.EnsembleSpec`).
STRATEGIES = ("mean", "vote", "uncertainty")

#: How the numerator of HR (eq. 4) counts voxels: "printed", as the paper's equation,
#: n(x) = ⌊C/2⌋; "majority", the share of marked voxels that a majority marks, n(x) ≥ ⌈C/2⌉.
READINGS = ("printed", "majority")

UNCERTAINTY_DEFAULTS: Mapping[str, Any] = {"th": 0.5, "n1": 1, "n2": None, "reading": "printed"}


class EnsembleError(IchsegError):
    """An ensemble strategy or parameter that does not exist or is out of range."""


@dataclass(frozen=True)
class UEResult:
    """The uncertainty estimation ensemble's mask, the case's HR and the branch of eq. 5 used."""

    mask: Any
    hr: float | None
    rule: str


@dataclass(frozen=True)
class EnsembleResult:
    """One case's ensemble mask and what produced it."""

    mask: Any
    strategy: str
    n_models: int
    hr: float | None
    rule: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the mask, in plain JSON types, for the case's JSON."""
        return {"strategy": self.strategy, "n_models": self.n_models, "hr": self.hr,
                "rule": self.rule, "params": dict(self.params)}


def mean_ensemble(prob_sum: Any, n_models: int) -> Any:
    """Hemorrhage where the mean probability exceeds 0.5 (a tie goes to background, as argmax)."""
    _check_n_models(n_models)
    return prob_sum / n_models > 0.5


def majority_vote(votes: Any, n_models: int) -> Any:
    """Hemorrhage where more than half of the models vote for it."""
    _check_n_models(n_models)
    return votes > n_models // 2  # for whole n, n > C/2 exactly when n > ⌊C/2⌋


def half_ratio(votes: Any, n_models: int, reading: str = "printed") -> float | None:
    """Li & Chen's HR (eq. 4): a share of the voxels any model marks; None if none does.

    The numerator counts marked voxels only, so a single model (⌊C/2⌋ = 0) has HR 0 as printed.
    """
    _check_n_models(n_models)
    if reading not in READINGS:
        raise EnsembleError(f"unknown HR reading {reading!r} (choose from {', '.join(READINGS)})")
    marked = int((votes != 0).sum())
    if marked == 0:
        return None
    if reading == "printed":
        half = n_models // 2
        numerator = int((votes == half).sum()) if half else 0
    else:
        numerator = int((votes >= (n_models + 1) // 2).sum())
    return numerator / marked


def uncertainty_ensemble(votes: Any, n_models: int, *, th: float = 0.5, n1: int = 1,
                         n2: int | None = None, reading: str = "printed") -> UEResult:
    """Li & Chen's eq. 5: ``P(x) = 1`` iff ``(HR < th or n > N1) and (HR > th or n > N2)``.

    So ``n > N1`` when HR > th, ``n > N2`` when HR < th, and both when HR = th.
    ``n2=None`` means ⌊C/2⌋, the paper's N2 = 7 for C = 15.
    """
    n2 = _check_uncertainty_params(n_models, th, n1, n2)
    hr = half_ratio(votes, n_models, reading)
    if hr is None:
        return UEResult(mask=votes != 0, hr=None, rule="empty")  # all False: nobody voted
    if hr > th:
        return UEResult(mask=votes > n1, hr=hr, rule="HR>th: n>N1")
    if hr < th:
        return UEResult(mask=votes > n2, hr=hr, rule="HR<th: n>N2")
    return UEResult(mask=(votes > n1) & (votes > n2), hr=hr, rule="HR=th: n>N1 and n>N2")


def ensemble_mask(strategy: str, accumulator: EnsembleAccumulator, **params: Any) -> EnsembleResult:
    """Apply the named strategy to an accumulated ensemble; ``params`` go to the strategy."""
    if strategy not in STRATEGIES:
        raise EnsembleError(
            f"unknown ensemble strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    allowed = UNCERTAINTY_DEFAULTS if strategy == "uncertainty" else {}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no parameters"
        raise EnsembleError(f"ensemble strategy {strategy!r} has no parameter {unknown[0]!r} "
                            f"(it {takes})")
    n_models = accumulator.n_models
    if n_models == 0:
        raise EnsembleError("the ensemble has no models to combine")
    votes = accumulator.votes
    if strategy == "uncertainty":
        resolved = {**UNCERTAINTY_DEFAULTS, **params}
        resolved["n2"] = _check_uncertainty_params(n_models, resolved["th"], resolved["n1"],
                                                   resolved["n2"])
        result = uncertainty_ensemble(votes, n_models, **resolved)
        return EnsembleResult(result.mask, strategy, n_models, result.hr, result.rule, resolved)
    if strategy == "mean":
        mask, rule = mean_ensemble(accumulator.probability_sum, n_models), "mean>0.5"
    else:
        mask, rule = majority_vote(votes, n_models), "n>C/2"
    return EnsembleResult(mask, strategy, n_models, half_ratio(votes, n_models), rule)


def _check_n_models(n_models: int) -> None:
    if not _is_int(n_models) or n_models < 1:
        raise EnsembleError(f"an ensemble needs at least one model, got {n_models!r}")


def _check_uncertainty_params(n_models: int, th: float, n1: int, n2: int | None) -> int:
    """Validate eq. 5's parameters; return N2 with its default resolved."""
    _check_n_models(n_models)
    if not isinstance(th, Real) or isinstance(th, bool) or not 0.0 <= th <= 1.0:
        raise EnsembleError(f"uncertainty ensemble: th must be a number from 0 to 1, got {th!r}")
    n2 = n_models // 2 if n2 is None else n2
    for name, value in (("N1", n1), ("N2", n2)):
        if not _is_int(value) or not 0 <= value <= n_models:
            raise EnsembleError(f"uncertainty ensemble: {name} must be an integer from 0 to "
                                f"{n_models} (the number of models), got {value!r}")
    return int(n2)


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)
