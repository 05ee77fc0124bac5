"""Windowing and slice padding: pure functions, exact inverses, geometry kept."""

import numpy as np
import pytest

from ichseg.errors import RecipeError
from ichseg.io.image import CTImage
from ichseg.preprocessing import CTPreprocessing, apply_window, pad_slices, unpad_slices


def test_window_clips_to_level_plus_minus_half_width():
    hu = np.array([-1000, 0, 66.5, 70, 96, 125.5, 200, 1500], dtype=np.float32)
    out = apply_window(hu, level=96, width=59)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [66.5, 66.5, 66.5, 70, 96, 125.5, 125.5, 125.5])


def test_pad_then_unpad_is_identity_and_edges_repeat():
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1000, (5, 4, 3)).astype(np.int16)
    padded = pad_slices(volume, 1)
    assert padded.shape == (7, 4, 3)
    np.testing.assert_array_equal(padded[0], volume[0])
    np.testing.assert_array_equal(padded[-1], volume[-1])
    np.testing.assert_array_equal(unpad_slices(padded, 1), volume)
    assert pad_slices(volume, 0) is volume
    with pytest.raises(ValueError):
        unpad_slices(volume[:2], 1)


def test_padding_moves_origin_one_slice_along_the_slice_direction():
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rotated in-plane, slices running downwards
    image = CTImage(np.zeros((4, 3, 3), np.int16), spacing=(5.0, 0.5, 0.5), origin=(10.0, 20.0, 30.0),
                    direction=direction)
    step = CTPreprocessing(window_level=96, window_width=59, pad_slices=1)
    padded = step.apply(image)
    assert padded.shape == (6, 3, 3)
    # Slice 1 of the padded image sits where slice 0 of the input was.
    physical = np.asarray(padded.to_sitk().TransformIndexToPhysicalPoint((0, 0, 1)))
    np.testing.assert_allclose(physical, image.origin)
    assert padded.array.min() == pytest.approx(66.5)
    np.testing.assert_array_equal(step.revert_array(padded.array), np.full((4, 3, 3), 66.5, np.float32))


def test_labels_are_padded_but_not_windowed():
    label = CTImage(np.ones((3, 2, 2), np.uint8), spacing=(5.0, 1.0, 1.0))
    out = CTPreprocessing(window_level=96, window_width=59, pad_slices=1).apply(label, is_label=True)
    assert out.array.dtype == np.uint8 and out.shape == (5, 2, 2) and out.array.max() == 1


def test_round_trip_through_dict_and_validation():
    step = CTPreprocessing(window_level=96, window_width=59, pad_slices=1)
    assert CTPreprocessing.from_dict(step.to_dict()) == step
    assert step.slug == "w59l96-pad1"
    assert CTPreprocessing().is_identity
    with pytest.raises(RecipeError):
        CTPreprocessing.from_dict({"window": {"level": 40}})
    with pytest.raises(RecipeError):
        CTPreprocessing.from_dict({"pad_slices": -1})
    with pytest.raises(RecipeError):
        CTPreprocessing.from_dict({"clip": True})
