"""Rendering a case: its grid, every slice's samples added up per voxel, and CT noise.

The volume is rendered one output slice at a time on coordinate grids (no loops over voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ichseg.data.synth.anatomy import Head
from ichseg.data.synth.artifacts import add_beam_hardening
from ichseg.data.synth.lesions import Lesion
from ichseg.data.synth.slab import Grid
from ichseg.data.synth.tissues import anatomy_slab
from ichseg.data.synth.vocabulary import (
    HEMORRHAGE_TYPES,
    MAX_COVERAGE_MM,
    SIZES,
    SizeSpec,
    Tissue,
)
from ichseg.errors import InputError


def size_spec(size: str) -> SizeSpec:
    try:
        return SIZES[size]
    except KeyError:
        raise InputError(f"unknown size '{size}' (choose from {', '.join(SIZES)})") from None


def draw_grid(rng: np.random.Generator, spec: SizeSpec, head: Head) -> Grid:
    """Spacing, shape and placement: the top slice at the vertex, the stack going down."""
    pixel = round(rng.uniform(*spec.fov_mm) * 2) / 2 / spec.matrix
    if spec.coverage_mm is not None:
        n_slices = int(rng.integers(spec.slices[0], spec.slices[1] + 1))
        slice_mm = round(rng.uniform(*spec.coverage_mm) / n_slices, 1)
    else:
        assert spec.slice_mm is not None  # a size gives its slices' thickness or their coverage
        slice_mm = round(rng.uniform(*spec.slice_mm), 1)
        most = min(spec.slices[1], int(MAX_COVERAGE_MM // slice_mm))
        n_slices = int(rng.integers(spec.slices[0], most + 1))
    shape = (n_slices, spec.matrix, spec.matrix)
    spacing = (slice_mm, pixel, pixel)
    a, b, up, _ = head.skin
    top_half = np.sqrt(((head.rotation.T @ np.diag((a, b, up))) ** 2).sum(axis=1))[2]
    top_edge = head.center[2] + top_half + rng.uniform(-2.0, 3.0)
    first_z = top_edge - slice_mm * (n_slices - 0.5)
    first = (first_z, -(spec.matrix - 1) / 2 * pixel, -(spec.matrix - 1) / 2 * pixel)
    return Grid(shape, spacing, first, spec.sub_slices, spec.render_factor)


@dataclass
class Rendered:
    """Per output voxel: what the samples inside it add up to."""

    hu: np.ndarray        # mean HU, noise-free
    blood: np.ndarray     # share of samples that are blood
    dense: np.ndarray     # share of samples that are bone or calcification
    tissues: np.ndarray   # most frequent tissue other than blood
    pure: np.ndarray      # every sample the same tissue
    dominant: np.ndarray  # 1 + index of the lesion with most samples, 0 for none

    def label(self) -> np.ndarray:
        """Voxels at least half blood, leaving out those that bone or calcification brightens."""
        return (self.blood >= 0.5) & (self.dense <= 0.0)


def render(head: Head, grid: Grid, lesions: list[Lesion]) -> Rendered:
    """Draw every output slice's samples and add them up per output voxel.

    Only the samples around the head are drawn; the rest of the field of view is air. The
    samples are counted per (tissue, pixel) with ``np.bincount``.
    """
    zs, ys, xs = (grid.render_axis(axis) for axis in range(3))
    block = grid.block
    crop = _head_crop(head, (ys, xs), block)
    ys, xs = ys[crop[0]], xs[crop[1]]
    z_shift = grid.z_shifts()[crop]
    ny, nx = len(ys) // block, len(xs) // block
    pixels = ny * nx
    pixel_of_sample = np.broadcast_to(
        (np.arange(len(ys)) // block * nx)[:, None] + np.arange(len(xs)) // block,
        (grid.sub_slices, len(ys), len(xs))).ravel()
    samples_per_pixel = grid.sub_slices * block * block
    n_codes, n_bleeds = len(Tissue), len(HEMORRHAGE_TYPES) + 1
    kinds = [HEMORRHAGE_TYPES.index(lesion.kind) + 1 for lesion in lesions]

    shape = (grid.shape[0], round(len(grid.render_axis(1)) / block),
             round(len(grid.render_axis(2)) / block))
    out = Rendered(hu=np.full(shape, -1000.0, np.float32), blood=np.zeros(shape, np.float32),
                    dense=np.zeros(shape, np.float32), tissues=np.zeros(shape, np.uint8),
                    pure=np.ones(shape, bool), dominant=np.zeros(shape, np.uint8))
    head_box = (slice(None), slice(crop[0].start // block, crop[0].start // block + ny),
                slice(crop[1].start // block, crop[1].start // block + nx))
    hu, blood, dense, tissues, pure, dominant = (
        getattr(out, name)[head_box] for name in ("hu", "blood", "dense", "tissues", "pure", "dominant"))
    for k in range(grid.shape[0]):
        slab = anatomy_slab(head, zs[k * grid.sub_slices:(k + 1) * grid.sub_slices], ys, xs, z_shift)
        for lesion in lesions:
            lesion.paint(slab)
        add_beam_hardening(slab)
        hu[k] = np.bincount(pixel_of_sample, weights=slab.hu.ravel(),
                            minlength=pixels).reshape(ny, nx) / samples_per_pixel
        counts = np.bincount(slab.codes.ravel().astype(np.intp) * pixels + pixel_of_sample,
                             minlength=n_codes * pixels).reshape(n_codes, ny, nx)
        blood[k] = counts[Tissue.BLOOD] / samples_per_pixel
        dense[k] = (counts[Tissue.BONE] + counts[Tissue.CALCIFICATION]) / samples_per_pixel
        pure[k] = counts.max(axis=0) == samples_per_pixel
        counts[Tissue.BLOOD] = -1
        tissues[k] = np.argmax(counts, axis=0)
        if kinds:
            bleeds = np.bincount(slab.bleed.ravel().astype(np.intp) * pixels + pixel_of_sample,
                                 minlength=n_bleeds * pixels).reshape(n_bleeds, ny, nx)
            per_lesion = bleeds[kinds]
            dominant[k] = np.where(per_lesion.any(axis=0), np.argmax(per_lesion, axis=0) + 1, 0)
    if grid.render_factor < 1:
        up = round(1 / grid.render_factor)
        out.hu, out.blood, out.dense = (_upsample(a, up) for a in (out.hu, out.blood, out.dense))
        out.tissues, out.pure, out.dominant = (a.repeat(up, axis=1).repeat(up, axis=2)
                                               for a in (out.tissues, out.pure, out.dominant))
    return out


def _head_crop(head: Head, axes: tuple[np.ndarray, np.ndarray], block: int) -> tuple[slice, slice]:
    """Render index ranges along y and x that hold the head, in whole output pixels."""
    half = head.world_half_extent()
    crop = []
    for coords, center, extent in zip(axes, head.center[1::-1], half[1::-1], strict=True):
        lo = int(np.searchsorted(coords, center - extent)) // block * block
        hi = -(-int(np.searchsorted(coords, center + extent, "right")) // block) * block
        crop.append(slice(lo, min(hi, len(coords))))
    return crop[0], crop[1]


def _upsample(values: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation over the last two axes onto a grid ``factor`` times finer.

    Pixel edges stay aligned (output pixel j samples input position (j + 0.5) / factor - 0.5)
    and the border pixels are extended, as ``scipy.ndimage.zoom(..., grid_mode=True,
    mode="nearest")`` does, only much faster.
    """
    for axis in (values.ndim - 2, values.ndim - 1):
        a = np.moveaxis(values, axis, -1)
        before = np.concatenate((a[..., :1], a[..., :-1]), axis=-1)
        after = np.concatenate((a[..., 1:], a[..., -1:]), axis=-1)
        out = np.empty((*a.shape[:-1], a.shape[-1] * factor), values.dtype)
        for phase in range(factor):
            offset = (phase + 0.5) / factor - 0.5
            neighbour = before if offset < 0 else after
            out[..., phase::factor] = a + (neighbour - a) * np.float32(abs(offset))
        values = np.moveaxis(out, -1, axis)
    return np.ascontiguousarray(values)


def ct_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_hu: float,
              correlation_px: float) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma_hu``, correlated over a pixel or so in-plane."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, (0, correlation_px, correlation_px))
    impulse = np.zeros((1, 15, 15), np.float32)
    impulse[0, 7, 7] = 1.0
    gain = float(np.sqrt((ndimage.gaussian_filter(impulse, (0, correlation_px, correlation_px)) ** 2).sum()))
    return smooth * np.float32(sigma_hu / gain)
