"""How a model folder's networks are used on a case, as one value from the command line to the networks.

``ichseg predict``'s options, the Ray workers' request, :meth:`ichseg.segmentation.segmenter.
Segmenter.load` and :class:`ichseg.model.networks.ModelSet` all take an :class:`InferenceSettings`,
so that a setting cannot be lost or read differently on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ichseg.ensemble.spec import EnsembleSpec

if TYPE_CHECKING:
    from ichseg.model.folder import ModelFolder, TrainedModel


@dataclass(frozen=True)
class InferenceSettings:
    """Which models (``groups`` and ``folds``; None: all trained ones), how they are combined
    (``ensemble``; None: the recipe's), test-time mirroring, the sliding window's step, whether the
    folder's postprocessing rule applies, and whether each network's tiling is printed."""

    groups: tuple[str, ...] | None = None
    folds: tuple[int | str, ...] | None = None
    ensemble: EnsembleSpec | None = None
    mirroring: bool = True
    step_size: float = 0.5
    postprocess: bool = True
    verbose: bool = False

    def select(self, folder: ModelFolder) -> list[TrainedModel]:
        """The folder's finished models these settings use, checked to exist."""
        return folder.select(self.groups, self.folds)

    def ensemble_for(self, folder: ModelFolder) -> EnsembleSpec:
        """The ensemble given, or the recipe's."""
        return self.ensemble or EnsembleSpec.from_dict(folder.recipe.ensemble)

    def manifest(self) -> dict[str, Any]:
        """The settings that decide a batch's masks besides the models and the ensemble."""
        return {"postprocess": self.postprocess, "mirroring": self.mirroring, "step_size": self.step_size}


def ensemble_spec(folder: ModelFolder, ensemble: EnsembleSpec | str | None = None,
                  params: Mapping[str, Any] | None = None) -> EnsembleSpec:
    """``ensemble`` as given, or the recipe's spec with another strategy and/or parameters
    (the command line's ``--ensemble``, ``--th``, ``--n1``, ``--n2``, ``--reading``)."""
    if isinstance(ensemble, EnsembleSpec):
        return ensemble
    return EnsembleSpec.from_dict(folder.recipe.ensemble).with_overrides(ensemble, **(params or {}))
