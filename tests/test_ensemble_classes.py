"""Ensembles of several hemorrhage classes against a plain-numpy implementation written here.

The reference loops over the models, keeps every probability map and decides each rule with
whole-array argmaxes; it shares no code with :mod:`ichseg.ensemble`. Probabilities are Dirichlet
draws rounded to multiples of 2^-10 (every sum and mean is then exact in float32 and float64, so
the two must agree voxel for voxel) or of 1/4 (many ties: within a model's argmax, in the vote
counts and in the mean probabilities).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from ichseg.ensemble import (
    EnsembleAccumulator,
    ensemble_mask,
    majority_vote,
    mean_ensemble,
    uncertainty_ensemble,
)

SHAPE = (3, 9, 11)


def dirichlet_probabilities(seed: int, n_models: int, n_classes: int, step: float) -> np.ndarray:
    """(model, class, z, y, x) probabilities, rounded to multiples of ``step``."""
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.full(n_classes, 0.7), size=(n_models, *SHAPE))
    return np.moveaxis(np.round(draws / step) * step, -1, 1)


def reference_ensemble(probabilities: np.ndarray, strategy: str, th: float = 0.5, n1: int = 1,
                       n2: int | None = None, reading: str = "printed"
                       ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Label map, "any hemorrhage" votes and HR, from every model's map (float64)."""
    n_models, n_classes = probabilities.shape[:2]
    chosen = np.zeros((n_classes, *SHAPE), dtype=np.int64)
    total = np.zeros((n_classes, *SHAPE))
    for model in probabilities:
        total += model
        choice = np.argmax(model, axis=0)
        for value in range(n_classes):
            chosen[value] += choice == value
    mean = total / n_models
    votes = n_models - chosen[0]
    marked = np.count_nonzero(votes)
    if reading == "printed":
        numerator = np.count_nonzero((votes == n_models // 2) & (votes > 0))
    else:
        numerator = np.count_nonzero(votes >= -(-n_models // 2))
    hr = numerator / marked if marked else None
    if strategy == "mean":
        labels = np.argmax(mean, axis=0)
    elif strategy == "vote":
        most = chosen == chosen.max(axis=0)
        labels = np.argmax(np.where(most, mean, -1.0), axis=0)
    else:
        n2 = n_models // 2 if n2 is None else n2
        hr_value = -1.0 if hr is None else hr  # no votes: n > N is false everywhere anyway
        where = ((hr_value < th) | (votes > n1)) & ((hr_value > th) | (votes > n2)) & (votes > 0)
        labels = np.where(where, 1 + np.argmax(mean[1:], axis=0), 0)
    return labels.astype(np.uint8), votes, hr


def accumulate(probabilities, n_classes: int) -> EnsembleAccumulator:
    accumulator = EnsembleAccumulator(tuple(probabilities[0].shape[1:]), n_classes=n_classes)
    for model in probabilities:
        accumulator.add(model)
    return accumulator


CASES = [(n_models, n_classes, step) for n_models in (1, 2, 4, 5, 15) for n_classes in (3, 4, 6)
         for step in (2.0 ** -10, 0.25)]


@pytest.mark.parametrize("n_models, n_classes, step", CASES)
@pytest.mark.parametrize("strategy, params", [
    ("mean", {}), ("vote", {}), ("uncertainty", {}), ("uncertainty", {"reading": "majority"}),
    ("uncertainty", {"n1": 0, "th": 0.2}), ("uncertainty", {"n2": 1, "th": 0.9}),
])
def test_rules_equal_the_reference(n_models, n_classes, step, strategy, params):
    probabilities = dirichlet_probabilities(n_models * 100 + n_classes, n_models, n_classes, step)
    accumulator = accumulate(probabilities, n_classes)
    result = ensemble_mask(strategy, accumulator, **params)
    labels, votes, hr = reference_ensemble(probabilities, strategy, **params)
    assert result.mask.dtype == np.uint8
    np.testing.assert_array_equal(result.mask, labels)
    np.testing.assert_array_equal(accumulator.votes, votes)
    assert result.hr == hr


def test_the_coarse_draws_contain_every_kind_of_tie():
    """What the step-1/4 cases exercise: ties in a model's argmax, and in the vote counts, broken
    by the mean or, where the means tie too, by the lower value."""
    probabilities = dirichlet_probabilities(4 * 100 + 4, 4, 4, 0.25)
    ordered = np.sort(probabilities, axis=1)
    assert np.any(ordered[:, -1] == ordered[:, -2])
    chosen = np.stack([(probabilities.argmax(axis=1) == k).sum(axis=0) for k in range(4)])
    most = chosen == chosen.max(axis=0)
    vote_ties = most.sum(axis=0) > 1
    means_of_most = np.where(most, probabilities.mean(axis=0), -1.0)
    mean_ties = (means_of_most == means_of_most.max(axis=0)).sum(axis=0) > 1
    assert (vote_ties & ~mean_ties).any() and (vote_ties & mean_ties).any()


def test_hand_computed_three_models_three_classes():
    """One voxel per situation: (background, class 1, class 2) probabilities of three models."""
    models = np.array([
        #  voxel:  a: 2-1 vote         b: votes and means tie  c: argmax tie         d: votes vs mean
        [[0.1, 0.6, 0.3], [0.25, 0.5, 0.25], [0.375, 0.375, 0.25], [0.0, 0.55, 0.45]],
        [[0.1, 0.6, 0.3], [0.25, 0.25, 0.5], [0.375, 0.375, 0.25], [0.0, 0.55, 0.45]],
        [[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.375, 0.375, 0.25], [0.0, 0.0, 1.0]],
    ], dtype=np.float32).transpose(0, 2, 1).reshape(3, 3, 1, 1, 4)
    accumulator = accumulate(models, 3)
    # a: votes 0/2/1, means .1/.467/.433; b: votes 1/1/1, means 1/3 each, so the lowest value;
    # c: every model's argmax is 0 (0.375 = 0.375, the lower wins); d: votes 0/2/1, means
    # 0/.367/.633
    assert accumulator.votes.ravel().tolist() == [3, 2, 0, 3]
    assert ensemble_mask("vote", accumulator).mask.ravel().tolist() == [1, 0, 0, 1]
    assert ensemble_mask("mean", accumulator).mask.ravel().tolist() == [1, 0, 0, 2]
    uncertainty = ensemble_mask("uncertainty", accumulator)
    assert uncertainty.hr == 0.0  # no voxel has n = ⌊3/2⌋ = 1
    assert uncertainty.rule == "HR<th: n>N2"
    # n > 1 at a, b and d; there, the hemorrhage class of highest mean (b: a tie, so 1)
    assert uncertainty.mask.ravel().tolist() == [1, 1, 0, 2]


@pytest.mark.parametrize("n_models", [1, 3, 6])
def test_two_classes_as_class_probabilities_give_the_one_class_rules(n_models):
    """The reference for K = 2 is today's one-class path: same votes, HR and masks (the vote's
    tie-break by the mean aside, which only an even number of models can reach)."""
    probabilities = dirichlet_probabilities(n_models, n_models, 2, 2.0 ** -10)
    accumulator = EnsembleAccumulator(SHAPE)
    for model in probabilities:
        accumulator.add(model[1])
    for strategy in ("mean", "uncertainty", "vote"):
        labels, votes, hr = reference_ensemble(probabilities, strategy)
        result = ensemble_mask(strategy, accumulator)
        np.testing.assert_array_equal(accumulator.votes, votes)
        assert result.mask.dtype == bool and result.hr == hr
        if strategy != "vote" or n_models % 2:
            np.testing.assert_array_equal(result.mask, labels == 1)
    assert np.array_equal(ensemble_mask("mean", accumulator).mask,
                          mean_ensemble(accumulator.probability_sum, n_models))
    assert np.array_equal(ensemble_mask("vote", accumulator).mask,
                          majority_vote(accumulator.votes, n_models))
    assert np.array_equal(ensemble_mask("uncertainty", accumulator).mask,
                          uncertainty_ensemble(accumulator.votes, n_models).mask)


def test_torch_tensors_give_the_numpy_label_maps():
    probabilities = dirichlet_probabilities(7, 5, 6, 0.25)
    on_numpy = accumulate(probabilities.astype(np.float32), 6)
    on_torch = accumulate(torch.from_numpy(probabilities.astype(np.float32)), 6)
    assert on_torch.probability_sum.dtype == torch.float32 and on_torch.votes.dtype == torch.uint8
    for value in range(6):
        np.testing.assert_array_equal(on_torch.class_votes(value).numpy(),
                                      on_numpy.class_votes(value))
    for strategy in ("mean", "vote", "uncertainty"):
        torch_result, numpy_result = (ensemble_mask(strategy, a) for a in (on_torch, on_numpy))
        assert isinstance(torch_result.mask, torch.Tensor) and torch_result.mask.dtype == torch.uint8
        np.testing.assert_array_equal(torch_result.mask.numpy(), numpy_result.mask)
        assert torch_result.as_dict() == numpy_result.as_dict()


def test_class_votes_add_up_to_the_models():
    probabilities = dirichlet_probabilities(3, 9, 5, 2.0 ** -10)
    accumulator = accumulate(probabilities, 5)
    total = sum(accumulator.class_votes(value).astype(int) for value in range(5))
    assert np.all(total == 9)
    np.testing.assert_array_equal(accumulator.votes, 9 - accumulator.class_votes(0))


def test_accumulator_checks_the_class_axis():
    accumulator = EnsembleAccumulator(SHAPE, n_classes=4)
    with pytest.raises(ValueError, match="expecting"):
        accumulator.add(np.zeros(SHAPE))
    with pytest.raises(ValueError, match="expecting"):
        accumulator.add(np.zeros((3, *SHAPE)))
    for bad in (1, 256, 2.0, True):
        with pytest.raises(ValueError, match="classes"):
            EnsembleAccumulator(SHAPE, n_classes=bad)


def peak_memory(n_models: int, n_classes: int, shape=(16, 64, 64)) -> int:
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        accumulator = EnsembleAccumulator(shape, n_classes=n_classes)
        for _ in range(n_models):
            accumulator.add(rng.random((n_classes, *shape), dtype=np.float32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_the_number_of_models():
    peak_memory(2, 6)  # numpy's one-time allocations
    few, many = peak_memory(4, 6), peak_memory(30, 6)
    buffers = 16 * 64 * 64 * 5 * 6  # per class: float32 sum + uint8 count
    assert few > buffers
    assert abs(many - few) < 0.05 * few
