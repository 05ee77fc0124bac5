"""Combine several models' predictions into one mask: mean, majority vote, uncertainty ensemble."""

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


def __getattr__(name: str):
    """The accumulator loads numpy, so it is imported only when asked for: the command line
    reads the strategy names at every start."""
    if name == "EnsembleAccumulator":
        from ichseg.ensemble.accumulator import EnsembleAccumulator

        return EnsembleAccumulator
    raise AttributeError(f"module 'ichseg.ensemble' has no attribute {name!r}")
