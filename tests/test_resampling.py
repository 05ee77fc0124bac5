"""The torch port of nnU-Net's export resampling against nnU-Net's own function, on real CT geometry.

Each case resamples random logits between two spacings the way a prediction returns from the
plans' spacing to the case's, and compares with ``resample_data_or_seg_to_shape`` called with the
kwargs CT plans carry (``order=1, order_z=0, force_separate_z=None``) and with variations of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.preprocessing.resampling.default_resampling import (
    compute_new_shape,
    determine_do_sep_z_and_axis,
    resample_data_or_seg_to_shape,
)

from ichseg.engine import resampling
from ichseg.engine.resampling import ExportResampling, resample_logits

CT_KWARGS = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
CT_EXPORT = ExportResampling("resample_data_or_seg_to_shape", CT_KWARGS)

#: (prediction spacing, case spacing, case shape after cropping), (z, y, x) in mm.
GEOMETRIES = [
    ((5.0, 0.45, 0.45), (5.0, 0.6, 0.6), (6, 40, 44)),        # INSTANCE-like, separate z, slices kept
    ((5.0, 0.6, 0.6), (5.0, 0.45, 0.45), (6, 53, 50)),        # the other way
    ((4.5, 0.42, 0.42), (9.4, 3.6, 3.6), (5, 9, 11)),         # separate z, slices resampled (down)
    ((9.4, 3.6, 3.6), (4.5, 0.42, 0.42), (11, 60, 64)),       # separate z, slices resampled (up)
    ((2.5, 0.5, 0.5), (5.0, 0.5, 0.5), (4, 20, 24)),          # slice scale 2: nnU-Net's halves round up
    ((1.0, 1.0, 1.0), (1.2, 0.8, 0.8), (10, 25, 27)),         # isotropic: all axes linear
    ((1.2, 0.8, 0.8), (1.0, 1.0, 1.0), (12, 19, 21)),
    ((0.24, 1.25, 1.25), (0.3, 1.0, 1.0), (20, 13, 15)),      # two axes tie for largest: not separate
    ((0.8, 0.8, 3.0), (0.8, 0.8, 4.0), (14, 15, 8)),          # anisotropic axis last
]


def _logits(shape: tuple[int, ...], channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3.0, (channels, *shape)).astype(np.float32)


def _prediction_shape(case_shape, prediction_spacing, case_spacing) -> tuple[int, ...]:
    return tuple(int(s) for s in compute_new_shape(case_shape, case_spacing, prediction_spacing))


@pytest.mark.parametrize("channels", [2, 3])
@pytest.mark.parametrize(("prediction_spacing", "case_spacing", "case_shape"), GEOMETRIES)
def test_port_equals_nnunets_export_resampling(prediction_spacing, case_spacing, case_shape, channels):
    logits = _logits(_prediction_shape(case_shape, prediction_spacing, case_spacing), channels, seed=len(case_shape))
    expected = resample_data_or_seg_to_shape(logits, case_shape, prediction_spacing, case_spacing, **CT_KWARGS)
    ported = resample_logits(torch.from_numpy(logits), case_shape, prediction_spacing, case_spacing, CT_EXPORT)
    assert tuple(ported.shape) == (channels, *case_shape)
    assert ported.dtype == torch.float32 and np.abs(ported.numpy() - expected).max() < 1e-4
    probabilities = torch.softmax(ported, 0).numpy()
    expected_probabilities = torch.softmax(torch.from_numpy(expected), 0).numpy()
    assert np.abs(probabilities - expected_probabilities).max() < 1e-4
    differ = probabilities.argmax(0) != expected_probabilities.argmax(0)
    if channels == 2:  # a mask may differ only where nnU-Net's own probability is a coin toss
        assert np.all(np.abs(expected_probabilities[1][differ] - 0.5) < 1e-4)
    else:
        assert not differ.any()


@pytest.mark.parametrize(("prediction_spacing", "case_spacing", "case_shape"), GEOMETRIES)
def test_float64_and_float16_results_are_nnunets_to_the_last_bit(prediction_spacing, case_spacing, case_shape):
    """nnU-Net resamples in float64 and stores the result in the logits' dtype (float16 from its
    sliding window); with decided logits one float16 step is up to 1e-3 in probability, so the
    port reproduces scipy's arithmetic and numpy's single rounding exactly."""
    logits = _logits(_prediction_shape(case_shape, prediction_spacing, case_spacing), 2, seed=7) * 10
    for dtype in (np.float64, np.float16):
        typed = logits.astype(dtype)
        expected = resample_data_or_seg_to_shape(typed, case_shape, prediction_spacing, case_spacing, **CT_KWARGS)
        ported = resample_logits(torch.from_numpy(typed), case_shape, prediction_spacing, case_spacing, CT_EXPORT)
        assert ported.numpy().dtype == expected.dtype
        assert np.array_equal(ported.numpy(), expected), dtype


def test_float16_rounding_is_numpys_single_rounding():
    """Next to a float16 tie, torch's float64 → float16 (through float32) rounds twice."""
    rng = np.random.default_rng(0)
    halves = rng.normal(0, 20, 20000).astype(np.float16)
    ties = (halves.astype(np.float64) + np.nextafter(halves, np.float16(np.inf)).astype(np.float64)) / 2
    values = np.concatenate([ties, ties * (1 + 1e-12), ties * (1 - 1e-12), rng.normal(0, 1e-6, 1000), [0.0, 1e6]])
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    as_tensor = torch.from_numpy(values)
    ported = resampling._to_float16(as_tensor, lambda where: as_tensor[where]).numpy()
    assert np.array_equal(ported.view(np.uint16), expected.view(np.uint16))
    assert not np.array_equal(torch.from_numpy(values).to(torch.float16).numpy().view(np.uint16),
                              expected.view(np.uint16))


def test_the_geometries_cover_both_branches_and_both_directions():
    decisions = [determine_do_sep_z_and_axis(None, p, c)[0] for p, c, _ in GEOMETRIES]
    assert any(decisions) and not all(decisions)
    resampled_slices = [p[0] != c[0] for p, c, _ in GEOMETRIES if determine_do_sep_z_and_axis(None, p, c)[0]]
    assert any(resampled_slices)


def test_plain_trilinear_would_not_be_equal():
    """The reason for the port: interpolating the slice axis linearly gives other values."""
    prediction_spacing, case_spacing, case_shape = GEOMETRIES[3]
    logits = _logits(_prediction_shape(case_shape, prediction_spacing, case_spacing), 2, seed=1)
    expected = resample_data_or_seg_to_shape(logits, case_shape, prediction_spacing, case_spacing, **CT_KWARGS)
    trilinear = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=case_shape, mode="trilinear")[0]
    assert np.abs(trilinear.numpy() - expected).max() > 0.1


@pytest.mark.parametrize("kwargs", [
    {"force_separate_z": True},
    {"force_separate_z": False},
    {"order_z": 1},
    {"order_z": 1, "force_separate_z": True},
    {"separate_z_anisotropy_threshold": 10.0},
])
def test_port_follows_the_configurations_kwargs(kwargs):
    options = {**CT_KWARGS, **kwargs}
    prediction_spacing, case_spacing, case_shape = GEOMETRIES[2]
    logits = _logits(_prediction_shape(case_shape, prediction_spacing, case_spacing), 2, seed=3)
    expected = resample_data_or_seg_to_shape(logits, case_shape, prediction_spacing, case_spacing, **options)
    ported = resample_logits(torch.from_numpy(logits.astype(np.float64)), case_shape, prediction_spacing,
                             case_spacing, ExportResampling("resample_data_or_seg_to_shape", options))
    assert np.array_equal(ported.numpy(), resample_data_or_seg_to_shape(
        logits.astype(np.float64), case_shape, prediction_spacing, case_spacing, **options))
    assert np.abs(ported.numpy() - expected).max() < 1e-4


def test_what_the_port_does_not_cover_goes_to_nnunets_function_and_is_counted():
    options = {**CT_KWARGS, "order": 3}
    export = ExportResampling("resample_data_or_seg_to_shape", options)
    assert not export.ported
    prediction_spacing, case_spacing, case_shape = GEOMETRIES[0]
    logits = _logits(_prediction_shape(case_shape, prediction_spacing, case_spacing), 2, seed=4)
    before = resampling.fallback_count
    ported = resample_logits(torch.from_numpy(logits), case_shape, prediction_spacing, case_spacing, export)
    assert resampling.fallback_count == before + 1
    expected = resample_data_or_seg_to_shape(logits, case_shape, prediction_spacing, case_spacing, **options)
    np.testing.assert_allclose(ported.numpy(), expected, atol=1e-5)
