"""Ensemble rules: turn an ensemble's probability sum or vote counts into one hemorrhage mask.

Three strategies:

- ``mean``: mean probability > 0.5, which for two classes is nnU-Net's ensembling
  (``nnUNetv2_ensemble`` averages the softmax outputs, then takes the argmax);
- ``vote``: a strict majority of the models, ``n(x) > C/2``;
- ``uncertainty``: Li & Chen's uncertainty estimation ensemble (INSTANCE 2022, eq. 4-5), which
  picks the number of votes a voxel needs from the case's half ratio (HR).

Every function works on numpy arrays and on torch tensors alike and returns a boolean mask of
the same library. HR is reported for every strategy, as the case's uncertainty measure.

With several hemorrhage classes (K classes, background included) each strategy gives a uint8
label map instead (DESIGN §15):

- ``mean``: the argmax of the mean class probabilities (``nnUNetv2_ensemble``'s rule);
- ``vote``: the class most models chose; a tie goes to the class of higher mean probability,
  then to the lower class value;
- ``uncertainty``: Li & Chen's rule on the "any hemorrhage" votes decides where there is
  hemorrhage (the binary rule and HR unchanged); each voxel inside takes the hemorrhage class
  (1..K-1) of highest mean probability, a tie going to the lower value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """The uncertainty estimation ensemble's mask (a label map with several hemorrhage classes),
    the case's HR and the branch of eq. 5 used."""

    mask: Any
    hr: float | None
    rule: str


@dataclass(frozen=True)
class EnsembleResult:
    """One case's ensemble mask (boolean; a uint8 label map with several hemorrhage classes)
    and what produced it."""

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


def mean_class_map(class_sums: Any, n_models: int) -> Any:
    """The class of highest mean probability (``class_sums`` holds each class's probability sum
    along the first axis); a tie goes to the lower class value, as argmax."""
    _check_n_models(n_models)
    return _best_class(class_sums, n_models, range(len(class_sums)))


def vote_class_map(class_votes: Sequence[Any], class_sums: Any, n_models: int) -> Any:
    """The class most models chose (``class_votes[k]``: the models whose argmax is class k,
    background included); a tie goes to the class of higher mean probability, then the lower value."""
    _check_n_models(n_models)
    return _best_class(class_sums, n_models, range(len(class_sums)), class_votes)


def uncertainty_class_map(votes: Any, class_sums: Any, n_models: int, *, th: float = 0.5,
                          n1: int = 1, n2: int | None = None, reading: str = "printed") -> UEResult:
    """Li & Chen's eq. 5 on the "any hemorrhage" ``votes`` (:func:`uncertainty_ensemble`, same
    parameters) decides where; each voxel there takes the hemorrhage class of highest mean
    probability (a tie to the lower value)."""
    where = uncertainty_ensemble(votes, n_models, th=th, n1=n1, n2=n2, reading=reading)
    labels = _best_class(class_sums, n_models, range(1, len(class_sums)))
    labels[~where.mask] = 0
    return UEResult(mask=labels, hr=where.hr, rule=where.rule)


def _best_class(class_sums: Any, n_models: int, values: Sequence[int],
                class_votes: Sequence[Any] | None = None) -> Any:
    """Per voxel, the value among ``values`` with the most votes (when given), then the highest
    mean probability, then the lowest value. One pass per class keeps the memory at a few maps
    whatever the number of classes."""
    from ichseg.ensemble.accumulator import array_namespace

    xp = array_namespace(class_sums)
    first, *others = values
    labels = xp.full(tuple(class_sums.shape[1:]), first, dtype=xp.uint8, device=class_sums.device)
    best_mean = class_sums[first] / n_models
    best_votes = None if class_votes is None else class_votes[first]
    for value in others:
        mean = class_sums[value] / n_models
        better = mean > best_mean
        if class_votes is not None:
            votes = class_votes[value]
            better = (votes > best_votes) | ((votes == best_votes) & better)
            best_votes = xp.where(better, votes, best_votes)
        labels[better] = value
        best_mean = xp.where(better, mean, best_mean)
    return labels


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
        if accumulator.is_multiclass:
            result = uncertainty_class_map(votes, accumulator.probability_sum, n_models, **resolved)
        else:
            result = uncertainty_ensemble(votes, n_models, **resolved)
        return EnsembleResult(result.mask, strategy, n_models, result.hr, result.rule, resolved)
    mask, rule = (_class_rule if accumulator.is_multiclass else _binary_rule)(strategy, accumulator)
    return EnsembleResult(mask, strategy, n_models, half_ratio(votes, n_models), rule)


def _binary_rule(strategy: str, accumulator: EnsembleAccumulator) -> tuple[Any, str]:
    if strategy == "mean":
        return mean_ensemble(accumulator.probability_sum, accumulator.n_models), "mean>0.5"
    return majority_vote(accumulator.votes, accumulator.n_models), "n>C/2"


def _class_rule(strategy: str, accumulator: EnsembleAccumulator) -> tuple[Any, str]:
    sums, n_models = accumulator.probability_sum, accumulator.n_models
    if strategy == "mean":
        return mean_class_map(sums, n_models), "argmax of the mean"
    class_votes = [accumulator.class_votes(value) for value in range(accumulator.n_classes)]
    return vote_class_map(class_votes, sums, n_models), "most votes, then the higher mean"


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
