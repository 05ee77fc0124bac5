"""Combine several models' predictions into one mask: mean, majority vote, uncertainty ensemble."""

from ichseg.ensemble.accumulator import EnsembleAccumulator
from ichseg.ensemble.rules import (
    READINGS,
    STRATEGIES,
    EnsembleError,
    EnsembleResult,
    UEResult,
    ensemble_mask,
    half_ratio,
    majority_vote,
    mean_ensemble,
    uncertainty_ensemble,
)

__all__ = [
    "READINGS",
    "STRATEGIES",
    "EnsembleAccumulator",
    "EnsembleError",
    "EnsembleResult",
    "UEResult",
    "ensemble_mask",
    "half_ratio",
    "majority_vote",
    "mean_ensemble",
    "uncertainty_ensemble",
]
