"""nnU-Net's sliding-window prediction without nnU-Net's predictor class.

``nnUNetPredictor`` lives in a module that imports ``torch._dynamo`` and nnU-Net's data loading
for training: seconds of start-up that prediction does not use. This is the same computation,
step for step: the input padded to at least one patch (``pad_nd_image``), the same tiles in the
same order (``compute_steps_for_sliding_window``; a 2d network tiles every slice), each tile
predicted with the same mirroring average, weighted by the same Gaussian (``compute_gaussian``),
accumulated in float16 in the same order, divided by the summed weights, autocast on CUDA. So the
logits equal nnU-Net's (tested against ``nnUNetPredictor``).

One difference, on GPUs only: a tile and its mirrored copies go through the network as one
batch, which fills a large GPU better than nnU-Net's passes of one; the average is summed in
nnU-Net's order. When such a batch does not fit in memory, one-by-one passes take over for good.
"""

from __future__ import annotations

import itertools
import sys
from contextlib import nullcontext
from dataclasses import dataclass

import torch

#: nnU-Net's Gaussian: sigma 1/8 of the patch, peak 10 (so that float16 sums stay accurate).
GAUSSIAN_SIGMA_SCALE = 1.0 / 8
GAUSSIAN_PEAK = 10

Slicer = tuple[slice | int, ...]


@dataclass
class SlidingWindow:
    """A network predicting whole (c, z, y, x) volumes tile by tile.

    ``patch_size`` has 3 entries for a 3d network and 2 for a 2d one (which sees one slice at a
    time); ``mirror_axes`` are the patch axes to mirror for test-time augmentation (None: off);
    ``mirror_batch`` mirrored copies of a tile go through the network in one pass (1: nnU-Net's
    loop; a batch that does not fit in GPU memory falls back to 1).
    """

    network: torch.nn.Module
    patch_size: tuple[int, ...]
    num_heads: int
    device: torch.device
    step_size: float = 0.5
    mirror_axes: tuple[int, ...] | None = None
    mirror_batch: int = 1
    verbose: bool = False

    @torch.inference_mode()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """float16 logits (heads, z, y, x) of a preprocessed (c, z, y, x) volume."""
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        cuda = self.device.type == "cuda"
        with torch.autocast("cuda") if cuda else nullcontext():
            data, revert = pad_nd_image(image, self.patch_size, "constant", {"value": 0}, True, None)
            slicers = tile_slicers(tuple(data.shape[1:]), self.patch_size, self.step_size)
            if self.verbose:
                mirrors = 2 ** len(self.mirror_axes) if self.mirror_axes else 1
                print(f"sliding window: input {tuple(image.shape[1:])}, {len(slicers)} tiles of {self.patch_size} "
                      f"x {mirrors} mirror(s), step {self.step_size}, on {self.device}", file=sys.stderr)
            if cuda:
                try:
                    logits = self._accumulate(data, slicers, self.device)
                except torch.OutOfMemoryError:  # nnU-Net's fallback: results held on the host
                    torch.cuda.empty_cache()
                    logits = self._accumulate(data, slicers, torch.device("cpu"))
            else:
                logits = self._accumulate(data, slicers, self.device)
            return logits[(slice(None), *revert[1:])]

    def _accumulate(self, data: torch.Tensor, slicers: list[Slicer], results_device: torch.device) -> torch.Tensor:
        from nnunetv2.inference.sliding_window_prediction import (
            compute_gaussian,  # imports scipy.ndimage: on first use
        )

        data = data.to(results_device)
        logits = torch.zeros((self.num_heads, *data.shape[1:]), dtype=torch.half, device=results_device)
        weights = torch.zeros(data.shape[1:], dtype=torch.half, device=results_device)
        gaussian = compute_gaussian(tuple(self.patch_size), sigma_scale=GAUSSIAN_SIGMA_SCALE,
                                    value_scaling_factor=GAUSSIAN_PEAK, device=results_device)
        for slicer in slicers:
            tile = torch.clone(data[slicer][None], memory_format=torch.contiguous_format).to(self.device)
            prediction = self.mirrored_prediction(tile)[0].to(results_device)
            prediction *= gaussian
            logits[slicer] += prediction
            weights[slicer[1:]] += gaussian
        torch.div(logits, weights, out=logits)
        if torch.any(torch.isinf(logits)):
            raise RuntimeError("infinite logits: the float16 accumulation overflowed")
        return logits

    def mirrored_prediction(self, tile: torch.Tensor) -> torch.Tensor:
        """The network on a (1, c, ...) tile, averaged over its mirrored copies (nnU-Net's sum order),
        ``mirror_batch`` copies per network pass."""
        if not self.mirror_axes:
            return self.network(tile)
        dims = [axis + 2 for axis in self.mirror_axes]
        flips = [(), *(combo for count in range(1, len(dims) + 1) for combo in itertools.combinations(dims, count))]
        try:
            outputs = self._mirrored_outputs(tile, flips)
        except torch.OutOfMemoryError:
            if self.mirror_batch == 1:
                raise
            self.mirror_batch = 1  # for good: nnU-Net's one copy per pass
            torch.cuda.empty_cache()
            outputs = self._mirrored_outputs(tile, flips)
        prediction = outputs[0]
        for output in outputs[1:]:
            prediction += output
        return prediction / len(flips)

    def _mirrored_outputs(self, tile: torch.Tensor, flips: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """The network's output on each mirrored copy of ``tile``, mirrored back."""
        outputs = []
        for start in range(0, len(flips), self.mirror_batch):
            chunk = flips[start:start + self.mirror_batch]
            batch = self.network(torch.cat([torch.flip(tile, dims) if dims else tile for dims in chunk]))
            outputs += [torch.flip(batch[i:i + 1], dims) if dims else batch[i:i + 1].clone()
                        for i, dims in enumerate(chunk)]
        return outputs


def tile_slicers(image_size: tuple[int, ...], patch_size: tuple[int, ...], step_size: float) -> list[Slicer]:
    """nnU-Net's tiles of a (z, y, x) volume, in nnU-Net's order; a 2d patch tiles every slice."""
    from nnunetv2.inference.sliding_window_prediction import (
        compute_steps_for_sliding_window,
    )

    if len(patch_size) < len(image_size):
        steps = compute_steps_for_sliding_window(image_size[1:], patch_size, step_size)
        return [(slice(None), z, *(slice(s, s + p) for s, p in zip(start, patch_size, strict=True)))
                for z in range(image_size[0]) for start in itertools.product(*steps)]
    steps = compute_steps_for_sliding_window(image_size, patch_size, step_size)
    return [(slice(None), *(slice(s, s + p) for s, p in zip(start, patch_size, strict=True)))
            for start in itertools.product(*steps)]
