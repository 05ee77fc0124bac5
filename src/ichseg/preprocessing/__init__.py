"""CT preprocessing from the source papers, applied identically at training and prediction."""

from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.preprocessing.slices import pad_slices, unpad_slices
from ichseg.preprocessing.window import apply_window

__all__ = ["CTPreprocessing", "apply_window", "pad_slices", "unpad_slices"]
