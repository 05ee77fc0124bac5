"""What segmenting a case gives, in memory: below both the segmenter that makes it and the writers
that turn it into files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ichseg.clinical.measures import CaseMeasures, case_measures
from ichseg.ensemble.info import EnsembleInfo
from ichseg.io.ctimage import CTImage
from ichseg.labels import ONE_CLASS, LabelScheme


@dataclass(frozen=True)
class Segmentation:
    """One case's result, in the geometry of the input as given.

    ``mask`` holds each voxel's class value (uint8; 0/1 for one class, 0..5 for the subtypes),
    named by ``labels``, and ``votes`` the number of models marking each voxel as any
    hemorrhage (0..C);
    ``ensemble`` describes how the models were combined (strategy, C, HR, branch of the rule) and
    ``postprocessing`` what the model folder's postprocessing removed (None without one);
    ``intracranial`` the intracranial space its ``intracranial`` rule used (None when no rule
    looked for it); ``warnings`` what the intensity checks found unusual yet possible.
    """

    image: CTImage
    mask: CTImage
    votes: CTImage
    ensemble: EnsembleInfo
    postprocessing: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    intracranial: np.ndarray | None = None
    labels: LabelScheme = ONE_CLASS

    @property
    def volume_ml(self) -> float:
        return float(np.count_nonzero(self.mask.array)) * self.mask.voxel_volume_ml

    def measures(self) -> CaseMeasures:
        """Volume, ABC/2, components and slices of any hemorrhage, and for a class map of several
        types each type's as well (as in the case's JSON)."""
        return case_measures(self.mask.array, self.mask.spacing, self.labels)


@dataclass(frozen=True)
class EnsembledCase:
    """One case's ensemble on the canonical grid, before it goes back to the input's geometry:
    ``mask`` holds class values of ``labels`` (uint8), ``votes`` the any-hemorrhage votes."""

    image: CTImage
    canonical: CTImage
    mask: np.ndarray
    votes: np.ndarray
    ensemble: EnsembleInfo
    labels: LabelScheme = ONE_CLASS
