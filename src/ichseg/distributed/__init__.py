"""Scaling out on Ray: a recipe's models trained at once across GPUs and machines, and batch
prediction over thousands of scans as a Ray Data pipeline.

Ray is optional (``pip install 'ichseg[ray]'``). ``ichseg train --ray`` / ``ichseg predict --ray``
and ``train(..., ray=...)`` / ``predict(..., ray=...)`` come here; the names below are imported on
first use, so this package loads without Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "connect": "cluster", "require_ray": "cluster",
    "train_on_ray": "ray_training", "ModelEvent": "ray_training", "ModelsFailedError": "ray_training",
    "predict_on_ray": "ray_prediction",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = sorted(_LAZY)
