"""One-slice outward padding on the slice axis (Liangwei) and its exact inverse.

Edge slices are repeated so that the network sees the first and last real slices in a full 3D
context; the padded slices are removed again before a mask is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

#: A stack of slices: a volume read with numpy, or a network's probabilities as a torch tensor.
Slices = TypeVar("Slices", np.ndarray, "torch.Tensor")


def pad_slices(array: np.ndarray, n: int) -> np.ndarray:
    """Repeat the first and last slice (axis 0) ``n`` times each."""
    if n < 0:
        raise ValueError(f"padding must be >= 0, got {n}")
    if n == 0:
        return array
    return np.pad(array, [(n, n)] + [(0, 0)] * (array.ndim - 1), mode="edge")


def unpad_slices(array: Slices, n: int) -> Slices:
    """Remove ``n`` slices from each end of axis 0 (the inverse of :func:`pad_slices`)."""
    if n < 0:
        raise ValueError(f"padding must be >= 0, got {n}")
    if n == 0:
        return array
    if array.shape[0] <= 2 * n:
        raise ValueError(f"cannot remove {n} slices from each end of {array.shape[0]} slices")
    return array[n:-n]
