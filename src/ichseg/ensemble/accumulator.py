"""Running sums over an ensemble's models, in memory that does not grow with the number of models.

A 15-model ensemble of a 512 × 512 × 40 case would need 600 MB to keep every probability map;
the ensemble rules only need the probability sum (mean ensemble) and the vote count per voxel
(majority vote, uncertainty estimation ensemble), so that is all that is kept: 5 bytes a voxel.

The same code accumulates numpy arrays and torch tensors (on any device, so the engine can
accumulate on the GPU): both libraries spell ``zeros``, ``float32``, ``uint8``, ``device`` and
in-place ``+=`` alike, so only the namespace differs.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

#: A model votes for hemorrhage where its probability exceeds this, i.e. where the argmax of its
#: two-class softmax is hemorrhage; a tie goes to background, as ``argmax`` returns the first.
VOTE_THRESHOLD = 0.5

#: Votes are counted in uint8.
MAX_MODELS = int(np.iinfo(np.uint8).max)


def array_namespace(array: Any) -> ModuleType:
    """``torch`` for a torch tensor, ``numpy`` for anything else.

    torch is looked up among the imported modules: a tensor cannot exist unless torch was
    imported, and numpy-only callers do not pay for importing it.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(array, torch.Tensor):
        return torch
    return np


class EnsembleAccumulator:
    """Add each model's hemorrhage probability; read the sum, the votes and the mean.

    The buffers are created by the first :meth:`add`, in that input's library and on its device.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(size) for size in shape)
        self._n_models = 0
        self._namespace: ModuleType | None = None
        self._sum: Any = None
        self._votes: Any = None

    def add(self, probability: Any) -> None:
        """Add one model's foreground probability (values in [0, 1], the case's shape)."""
        xp = array_namespace(probability)
        if xp is np:
            probability = np.asarray(probability)
        if tuple(probability.shape) != self.shape:
            raise ValueError(f"probability of shape {tuple(probability.shape)} added to an "
                             f"ensemble of shape {self.shape}")
        if self._namespace is None:
            self._namespace = xp
            self._sum = xp.zeros(self.shape, dtype=xp.float32, device=probability.device)
            self._votes = xp.zeros(self.shape, dtype=xp.uint8, device=probability.device)
        elif xp is not self._namespace:
            raise TypeError(f"cannot add a {xp.__name__} array to an ensemble accumulated in "
                            f"{self._namespace.__name__}")
        if self._n_models == MAX_MODELS:
            raise ValueError(f"an ensemble counts at most {MAX_MODELS} models")
        self._sum += probability
        self._votes += probability > VOTE_THRESHOLD
        self._n_models += 1

    @property
    def n_models(self) -> int:
        return self._n_models

    @property
    def probability_sum(self) -> Any:
        """Sum of the models' probabilities (float32)."""
        self._require_models()
        return self._sum

    @property
    def votes(self) -> Any:
        """Number of models voting hemorrhage at each voxel (uint8, 0..n_models)."""
        self._require_models()
        return self._votes

    def mean_probability(self) -> Any:
        """The ensemble's mean hemorrhage probability (float32)."""
        return self.probability_sum / self._n_models

    def _require_models(self) -> None:
        if self._n_models == 0:
            raise ValueError("no model has been added to the ensemble yet")
