"""CT preprocessing from the source papers, applied identically at training and prediction."""

from ichseg.preprocessing.intensity import apply_window
from ichseg.preprocessing.pipeline import CTPreprocessing
from ichseg.preprocessing.slices import pad_slices, unpad_slices

__all__ = ["CTPreprocessing", "apply_window", "pad_slices", "unpad_slices"]
