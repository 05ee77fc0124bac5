"""CT windowing: keep the HU range a reader would look at and clip everything else to its ends."""

from __future__ import annotations

import numpy as np


def window_bounds(level: float, width: float) -> tuple[float, float]:
    """The HU interval ``[level - width/2, level + width/2]`` of a window."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return level - width / 2.0, level + width / 2.0


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Clip HU values to the window (Liangwei: level 96, width 59), as float32.

    Values are clipped, not rescaled: nnU-Net's CT normalisation z-scores the result afterwards.
    """
    low, high = window_bounds(level, width)
    return np.clip(np.asarray(hu, dtype=np.float32), low, high)
