"""Small hand-built CT volumes shared by several test modules."""

from __future__ import annotations

import numpy as np

from ichseg.io.image import CTImage


def head_phantom(seed: int = 0, shape: tuple[int, int, int] = (7, 40, 48),
                 spacing: tuple[float, float, float] = (5.0, 0.45, 0.5),
                 direction: tuple[float, ...] | None = None) -> CTImage:
    """Skull, brain and a blood blob in whole HU, with noise; z axis tilted 20° in-plane."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    radius = np.sqrt(0.6 * z**2 + y**2 + x**2)
    hu = np.full(shape, -1000.0)
    hu[radius < 0.95] = 800.0
    hu[radius < 0.85] = 32.0
    hu[(x - 0.3) ** 2 + (y + 0.2) ** 2 + z**2 < 0.1] = 70.0
    hu += rng.integers(-4, 5, size=shape)
    if direction is None:
        angle = np.radians(20)
        direction = (np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0,
                     0.0, 0.0, 1.0)
    return CTImage(array=hu.astype(np.float32), spacing=spacing, origin=(-11.0, 4.5, -30.0),
                   direction=direction)
