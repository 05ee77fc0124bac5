"""The recipe's CT preprocessing as one recorded, invertible step.

A model folder stores this object's dictionary, so prediction applies exactly what training
applied and undoes the geometric part before a mask is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ichseg.errors import RecipeError
from ichseg.io.ctimage import CTImage
from ichseg.preprocessing.slices import Slices, pad_slices, unpad_slices
from ichseg.preprocessing.window import apply_window


@dataclass(frozen=True)
class CTPreprocessing:
    """Windowing (level, width in HU) and outward slice padding; both optional."""

    window_level: float | None = None
    window_width: float | None = None
    pad_slices: int = 0

    def __post_init__(self) -> None:
        if (self.window_level is None) != (self.window_width is None):
            raise RecipeError("preprocessing: window needs both 'level' and 'width'")
        if self.window_width is not None and self.window_width <= 0:
            raise RecipeError(f"preprocessing: window width must be positive, got {self.window_width}")
        if not isinstance(self.pad_slices, int) or self.pad_slices < 0:
            raise RecipeError(f"preprocessing: pad_slices must be a non-negative integer, got {self.pad_slices!r}")

    @property
    def is_identity(self) -> bool:
        return self.window_level is None and self.pad_slices == 0

    @property
    def slug(self) -> str:
        """A short name for data sets derived with this preprocessing, e.g. ``w59l96-pad1``."""
        parts = []
        if self.window_level is not None:
            parts.append(f"w{self.window_width:g}l{self.window_level:g}")
        if self.pad_slices:
            parts.append(f"pad{self.pad_slices}")
        return "-".join(parts).replace(".", "p")

    def apply_array(self, hu: np.ndarray, is_label: bool = False) -> np.ndarray:
        """Window (images only) and pad an array (z, y, x)."""
        out = hu
        if not is_label and self.window_level is not None:
            out = apply_window(out, self.window_level, self.window_width)  # type: ignore[arg-type]
        return pad_slices(out, self.pad_slices)

    def apply(self, image: CTImage, is_label: bool = False) -> CTImage:
        """The preprocessed image, its origin moved so that real slices keep their positions."""
        array = self.apply_array(image.array, is_label)
        if self.pad_slices == 0:
            return image.with_array(array)
        direction = np.asarray(image.direction, dtype=float).reshape(3, 3)
        shift = direction[:, 2] * image.spacing[0] * self.pad_slices
        origin = tuple(float(o) for o in np.asarray(image.origin) - shift)
        return replace(image, array=array, origin=origin)  # type: ignore[arg-type]

    def revert_array(self, array: Slices) -> Slices:
        """Undo the geometric part (padding) on a prediction made on a preprocessed image."""
        return unpad_slices(array, self.pad_slices)

    def to_dict(self) -> dict[str, Any]:
        window = None
        if self.window_level is not None:
            window = {"level": self.window_level, "width": self.window_width}
        return {"window": window, "pad_slices": self.pad_slices}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CTPreprocessing:
        data = dict(data or {})
        unknown = set(data) - {"window", "pad_slices"}
        if unknown:
            raise RecipeError(f"preprocessing: unknown field(s) {sorted(unknown)}")
        window = data.get("window")
        if window is not None and (not isinstance(window, dict) or set(window) != {"level", "width"}):
            raise RecipeError("preprocessing: 'window' must be {\"level\": HU, \"width\": HU} or null")
        return cls(
            window_level=None if window is None else float(window["level"]),
            window_width=None if window is None else float(window["width"]),
            pad_slices=data.get("pad_slices", 0),
        )
