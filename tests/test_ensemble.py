"""Ensemble accumulation and rules: hand-computed vote maps, nnU-Net parity, bounded memory."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch

from ichseg.ensemble import (
    EnsembleAccumulator,
    EnsembleError,
    ensemble_mask,
    half_ratio,
    majority_vote,
    mean_ensemble,
    uncertainty_ensemble,
)
from ichseg.errors import IchsegError


def votes_of(*counts: int) -> np.ndarray:
    """A vote map shaped like a case, (z, y, x) = (1, 1, len(counts))."""
    return np.array(counts, dtype=np.uint8).reshape(1, 1, -1)


def flat(mask) -> list[bool]:
    return [bool(value) for value in np.asarray(mask).ravel()]


def accumulate(probabilities) -> EnsembleAccumulator:
    accumulator = EnsembleAccumulator(tuple(probabilities[0].shape))
    for probability in probabilities:
        accumulator.add(probability)
    return accumulator


# --- uncertainty estimation ensemble (Li & Chen, eq. 4-5), C = 15 ---

def test_hr_below_th_needs_more_than_n2_votes():
    votes = votes_of(0, 0, 7, 7, 15, 15, 15, 3, 1)
    result = uncertainty_ensemble(votes, 15)
    assert result.hr == pytest.approx(2 / 7)  # two voxels with n = 7 of seven marked voxels
    assert result.rule == "HR<th: n>N2"
    assert flat(result.mask) == [False, False, False, False, True, True, True, False, False]


def test_hr_above_th_needs_more_than_n1_votes():
    votes = votes_of(7, 7, 7, 2, 1, 0)
    result = uncertainty_ensemble(votes, 15)
    assert result.hr == pytest.approx(3 / 5)
    assert result.rule == "HR>th: n>N1"
    assert flat(result.mask) == [True, True, True, True, False, False]


def test_hr_equal_to_th_needs_both_conditions():
    votes = votes_of(7, 7, 15, 9, 0)
    default = uncertainty_ensemble(votes, 15)
    assert default.hr == 0.5
    assert default.rule == "HR=th: n>N1 and n>N2"
    assert flat(default.mask) == [False, False, True, True, False]  # n > 1 and n > 7
    stricter_n1 = uncertainty_ensemble(votes, 15, n1=10)
    assert flat(stricter_n1.mask) == [False, False, True, False, False]  # n > 10 and n > 7


def test_threshold_moves_the_branch():
    votes = votes_of(7, 7, 15, 9, 0)  # HR = 0.5
    assert uncertainty_ensemble(votes, 15, th=0.4).rule == "HR>th: n>N1"
    assert uncertainty_ensemble(votes, 15, th=0.6).rule == "HR<th: n>N2"


def test_majority_reading_counts_voxels_a_majority_marks():
    votes = votes_of(7, 8, 9, 15, 1, 0)
    printed = uncertainty_ensemble(votes, 15)
    assert printed.hr == pytest.approx(1 / 5)  # n = 7 once
    assert flat(printed.mask) == [False, True, True, True, False, False]
    majority = uncertainty_ensemble(votes, 15, reading="majority")
    assert majority.hr == pytest.approx(3 / 5)  # n >= 8 three times
    assert majority.rule == "HR>th: n>N1"
    assert flat(majority.mask) == [True, True, True, True, False, False]


def test_half_ratio_with_odd_and_even_model_counts():
    votes = votes_of(2, 3, 1, 0, 5)
    assert half_ratio(votes, 5) == pytest.approx(1 / 4)  # n = ⌊5/2⌋ = 2
    assert half_ratio(votes, 5, "majority") == pytest.approx(2 / 4)  # n >= ⌈5/2⌉ = 3
    even = votes_of(2, 2, 3, 4, 0)
    assert half_ratio(even, 4) == pytest.approx(2 / 4)
    assert half_ratio(even, 4, "majority") == pytest.approx(4 / 4)
    single = votes_of(1, 0, 1)
    assert half_ratio(single, 1) == 0.0  # ⌊1/2⌋ = 0: unmarked voxels are not counted
    assert half_ratio(single, 1, "majority") == 1.0


def test_empty_case():
    result = uncertainty_ensemble(votes_of(0, 0, 0), 15)
    assert result.hr is None and result.rule == "empty"
    assert not np.asarray(result.mask).any()


def test_n2_defaults_to_half_the_models():
    votes = votes_of(5, 6, 3, 1)  # C = 11: HR = 1 / 4 < th, so n > N2 = ⌊11/2⌋ = 5
    assert flat(uncertainty_ensemble(votes, 11).mask) == [False, True, False, False]
    assert flat(uncertainty_ensemble(votes, 11, n2=2).mask) == [True, True, True, False]


@pytest.mark.parametrize("params", [
    {"n1": 16}, {"n1": -1}, {"n2": 16}, {"n1": 1.5}, {"n1": True}, {"th": 1.5}, {"th": -0.1},
    {"th": float("nan")}, {"th": "0.5"}, {"reading": "other"},
])
def test_bad_uncertainty_parameters(params):
    with pytest.raises(EnsembleError) as error:
        uncertainty_ensemble(votes_of(1, 2), 15, **params)
    assert isinstance(error.value, IchsegError)
    assert "\n" not in str(error.value)


def test_bad_model_count():
    with pytest.raises(EnsembleError):
        majority_vote(votes_of(1), 0)


# --- mean ensemble and votes against nnU-Net's averaging computed with torch ---

@pytest.fixture
def logits() -> torch.Tensor:
    """Seven models' two-class logits for a small case: (model, class, z, y, x)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((7, 2, 6, 20, 24), generator=generator) * 2


def near_ties(mean_probability: torch.Tensor) -> torch.Tensor:
    """Voxels where float rounding may decide a tie either way."""
    return (mean_probability - 0.5).abs() < 1e-6


def test_mean_ensemble_equals_softmax_averaging_then_argmax(logits):
    softmax = torch.softmax(logits, dim=1)
    expected = softmax.mean(dim=0).argmax(dim=0).bool().numpy()
    accumulator = accumulate([p.numpy() for p in softmax[:, 1]])
    mask = mean_ensemble(accumulator.probability_sum, accumulator.n_models)
    differ = mask != expected
    assert differ.sum() <= near_ties(softmax[:, 1].mean(dim=0)).numpy()[differ].sum()
    assert 0.1 < mask.mean() < 0.9  # random logits: both classes are present


def test_votes_count_models_whose_argmax_is_hemorrhage(logits):
    softmax = torch.softmax(logits, dim=1)
    expected = (softmax.argmax(dim=1) == 1).sum(dim=0).numpy()
    votes = accumulate([p.numpy() for p in softmax[:, 1]]).votes
    assert votes.dtype == np.uint8
    differ = votes != expected
    assert differ.sum() <= near_ties(softmax[:, 1]).any(dim=0).numpy()[differ].sum()
    assert set(np.unique(votes)) == set(range(8))
    assert np.array_equal(majority_vote(votes, 7), votes >= 4)


def test_a_tie_goes_to_background():
    accumulator = accumulate([np.full((1, 1, 2), 0.5, np.float32)] * 3)
    assert not accumulator.votes.any()
    assert not mean_ensemble(accumulator.probability_sum, 3).any()


def test_accumulator_sum_and_mean():
    probabilities = [np.array([[[0.2, 0.9, 0.6]]]), np.array([[[0.4, 0.7, 0.1]]])]
    accumulator = accumulate(probabilities)
    assert accumulator.n_models == 2
    assert accumulator.probability_sum.dtype == np.float32
    np.testing.assert_allclose(accumulator.probability_sum, [[[0.6, 1.6, 0.7]]], rtol=1e-6)
    np.testing.assert_allclose(accumulator.mean_probability(), [[[0.3, 0.8, 0.35]]], rtol=1e-6)
    assert flat(accumulator.votes) == [False, True, True]
    assert accumulator.votes.ravel().tolist() == [0, 2, 1]


def test_torch_tensors_accumulate_like_numpy_arrays(logits):
    probabilities = torch.softmax(logits, dim=1)[:, 1]
    on_numpy = accumulate([p.numpy() for p in probabilities])
    on_torch = accumulate(list(probabilities))
    assert isinstance(on_torch.votes, torch.Tensor) and on_torch.votes.dtype == torch.uint8
    assert on_torch.probability_sum.dtype == torch.float32
    assert np.array_equal(on_torch.votes.numpy(), on_numpy.votes)
    np.testing.assert_array_equal(on_torch.probability_sum.numpy(), on_numpy.probability_sum)
    for strategy in ("mean", "vote", "uncertainty"):
        torch_result = ensemble_mask(strategy, on_torch)
        numpy_result = ensemble_mask(strategy, on_numpy)
        assert isinstance(torch_result.mask, torch.Tensor)
        assert np.array_equal(torch_result.mask.numpy(), numpy_result.mask)
        assert torch_result.as_dict() == numpy_result.as_dict()


def test_accumulator_refuses_mixed_inputs():
    accumulator = EnsembleAccumulator((1, 2, 2))
    accumulator.add(np.zeros((1, 2, 2)))
    with pytest.raises(TypeError):
        accumulator.add(torch.zeros((1, 2, 2)))
    with pytest.raises(ValueError):
        accumulator.add(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError):
        _ = EnsembleAccumulator((1, 2, 2)).votes


def peak_memory_accumulating(n_models: int, shape=(32, 64, 64)) -> int:
    def probabilities():
        rng = np.random.default_rng(0)
        for _ in range(n_models):
            yield rng.random(shape, dtype=np.float32)

    tracemalloc.start()
    try:
        accumulator = EnsembleAccumulator(shape)
        for probability in probabilities():
            accumulator.add(probability)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert accumulator.n_models == n_models
    return peak


def test_memory_does_not_grow_with_the_number_of_models():
    peak_memory_accumulating(2)  # the first run also holds numpy's one-time allocations
    few, many = peak_memory_accumulating(5), peak_memory_accumulating(40)
    buffers = 32 * 64 * 64 * (4 + 1)  # float32 sum + uint8 votes
    assert few > buffers  # numpy's allocations are traced, so the comparison means something
    assert abs(many - few) < 0.05 * few


# --- the engine's entry point ---

def test_ensemble_mask_dispatches_and_reports():
    accumulator = accumulate([np.array([[[0.9, 0.6, 0.2, 0.0]]])] * 2
                             + [np.array([[[0.9, 0.1, 0.7, 0.0]]])])
    # votes: 3, 2, 1, 0; mean: 0.9, 0.433, 0.367, 0
    mean = ensemble_mask("mean", accumulator)
    assert flat(mean.mask) == [True, False, False, False]
    vote = ensemble_mask("vote", accumulator)
    assert flat(vote.mask) == [True, True, False, False]
    assert vote.hr == pytest.approx(1 / 3)  # HR as printed: n = ⌊3/2⌋ = 1 once of three
    uncertainty = ensemble_mask("uncertainty", accumulator, n1=0)
    assert uncertainty.rule == "HR<th: n>N2"
    assert flat(uncertainty.mask) == [True, True, False, False]
    record = json.loads(json.dumps(uncertainty.as_dict()))
    assert record == {"strategy": "uncertainty", "n_models": 3, "hr": pytest.approx(1 / 3),
                      "rule": "HR<th: n>N2",
                      "params": {"th": 0.5, "n1": 0, "n2": 1, "reading": "printed"}}
    assert mean.as_dict()["params"] == {}


@pytest.mark.parametrize("strategy, params, names", [
    ("median", {}, "median"),
    ("mean", {"th": 0.5}, "'th'"),
    ("uncertainty", {"N1": 1}, "'N1'"),
])
def test_ensemble_mask_rejects_unknown_names(strategy, params, names):
    accumulator = accumulate([np.zeros((1, 1, 2))])
    with pytest.raises(EnsembleError, match=names) as error:
        ensemble_mask(strategy, accumulator, **params)
    assert "\n" not in str(error.value)


def test_ensemble_mask_needs_models():
    with pytest.raises(EnsembleError):
        ensemble_mask("mean", EnsembleAccumulator((1, 1, 1)))
