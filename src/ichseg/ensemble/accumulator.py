"""Running sums over an ensemble's models, in memory that does not grow with the number of models.

A 15-model ensemble of a 512 × 512 × 40 case would need 600 MB to keep every probability map;
the ensemble rules only need the probability sum (mean ensemble) and the vote count per voxel
(majority vote, uncertainty estimation ensemble), so that is all that is kept: 5 bytes a voxel.

With K classes (background and K - 1 hemorrhage types, :class:`ichseg.labels.LabelScheme`) each
model gives its K class probabilities, and the accumulator keeps one float32 sum per class, one
uint8 count per hemorrhage class (the models whose argmax it is) and the "any hemorrhage" count
(the models whose argmax is not background): 5 K bytes a voxel. A tie in a model's argmax goes
to the lower class value, as ``argmax`` returns the first.

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


def first_argmax(probability: Any) -> Any:
    """The index of the largest value along the first axis (uint8), the first of equals, as
    ``argmax``: by a pass per class, which on a CPU takes about a fifth of the time of torch's
    ``argmax(0)`` (six classes of a 512 × 512 × 34 case: 0.5 s against 2.5 s)."""
    xp = array_namespace(probability)
    choice = xp.zeros(tuple(probability.shape[1:]), dtype=xp.uint8, device=probability.device)
    best = probability[0]
    for value in range(1, len(probability)):
        better = probability[value] > best
        choice[better] = value
        best = xp.maximum(best, probability[value])
    return choice


class EnsembleAccumulator:
    """Add each model's probabilities; read the sums, the votes and the mean.

    ``n_classes`` counts the background: 2 (hemorrhage or not, the default) takes each model's
    foreground probability, of the case's shape; more take the class probabilities, of shape
    ``(n_classes, *shape)``. The buffers are created by the first :meth:`add`, in that input's
    library and on its device.
    """

    def __init__(self, shape: tuple[int, ...], n_classes: int = 2) -> None:
        self.shape = tuple(int(size) for size in shape)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= MAX_MODELS:
            raise ValueError(f"an ensemble has 2 to {MAX_MODELS} classes (background included), "
                             f"got {n_classes!r}")
        self.n_classes = n_classes
        self._n_models = 0
        self._namespace: ModuleType | None = None
        self._sum: Any = None
        self._votes: Any = None
        self._class_votes: Any = None

    @property
    def is_multiclass(self) -> bool:
        """More than one hemorrhage class: the inputs and sums hold every class."""
        return self.n_classes > 2

    def add(self, probability: Any) -> None:
        """Add one model's foreground probability (values in [0, 1], the case's shape) or, with
        several hemorrhage classes, its class probabilities (``(n_classes, *shape)``)."""
        xp = array_namespace(probability)
        if xp is np:
            probability = np.asarray(probability)
        expected = (self.n_classes, *self.shape) if self.is_multiclass else self.shape
        if tuple(probability.shape) != expected:
            raise ValueError(f"probability of shape {tuple(probability.shape)} added to an "
                             f"ensemble expecting {expected}")
        if self._namespace is None:
            self._allocate(xp, probability.device)
        elif xp is not self._namespace:
            raise TypeError(f"cannot add a {xp.__name__} array to an ensemble accumulated in "
                            f"{self._namespace.__name__}")
        if self._n_models == MAX_MODELS:
            raise ValueError(f"an ensemble counts at most {MAX_MODELS} models")
        self._sum += probability
        if self.is_multiclass:
            choice = first_argmax(probability)
            for value in range(1, self.n_classes):
                self._class_votes[value - 1] += choice == value
            self._votes += choice != 0
        else:
            self._votes += probability > VOTE_THRESHOLD
        self._n_models += 1

    def _allocate(self, xp: ModuleType, device: Any) -> None:
        self._namespace = xp
        sums = (self.n_classes, *self.shape) if self.is_multiclass else self.shape
        self._sum = xp.zeros(sums, dtype=xp.float32, device=device)
        self._votes = xp.zeros(self.shape, dtype=xp.uint8, device=device)
        if self.is_multiclass:
            self._class_votes = xp.zeros((self.n_classes - 1, *self.shape), dtype=xp.uint8,
                                         device=device)

    @property
    def n_models(self) -> int:
        return self._n_models

    @property
    def probability_sum(self) -> Any:
        """Sum of the models' probabilities (float32): of hemorrhage, or of each class along
        the first axis."""
        self._require_models()
        return self._sum

    def class_votes(self, value: int) -> Any:
        """Number of models whose argmax is class ``value`` at each voxel (uint8); for the
        background that is the models not voting hemorrhage."""
        self._require_models()
        if not 0 <= value < self.n_classes:
            raise ValueError(f"no class {value} in an ensemble of {self.n_classes} classes")
        if value == 0:
            return self._n_models - self._votes
        return self._class_votes[value - 1] if self.is_multiclass else self._votes

    @property
    def votes(self) -> Any:
        """Number of models voting hemorrhage (of any type) at each voxel (uint8, 0..n_models)."""
        self._require_models()
        return self._votes

    def mean_probability(self) -> Any:
        """The ensemble's mean hemorrhage probability, or mean class probabilities (float32)."""
        return self.probability_sum / self._n_models

    def _require_models(self) -> None:
        if self._n_models == 0:
            raise ValueError("no model has been added to the ensemble yet")
