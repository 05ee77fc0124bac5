"""Axial PNG previews of CT volumes with a mask outlined in red, or a class map type by type.

Used to look at synthetic data sets and, in reports, at a prediction over its scan, optionally
with a boundary (the intracranial space the postprocessing used) as a thin cyan line. A class map
of several hemorrhage types (a scheme other than :data:`~ichseg.labels.ONE_CLASS`) is outlined
type by type in the colours of :mod:`ichseg.palette`, with a legend of the types present. Figures are
drawn with Matplotlib's Agg canvas directly (no pyplot, never a window), in a CT window given as
(level, width) in HU, with each panel's aspect ratio following the in-plane spacing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ichseg.atomic import atomic_file, refuse_existing
from ichseg.errors import InputError
from ichseg.io.ctimage import CTImage
from ichseg.labels import ONE_CLASS, SUBTYPE_NAMES, LabelScheme
from ichseg.palette import class_color

#: The brain window (level 40, width 80 HU).
BRAIN_WINDOW = (40.0, 80.0)
CONTOUR_COLOR = "#ff0000"
BOUNDARY_COLOR = "#00e5ff"
PANEL_INCHES = 3.2
DPI = 120
MAX_COLUMNS = 4
#: Height of the legend band of a class map's montage, in inches.
LEGEND_INCHES = 0.35
#: What to outline: a class value (None: every non-zero voxel), its colour and its legend text.
Contour = tuple[int | None, str, str]


def key_slice(mask: np.ndarray | None, n_slices: int) -> int:
    """The slice with the largest mask area, or the middle slice when the mask is empty or None."""
    if mask is not None:
        areas = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
        if areas.any():
            return int(np.argmax(areas))
    return n_slices // 2


def montage_slices(mask: np.ndarray | None, n_slices: int, max_slices: int = 12) -> list[int]:
    """Slices that contain the mask, evenly thinned to ``max_slices``; else evenly spaced ones."""
    if mask is not None and mask.any():
        candidates = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    else:
        candidates = np.arange(n_slices)
    if len(candidates) <= max_slices:
        return candidates.tolist()
    picks = np.linspace(0, len(candidates) - 1, max_slices).round().astype(int)
    return candidates[np.unique(picks)].tolist()


def save_montage(image: CTImage, mask: np.ndarray | None, path: str | os.PathLike, *,
                 window: tuple[float, float] = BRAIN_WINDOW, slices: Sequence[int] | None = None,
                 max_slices: int = 12, title: str | None = None, overwrite: bool = False,
                 boundary: np.ndarray | None = None, labels: LabelScheme = ONE_CLASS) -> Path:
    """Write an axial montage of ``image`` with ``mask`` outlined (a class map named by ``labels``
    type by type, with a legend), and ``boundary`` (e.g. the intracranial space) as a thinner line
    of another colour; return the PNG's path."""
    path = Path(path)
    refuse_existing(path, overwrite)
    _check_mask(image, mask)
    _check_mask(image, boundary)
    if max_slices < 1:
        raise InputError(f"{path}: max_slices must be at least 1, got {max_slices}")
    n_slices = image.shape[0]
    chosen = list(slices) if slices is not None else montage_slices(mask, n_slices, max_slices)
    if not chosen:
        raise InputError(f"{path}: no slices to show")
    outside = [z for z in chosen if not 0 <= z < n_slices]
    if outside:
        raise InputError(f"{image.name}: slice {outside[0]} outside 0..{n_slices - 1}")
    contours = _contours(mask, labels)
    legend = labels != ONE_CLASS and bool(contours)
    figure, panels = _layout(image, len(chosen), caption_lines=0, title=title, legend=legend)
    if legend:
        _legend(figure, contours, title)
    for axes, z in zip(panels, chosen, strict=True):
        _draw_slice(axes, image, mask, z, window, boundary, contours)
        axes.text(0.02, 0.98, f"z {z}", transform=axes.transAxes, color="white", fontsize=9,
                  va="top", ha="left")
    return _save(figure, path, overwrite)


def save_case_grid(panels: Sequence[tuple[CTImage, np.ndarray | None, str]],
                   path: str | os.PathLike, *, window: tuple[float, float] = BRAIN_WINDOW,
                   overwrite: bool = False, slices: Sequence[int | None] | None = None) -> Path:
    """Write one panel per case, its key slice (largest mask area) captioned; return the path.

    ``slices`` gives, panel by panel, the slice to show instead (None keeps the key slice).
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    if not panels:
        raise InputError(f"{path}: no cases to show")
    chosen = list(slices) if slices is not None else [None] * len(panels)
    if len(chosen) != len(panels):
        raise InputError(f"{path}: {len(chosen)} slices for {len(panels)} panels")
    for (image, mask, _), z in zip(panels, chosen, strict=True):
        _check_mask(image, mask)
        if z is not None and not 0 <= z < image.shape[0]:
            raise InputError(f"{image.name}: slice {z} outside 0..{image.shape[0] - 1}")
    figure, axes_list = _layout(panels[0][0], len(panels), caption_lines=1, title=None)
    for axes, (image, mask, caption), z in zip(axes_list, panels, chosen, strict=True):
        z = key_slice(mask, image.shape[0]) if z is None else z
        _draw_slice(axes, image, mask, z, window)
        axes.set_title(f"{caption} (z {z})", color="white", fontsize=8, pad=3)
    return _save(figure, path, overwrite)


def _check_mask(image: CTImage, mask: np.ndarray | None) -> None:
    if mask is not None and mask.shape != image.shape:
        raise InputError(f"{image.name}: mask shape {mask.shape} does not match image shape "
                         f"{image.shape}")


def _layout(image: CTImage, n_panels: int, caption_lines: int,
            title: str | None, legend: bool = False) -> tuple[Figure, list[Axes]]:
    """A black figure of up to four columns whose panels keep the physical aspect of ``image``,
    with room above them for the title and the legend."""
    _, ny, nx = image.shape
    _, sy, sx = image.spacing
    columns = min(MAX_COLUMNS, n_panels)
    rows = math.ceil(n_panels / columns)
    panel_height = PANEL_INCHES * (ny * sy) / (nx * sx)
    header = 0.3 * caption_lines
    top = (0.45 if title else 0.0) + (LEGEND_INCHES if legend else 0.0)
    height = rows * (panel_height + header) + top
    figure = Figure(figsize=(columns * PANEL_INCHES, height), dpi=DPI, facecolor="black")
    grid = figure.add_gridspec(rows, columns, left=0.0, right=1.0, bottom=0.0,
                               top=1.0 - (top + header) / height, wspace=0.02,
                               hspace=header / panel_height + 0.02)
    if title:
        figure.suptitle(title, color="white", fontsize=11, y=1.0 - 0.1 / height, va="top")
    axes = [figure.add_subplot(grid[i // columns, i % columns]) for i in range(n_panels)]
    return figure, axes


def _contours(mask: np.ndarray | None, labels: LabelScheme) -> list[Contour]:
    """What to outline: (class value, colour, legend text) for each class of ``labels`` in
    ``mask``; for one class, every non-zero voxel (value None) in red."""
    if labels == ONE_CLASS:
        return [(None, CONTOUR_COLOR, "")]
    if mask is None:
        return []
    present = np.unique(mask)
    return [(value, class_color(labels.name(value), labels.names[1:]),
             f"{labels.name(value)} ({SUBTYPE_NAMES[labels.name(value)]})"
             if labels.name(value) in SUBTYPE_NAMES else labels.name(value))
            for value in labels.hemorrhage_values if value in present]


def _legend(figure: Figure, contours: Sequence[Contour], title: str | None) -> None:
    """One line of coloured marks naming the types, below the title."""
    height = figure.get_figheight()
    handles = [Line2D([], [], color=color, linewidth=2.5, label=text) for _, color, text in contours]
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
                  labelcolor="white", fontsize=9, handlelength=1.6, columnspacing=1.2,
                  bbox_to_anchor=(0.5, 1.0 - (0.4 if title else 0.02) / height))


def _draw_slice(axes: Axes, image: CTImage, mask: np.ndarray | None, z: int,
                window: tuple[float, float], boundary: np.ndarray | None = None,
                contours: Sequence[Contour] = ((None, CONTOUR_COLOR, ""),)) -> None:
    level, width = window
    _, sy, sx = image.spacing
    axes.imshow(image.array[z], cmap="gray", vmin=level - width / 2, vmax=level + width / 2,
                aspect=sy / sx, interpolation="nearest")
    if boundary is not None and np.any(boundary[z]):
        axes.contour(np.asarray(boundary[z], dtype=np.uint8), levels=[0.5], colors=BOUNDARY_COLOR,
                     linewidths=0.6, antialiased=False)
    if mask is not None and np.any(mask[z]):
        for value, color, _ in contours:
            region = mask[z] != 0 if value is None else mask[z] == value
            if region.any():
                axes.contour(region.astype(np.uint8), levels=[0.5], colors=color, linewidths=1.2,
                             antialiased=False)
    axes.set_axis_off()


def _save(figure: Figure, path: Path, overwrite: bool) -> Path:
    with atomic_file(path, overwrite) as tmp:
        figure.savefig(tmp, format="png", facecolor="black", dpi=DPI)
    return path
