"""Skull defects: a decompressive craniectomy or a burr hole through the vault.

A defect is a cone from the head's centre around one direction; the vault inside it is gone.
After a craniectomy the brain swells out to the scalp (the intracranial space then reaches the
scalp over the defect); a burr hole is plugged with scalp tissue and leaves the space as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ichseg.data.synth.lookalikes import unit_direction
from ichseg.data.synth.vocabulary import SKULL_DEFECTS
from ichseg.errors import InputError


@dataclass(frozen=True)
class SkullDefect:
    """Where the vault is missing: the directions within ``half_angle`` of ``direction``."""

    kind: str
    direction: np.ndarray
    half_angle: float

    @staticmethod
    def draw(kind: str, rng: np.random.Generator,
             outer_radius: Callable[[np.ndarray], float]) -> SkullDefect:
        """A fronto-temporo-parietal flap 100-130 mm across, or a hole 11-14 mm across.

        ``outer_radius`` gives the distance from the head's centre to the outer table along a
        direction; it turns the width of the opening into an angle.
        """
        side = int(rng.choice((-1, 1)))
        if kind == "craniectomy":
            direction = unit_direction(rng.uniform(70, 100), rng.uniform(10, 20), side)
            width = rng.uniform(100.0, 130.0)
        elif kind == "burr_hole":  # frontal (Kocher's point) or parietal
            azimuth = rng.uniform(15, 35) if rng.random() < 0.5 else rng.uniform(80, 110)
            direction = unit_direction(azimuth, rng.uniform(40, 60), side)
            width = rng.uniform(11.0, 14.0)
        else:
            raise InputError(f"unknown skull defect '{kind}' (choose from {', '.join(SKULL_DEFECTS)})")
        return SkullDefect(kind, direction, width / 2 / outer_radius(direction))

    def contains(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        """Which unit directions (nu, nv, nw) point through the defect."""
        d = self.direction.astype(np.float32)
        return nu * d[0] + nv * d[1] + nw * d[2] > np.float32(math.cos(self.half_angle))
