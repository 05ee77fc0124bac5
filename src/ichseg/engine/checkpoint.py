"""Reading nnU-Net's checkpoints without unpickling arbitrary objects.

A ``checkpoint_*.pth`` is a pickle; ``torch.load(weights_only=True)`` rebuilds only tensors,
containers, numbers and strings, so a tampered checkpoint cannot run code (the postprocessing
rules avoid pickles for the same reason). Besides those, nnU-Net's trainer stores numpy scalars
(losses, pseudo-Dice and the best EMA in its log) and a ``torch.device``: those types, and only
those, are allowed here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ichseg.errors import ModelError, first_line

try:
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar  # type: ignore[no-redef]

#: What nnU-Net's checkpoints hold beyond what ``weights_only`` allows by default: numpy scalars
#: are pickled as ``scalar(dtype, bytes)``, and each dtype as its own class (``Float32DType``...).
NUMPY_SCALAR_GLOBALS: list[Any] = [
    _numpy_scalar, np.dtype,
    *sorted({type(np.dtype(code)) for code in np.typecodes["AllFloat"] + np.typecodes["AllInteger"] + "?"},
            key=lambda cls: cls.__name__),
]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, on the CPU, with only plain data and numpy scalars unpickled."""
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            # read whole, not mmap'ed: a checkpoint rewritten in place (a model trained again) would
            # take a mapped process down with a bus error
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = first_line(error).removeprefix("Weights only load failed. ")
        raise ModelError(f"{path}: holds objects other than weights, numbers and text, which "
                         f"ichseg does not unpickle ({reason})") from None
