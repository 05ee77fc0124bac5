"""Combine several models' predictions into one mask (or label map, with several hemorrhage classes):
mean, majority vote, uncertainty ensemble."""

from ichseg.ensemble.rules import (
    READINGS,
    STRATEGIES,
    EnsembleError,
    EnsembleResult,
    UEResult,
    ensemble_mask,
    half_ratio,
    majority_vote,
    mean_class_map,
    mean_ensemble,
    uncertainty_class_map,
    uncertainty_ensemble,
    vote_class_map,
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
    "mean_class_map",
    "mean_ensemble",
    "uncertainty_class_map",
    "uncertainty_ensemble",
    "vote_class_map",
]


def __getattr__(name: str):
    """The accumulator loads numpy, so it is imported only when asked for: the command line
    reads the strategy names at every start."""
    if name == "EnsembleAccumulator":
        from ichseg.ensemble.accumulator import EnsembleAccumulator

        return EnsembleAccumulator
    raise AttributeError(f"module 'ichseg.ensemble' has no attribute {name!r}")
