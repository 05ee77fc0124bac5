"""nnU-Net's export resampling of logits, in torch, on the device the logits are on.

nnU-Net returns a prediction to the input's grid with the configuration's
``resampling_fn_probabilities`` (``resample_data_or_seg_to_shape`` with, for CT plans, ``order=1``,
``order_z=0``, ``force_separate_z=None``) before softmax and argmax. That function:

- decides whether to treat one axis apart (``determine_do_sep_z_and_axis``: the spacing of the
  prediction, else the case's, more than 3× anisotropic, with one unique lowest-resolution axis);
- if so, resizes each slice in-plane with scikit-image (``order``, edge mode, no anti-aliasing:
  ``scipy.ndimage.zoom`` in grid mode, i.e. half-pixel centres) and then maps the slice axis with
  ``map_coordinates`` at ``scale * (k + 0.5) - 0.5`` (``order_z`` 0: the nearest slice, halves
  rounded up; 1: linear), clamped at the edges;
- otherwise resizes all axes together with ``order``.

nnU-Net computes in float64 and stores the result in the logits' own dtype: float16, as its
sliding window accumulates them. With decided logits one float16 step moves a probability by up
to 1e-3, so the port reproduces that rounding exactly: it interpolates in float64 with torch's
kernels (linear interpolation with half-pixel centres and clamped edges, as scikit-image's), which
agree with scipy's to the last bit or two, and recomputes in scipy's own order of operations the
few voxels whose value lies on a float16 rounding tie, where the last bit decides. Other dtypes
(never produced by nnU-Net's sliding window) are computed in scipy's order everywhere.

It covers ``order`` 1 and ``order_z`` 0 or 1 of nnU-Net's default function; for anything else
:func:`resample_logits` calls nnU-Net's own function on the CPU (and says so). The decision about
the separate axis is nnU-Net's own function, so it cannot drift.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

#: The nnU-Net resampling function this module ports.
PORTED_FUNCTION = "resample_data_or_seg_to_shape"

#: How many resamplings went to nnU-Net's own function (a port gap; the benchmark prints it).
fallback_count = 0


@dataclass(frozen=True)
class ExportResampling:
    """A configuration's ``resampling_fn_probabilities`` and its keyword arguments."""

    function: str
    kwargs: dict[str, Any]

    @property
    def ported(self) -> bool:
        """True when :func:`resample_logits` reproduces nnU-Net's function in torch."""
        kwargs = self.kwargs
        known = set(kwargs) <= {"is_seg", "order", "order_z", "force_separate_z",
                                "separate_z_anisotropy_threshold"}
        return (self.function == PORTED_FUNCTION and known and not kwargs.get("is_seg", False)
                and kwargs.get("order", 3) == 1 and kwargs.get("order_z", 0) in (0, 1))


def resample_logits(logits: torch.Tensor, shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float], resampling: ExportResampling) -> torch.Tensor:
    """(c, z, y, x) logits at ``current_spacing`` resampled to ``shape`` at ``new_spacing``, as
    nnU-Net's export does it; the result stays on the logits' device, in their dtype."""
    shape = tuple(int(s) for s in shape)
    if tuple(logits.shape[1:]) == shape:
        return logits
    if not resampling.ported:
        return _nnunet_resampling(logits, shape, current_spacing, new_spacing, resampling)
    from nnunetv2.preprocessing.resampling.default_resampling import (
        determine_do_sep_z_and_axis,
    )

    kwargs = resampling.kwargs
    threshold = {"separate_z_anisotropy_threshold": kwargs["separate_z_anisotropy_threshold"]} \
        if "separate_z_anisotropy_threshold" in kwargs else {}
    separate, axis = determine_do_sep_z_and_axis(kwargs.get("force_separate_z", False), current_spacing,
                                                 new_spacing, **threshold)
    plan = _Plan.make(tuple(logits.shape[1:]), shape, int(axis) if separate else None, int(kwargs.get("order_z", 0)))
    data = logits.double()
    if logits.dtype != torch.float16:
        return plan.exact(data, None).to(logits.dtype)
    return _to_float16(plan.fast(data), lambda where: plan.exact(data, where))


@dataclass(frozen=True)
class _Taps:
    """Along one axis, for every output index: the two input neighbours and their weights, as
    scipy computes them (weights from the coordinate as it is, w1 = 1 - w0; neighbours past an
    edge replaced by the edge)."""

    lower: np.ndarray
    upper: np.ndarray
    w0: np.ndarray
    w1: np.ndarray

    @classmethod
    def at(cls, coordinates: np.ndarray, size_in: int) -> _Taps:
        lower = np.floor(coordinates)
        w0 = 1.0 - (coordinates - lower)
        neighbours = [np.clip(index, 0, size_in - 1).astype(np.int64) for index in (lower, lower + 1)]
        return cls(neighbours[0], neighbours[1], w0, 1.0 - w0)


def _grid_coordinates(size_in: int, size_out: int) -> np.ndarray:
    """Where output index k samples the input: half-pixel centres (scipy's grid mode), float64."""
    return (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5


@dataclass(frozen=True)
class _Plan:
    """What nnU-Net's function does for one case: linear zoom along ``linear`` axes, then (with a
    separate axis) that axis mapped by ``nearest`` indices or by linear ``slice_taps``."""

    shape: tuple[int, ...]
    linear: dict[int, _Taps]
    separate: int | None
    nearest: np.ndarray | None
    slice_taps: _Taps | None

    @classmethod
    def make(cls, shape_in: tuple[int, ...], shape: tuple[int, ...], separate: int | None, order_z: int) -> _Plan:
        linear = {a: _Taps.at(_grid_coordinates(shape_in[a], shape[a]), shape_in[a])
                  for a in range(len(shape)) if a != separate and shape_in[a] != shape[a]}
        nearest = slice_taps = None
        if separate is not None and shape_in[separate] != shape[separate]:
            coordinates = _grid_coordinates(shape_in[separate], shape[separate])
            if order_z == 0:  # map_coordinates' nearest: halves round up, edges repeat
                nearest = np.clip(np.floor(coordinates + 0.5), 0, shape_in[separate] - 1).astype(np.int64)
            else:
                slice_taps = _Taps.at(coordinates, shape_in[separate])
        return cls(shape, linear, separate, nearest, slice_taps)

    def fast(self, data: torch.Tensor) -> torch.Tensor:
        """The whole volume with torch's interpolation kernels, in float64."""
        out = data
        if self.linear:  # (torch clamps the coordinate at an edge where scipy weighs the edge twice: same value)
            spatial = [a for a in range(len(self.shape)) if a != self.separate]
            moved = out.movedim(self.separate + 1, 1) if self.separate is not None else out[None]
            size = tuple(self.shape[a] for a in spatial)
            mode = "trilinear" if len(size) == 3 else "bilinear"
            out = F.interpolate(moved, size=size, mode=mode, align_corners=False)
            out = out.movedim(1, self.separate + 1) if self.separate is not None else out[0]
        dim = (self.separate or 0) + 1
        if self.nearest is not None:
            out = out.index_select(dim, torch.from_numpy(self.nearest).to(out.device))
        elif self.slice_taps is not None:
            out = _combine(out, dim, self.slice_taps, None)
        return out.contiguous()

    def exact(self, data: torch.Tensor, where: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """scipy's arithmetic, operation for operation: everywhere (``where`` None) or at the
        given output voxels (indices of (c, z, y, x)), as a flat tensor."""
        index = list(where) if where is not None else None
        if self.separate is None or (self.nearest is None and self.slice_taps is None):
            return _zoom_exact(data, self.linear, index)
        dim = self.separate + 1
        if self.nearest is not None:
            lookup = torch.from_numpy(self.nearest).to(data.device)
            if index is None:
                return _zoom_exact(data.index_select(dim, lookup), self.linear, None)
            index[dim] = lookup[index[dim]]
            return _zoom_exact(data, self.linear, index)
        assert self.slice_taps is not None
        if index is None:
            return _combine(_zoom_exact(data, self.linear, None), dim, self.slice_taps, None)
        taps = self.slice_taps
        parts = []
        for neighbours in (taps.lower, taps.upper):
            at = list(index)
            at[dim] = torch.from_numpy(neighbours).to(data.device)[index[dim]]
            parts.append(_zoom_exact(data, self.linear, at))
        return _combine(torch.stack(parts, 1), 1, taps, index[dim])


def _combine(data: torch.Tensor, dim: int, taps: _Taps, index: torch.Tensor | None) -> torch.Tensor:
    """v(lower)·w0 + v(upper)·w1 along ``dim`` (map_coordinates' order-1 sum). With ``index``,
    ``data`` holds the two neighbours' values side by side (dim 1) for voxels of those indices."""
    device = data.device
    w0, w1 = (torch.from_numpy(w).to(device, data.dtype) for w in (taps.w0, taps.w1))
    if index is not None:
        return data[:, 0] * w0[index] + data[:, 1] * w1[index]
    view = [1] * data.dim()
    view[dim] = -1
    lower, upper = (data.index_select(dim, torch.from_numpy(n).to(device)) for n in (taps.lower, taps.upper))
    return lower * w0.view(view) + upper * w1.view(view)


def _zoom_exact(data: torch.Tensor, linear: dict[int, _Taps], index: list[torch.Tensor] | None) -> torch.Tensor:
    """``scipy.ndimage.zoom`` (order 1) along the ``linear`` axes in scipy's own order: the sum over
    neighbour combinations (first axis slowest) of ((v · w_first) · w_second) · …"""
    axes = sorted(linear)
    if not axes:
        return data if index is None else data[tuple(index)]
    if index is None:
        index = [t.reshape(-1) for t in torch.meshgrid(
            *[torch.arange(n, device=data.device) for n in (data.shape[0], *_output_shape(data, linear))],
            indexing="ij")]
        return _zoom_exact(data, linear, index).reshape(data.shape[0], *_output_shape(data, linear))
    total: torch.Tensor | None = None
    for choice in range(2 ** len(axes)):  # bit i (from the first axis, highest) picks upper along axes[i]
        at = list(index)
        weight_factors = []
        for position, axis in enumerate(axes):
            taps = linear[axis]
            upper = (choice >> (len(axes) - 1 - position)) & 1
            neighbours, weights = (taps.upper, taps.w1) if upper else (taps.lower, taps.w0)
            at[axis + 1] = torch.from_numpy(neighbours).to(data.device)[index[axis + 1]]
            weight_factors.append(torch.from_numpy(weights).to(data.device, data.dtype)[index[axis + 1]])
        term = data[tuple(at)]
        for factor in weight_factors:
            term = term * factor
        total = term if total is None else total + term
    assert total is not None
    return total


def _output_shape(data: torch.Tensor, linear: dict[int, _Taps]) -> list[int]:
    return [len(linear[a].lower) if a in linear else data.shape[a + 1] for a in range(data.dim() - 1)]


def _to_float16(values: torch.Tensor, exact_at) -> torch.Tensor:
    """float64 ``values`` rounded to float16 once, to the nearest, as numpy does; the voxels whose
    value is on a float16 rounding tie, or a float64 bit or two off one, take ``exact_at``'s value.

    A float64 value that close to a tie rounds to float32 exactly onto the tie, and a float32 tie
    has its low 13 mantissa bits 1000000000000 (float16 keeps 10 of float32's 23). Values below
    float16's normal range (|x| < 2^-14) are left to plain rounding: a step there is 2^-24.
    torch rounds float64 to float16 through float32, twice; rounding the ties to float32 *to odd*
    first keeps that second rounding correct.
    """
    single = values.float()
    where = ((single.view(torch.int32) & 0x1FFF) == 0x1000).nonzero(as_tuple=True)
    if where[0].numel():
        single[where] = _round_to_odd(exact_at(where))
    return single.to(torch.float16)


def _round_to_odd(values: torch.Tensor) -> torch.Tensor:
    """float64 → float32 truncated toward zero, with the last bit set when inexact."""
    single = values.float()
    inexact = single.double() != values
    away = inexact & (single.double().abs() > values.abs())
    single = torch.where(away, torch.nextafter(single, torch.zeros_like(single)), single)
    return (single.view(torch.int32) | inexact.to(torch.int32)).view(torch.float32)


def _nnunet_resampling(logits: torch.Tensor, shape: tuple[int, ...], current_spacing: Sequence[float],
                       new_spacing: Sequence[float], resampling: ExportResampling) -> torch.Tensor:
    """nnU-Net's own function, on the CPU, for what the port does not cover."""
    global fallback_count
    from nnunetv2.preprocessing.resampling.utils import (
        recursive_find_resampling_fn_by_name,
    )

    fallback_count += 1
    log.warning("resampling with nnU-Net's %s%s on the CPU (not ported to torch)",
                resampling.function, resampling.kwargs)
    function = recursive_find_resampling_fn_by_name(resampling.function)
    resampled = function(logits.cpu().numpy(), shape, current_spacing, new_spacing, **resampling.kwargs)
    return torch.as_tensor(np.asarray(resampled), dtype=logits.dtype, device=logits.device)
