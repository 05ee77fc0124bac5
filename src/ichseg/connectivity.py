"""Connected components of a mask, defined once for the postprocessing rules, the metrics and the
clinical measures, so that a component is the same thing wherever it is counted.

Connectivity is 3D 26-connectivity (:data:`CONNECTIVITY`): voxels touching at a face, an edge or
a corner belong together. Head CT slices are 4-5 mm thick, so one bleed running obliquely through
the slices often meets its continuation in the next slice only at an edge or a corner; with
6-connectivity it would fall apart into pieces that ``keep_largest`` and ``min_volume`` would then
delete. It is also nnU-Net's connectivity (scikit-image's full connectivity by default).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Voxels that share a face, an edge or a corner are connected.
CONNECTIVITY = 26
_STRUCTURE = ndimage.generate_binary_structure(rank=3, connectivity=3)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The :data:`CONNECTIVITY`-connected labels of a boolean 3D mask (0 for background) and the
    voxel count of components 1..n."""
    labels, count = ndimage.label(mask, structure=_STRUCTURE)
    return labels, np.bincount(labels[mask], minlength=count + 1)[1:]  # foreground only: fast
