"""Inference at the hardware's limit: ichseg's in-memory route against nnU-Net's predictor, per case.

What it measures, on one device (a GPU, or the CPU for a check), with start-up paid once:

- ichseg: ``Segmenter.load`` once, then per case ``load_image``, ``Segmenter.segment`` and
  ``save_mask`` (reading and writing inside the per-case time), after one untimed warm-up case;
  for one 2d model alone, one 3d_fullres model alone and the whole li2022 ensemble (3 groups x
  ``--folds``, mean rule), with test-time mirroring on and off;
- per configuration and ensemble: seconds per case, tile passes per second (nnU-Net's tiles,
  ``compute_steps_for_sliding_window`` on each case's preprocessed shape, times the mirrored
  copies: 8 for 3d, 4 for 2d), achieved TFLOP/s (FLOPs of one network pass on one tile, counted
  by ``torch.utils.flop_counter.FlopCounterMode``, times the passes, over the time) against a
  peak (``--peak-tflops``; default 990, an H100/H200's dense fp16/bf16 figure, on CUDA, and on the
  CPU a measured float32 matmul), and peak memory (CUDA: ``max_memory_allocated`` from the first
  timed case on; CPU: the process's peak RSS so far);
- nnU-Net's route for the ratio: ``nnUNetPredictor.predict_single_npy_array`` in this process for
  the same single models on ``--nnunet-cases`` cases (read with the plans' reader, mask written
  with its writer; the probabilities its ensemble route saves are timed apart), after a warm-up
  case. Its ensemble time is scaled from the single models: the time of each of the ensemble's
  models (probabilities saved) plus averaging as ``nnUNetv2_ensemble`` does (the saved
  probabilities loaded once per model, averaged, argmax, mask written), timed on one case;
- agreement, beside every speed figure: max |P_ichseg - P_nnU-Net| of the foreground probability
  (``ModelSet.probabilities`` against ``predict_single_npy_array``) and the Dice between the two
  routes' masks, on the first case, same device, in the input's geometry;
- a floor: the ensemble's FLOPs per case over the peak.

Everything (phantoms, an imported data set planned by nnU-Net's planner for ``--train-size``,
li2022 model folders with initial weights and a scaled output layer) is made once in
``--workspace`` and reused. The last thing on stdout is a markdown table; ``--json`` writes every
figure. On the CPU, small and quick::

    .venv/bin/python benchmarks/bench_gpu.py --workspace /tmp/bench-gpu --size small --folds 0 \\
        --cases 2 --device cpu

On a GPU machine (INSTANCE-sized phantoms, the 15 models)::

    python benchmarks/bench_gpu.py --workspace /tmp/bench-gpu --json /tmp/bench-gpu/gpu.json

A lent GPU machine (python 3.12, torch installed, no package registry) needs the project and its
missing dependencies carried as wheels (64 MiB in all), installed with ``pip install --no-index``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's helpers (no package here)
from bench_inference import _is_planned as is_planned
from bench_inference import describe_machine, say
from ichseg.atomic import write_json
from ichseg.errors import IchsegError
from ichseg.io.image import CTImage, case_name, is_image_file, load_image, save_mask
from ichseg.metrics.overlap import dice
from ichseg.metrics.summary import markdown_table
from ichseg.model.folder import ModelFolder, TrainedModel
from ichseg.workspace import Workspace

if TYPE_CHECKING:
    import torch

    from ichseg.model.networks import ModelSet, PreparedCase

RECIPE = "li2022"
#: Output-layer scale of the untrained models: decided probabilities, busy masks.
UNTRAINED_LOGIT_SCALE = 30.0
TRAIN_SEED, TEST_SEED = 0, 1000
STEP_SIZE = 0.5
#: Dense fp16/bf16 tensor-core peak of an H100 / H200 (TFLOP/s): the reference on CUDA by default.
H200_PEAK_TFLOPS = 990.0
GIB = 2**30


# --------------------------------------------------------------------------------------------
# Preparation: phantoms, data set, nnU-Net's plans, model folders (reused when already there)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    folder: ModelFolder
    models: tuple[TrainedModel, ...]      # the ensemble: the recipe's groups x --folds
    singles: dict[str, TrainedModel]      # configuration -> its first model, timed alone
    cases: tuple[Path, ...]               # the test phantoms
    runs: Path                            # where the routes write their masks
    stages: dict[str, float]              # seconds each preparation stage took (about 0 when reused)


@contextmanager
def stage(stages: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    stages[name] = time.perf_counter() - start
    say(f"{name}: {stages[name]:.1f} s")


def prepare(args: argparse.Namespace) -> Setup:
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.model.folder import parse_folds
    from ichseg.recipes import load_recipe
    from ichseg.testing import untrained_model
    from ichseg.training import plan

    ws = Workspace.open(args.workspace)
    root = ws.root / "bench-gpu"
    recipe = load_recipe(RECIPE)
    train_dir = root / f"phantoms-{args.train_size}" / f"train-{args.train_cases}"
    test_dir = root / f"phantoms-{args.size}" / f"test-{args.cases}"
    dataset = f"bench_gpu_{args.train_size}_{args.train_cases}"
    stages: dict[str, float] = {}
    with stage(stages, "phantoms"):
        for folder, count, seed, size in ((train_dir, args.train_cases, TRAIN_SEED, args.train_size),
                                          (test_dir, args.cases, TEST_SEED, args.size)):
            if not (folder / "cases.csv").is_file():
                synthesize(folder, count, seed=seed, size=size, overwrite=True, progress=False)
    with stage(stages, "import"):
        if dataset not in ws.datasets():
            import_dataset(train_dir, dataset, ws, overwrite=True, progress=False)
    with stage(stages, "plan"):
        if not is_planned(ws, dataset, recipe.plans_name, recipe.configurations):
            plan(dataset, recipe, workspace=ws, configurations=recipe.configurations, progress=False)
    folds = parse_folds(args.folds, recipe)
    with stage(stages, "models"):
        folder = untrained_model(dataset, replace(recipe, name=f"{RECIPE}-untrained"), workspace=ws,
                                 folds=folds, logit_scale=UNTRAINED_LOGIT_SCALE)
    models = tuple(folder.select(None, folds))
    singles: dict[str, TrainedModel] = {}
    for model in models:
        singles.setdefault(model.configuration, model)
    cases = tuple(sorted(p for p in (test_dir / "data").iterdir() if is_image_file(p)))
    return Setup(folder, models, singles, cases, root / "runs", stages)


# --------------------------------------------------------------------------------------------
# The device: clocks that wait for it, its peak memory, its reference peak
# --------------------------------------------------------------------------------------------

class Clock:
    """Wall-clock seconds read after the device's queued work is done, and peak memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int:
        """CUDA: the most memory allocated since :meth:`reset_peak`; CPU: the process's peak RSS so far."""
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def matmul_tflops(clock: Clock) -> float:
    """TFLOP/s of a large square matmul, best of 5 (float16 on CUDA, as autocast runs the
    networks; float32 on the CPU): what this device reaches on the easiest dense work."""
    import torch

    n, dtype = (8192, torch.float16) if clock.cuda else (2048, torch.float32)
    a = torch.randn(n, n, device=clock.device, dtype=dtype)
    b = torch.randn(n, n, device=clock.device, dtype=dtype)
    best = float("inf")
    for attempt in range(7):
        start = clock.now()
        torch.matmul(a, b)
        if attempt >= 2:  # two warm-up products
            best = min(best, clock.now() - start)
    return 2 * n**3 / best / 1e12


# --------------------------------------------------------------------------------------------
# Workload: tile passes and FLOPs per case, as nnU-Net tiles the preprocessed volume
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    passes: int     # network passes over a tile: tiles x mirrored copies
    flops: float


class ShapeRecorder:
    """A model set that notes the preprocessed shape of each case it prepares, so that tiles can
    be counted without preprocessing again; otherwise the loaded model set itself."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self.shapes: list[dict[Any, tuple[int, ...]]] = []

    def __len__(self) -> int:
        return len(self.models)

    def prepare(self, image: CTImage) -> PreparedCase:
        prepared = self.models.prepare(image)
        self.shapes.append({key: tuple(case.data.shape[1:]) for key, case in prepared.inputs.items()})
        return prepared

    def probabilities(self, prepared: PreparedCase) -> Iterator[Any]:
        return self.models.probabilities(prepared)


def count_tiles(shape: tuple[int, ...], patch: tuple[int, ...]) -> int:
    """nnU-Net's tiles of a (z, y, x) volume padded to at least a patch; a 2d patch tiles each slice."""
    from nnunetv2.inference.sliding_window_prediction import (
        compute_steps_for_sliding_window,
    )

    if len(patch) < len(shape):
        return shape[0] * count_tiles(shape[1:], patch)
    padded = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    return prod(len(steps) for steps in compute_steps_for_sliding_window(padded, patch, STEP_SIZE))


class WorkloadCounter:
    """Tile passes and FLOPs of cases for a model set; FLOPs per tile counted once per network kind."""

    def __init__(self) -> None:
        self.tile_flops: dict[tuple[Any, tuple[int, ...]], float] = {}

    def per_case(self, models: ModelSet, shapes: Sequence[dict[Any, tuple[int, ...]]]) -> list[Workload]:
        found = []
        for case_shapes in shapes:
            passes, flops = 0, 0.0
            for network in models.networks:
                axes = network.window.mirror_axes
                count = count_tiles(case_shapes[network.preprocessing_key], network.window.patch_size) \
                    * (2 ** len(axes) if axes else 1)
                passes += count
                flops += count * self.flops_per_tile(network)
            found.append(Workload(passes, flops))
        return found

    def flops_per_tile(self, network: Any) -> float:
        """FLOPs of one pass of the network over one patch-sized input (batch of one)."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        key = (network.preprocessing_key, tuple(network.window.patch_size))
        if key not in self.tile_flops:
            module = network.window.network
            first = next(m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
            tile = torch.zeros((1, first.in_channels, *network.window.patch_size), device=network.device)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                module(tile)
            self.tile_flops[key] = float(counter.get_total_flops())
        return self.tile_flops[key]


# --------------------------------------------------------------------------------------------
# The two routes
# --------------------------------------------------------------------------------------------

@dataclass
class Measurement:
    """A route's timed cases: seconds per case, peak memory, start-up, and the networks' work per case."""

    seconds: list[float]
    peak_bytes: int
    load_seconds: float
    workloads: list[Workload] = field(default_factory=list)

    def per_case(self, n: int | None = None) -> float:
        return float(np.mean(self.seconds[:n]))

    def passes_per_second(self) -> float:
        return sum(w.passes for w in self.workloads) / sum(self.seconds)

    def tflops(self) -> float:
        return sum(w.flops for w in self.workloads) / sum(self.seconds) / 1e12


@dataclass
class IchsegRun:
    measurement: Measurement
    first_mask: np.ndarray               # the first case's mask, in its geometry
    first_probability: np.ndarray | None  # a single model's P(hemorrhage) of the first case, in its geometry


def segment_file(segmenter: Any, path: Path, out: Path) -> np.ndarray:
    """ichseg's in-memory route on one file: read, segment, write the mask."""
    segmentation = segmenter.segment(load_image(path))
    save_mask(segmentation.image, segmentation.mask.array, out / f"{case_name(path)}.nii.gz", overwrite=True)
    return segmentation.mask.array


def run_ichseg(setup: Setup, selection: Sequence[TrainedModel], mirroring: bool, clock: Clock,
               counter: WorkloadCounter, out: Path) -> IchsegRun:
    from ichseg.ensemble.spec import EnsembleSpec
    from ichseg.segmentation.segmenter import Segmenter
    from ichseg.segmentation.settings import InferenceSettings

    out.mkdir(parents=True, exist_ok=True)
    start = clock.now()
    settings = InferenceSettings(groups=tuple(dict.fromkeys(m.group for m in selection)),
                                 folds=tuple(dict.fromkeys(m.fold for m in selection)),
                                 ensemble=EnsembleSpec("mean"), mirroring=mirroring, postprocess=False)
    loaded = Segmenter.load(setup.folder.path, settings, device=clock.device.type)
    load_seconds = clock.now() - start
    recorder = ShapeRecorder(loaded.models)  # type: ignore[arg-type]
    segmenter = Segmenter(recorder, loaded.ensemble, loaded.rule)
    segment_file(segmenter, setup.cases[0], out)  # warm-up, untimed
    recorder.shapes.clear()
    clock.reset_peak()
    seconds, masks = [], []
    for path in setup.cases:
        start = clock.now()
        masks.append(segment_file(segmenter, path, out))
        seconds.append(clock.now() - start)
    measurement = Measurement(seconds, clock.peak_bytes(), load_seconds,
                              counter.per_case(recorder.models, recorder.shapes))
    probability = first_probability(recorder.models, setup.cases[0]) if len(selection) == 1 else None
    return IchsegRun(measurement, masks[0], probability)


def first_probability(models: ModelSet, path: Path) -> np.ndarray:
    """The model set's first model's P(hemorrhage) of a case, in the case's own geometry."""
    from ichseg.segmentation.segmenter import to_input_geometry

    image = load_image(path)
    canonical = image.reoriented()
    output = next(iter(models.probabilities(models.prepare(canonical))))
    return to_input_geometry(canonical, output.probability.float().cpu().numpy(), image)


@dataclass
class NnunetRun:
    measurement: Measurement              # read, predict, write the mask
    probability_seconds: list[float]      # saving the probabilities, as its ensemble route does
    combine_seconds: float | None         # nnUNetv2_ensemble's work on one case, for the ensemble's size
    first_mask: np.ndarray
    first_probability: np.ndarray


@dataclass
class NnunetCase:
    mask: np.ndarray
    probability: np.ndarray               # P(hemorrhage)
    seconds: float                        # read, predict, write the mask
    probability_seconds: float            # save the probabilities (npz and pkl, as --save_probabilities)
    properties: dict[str, Any]            # what nnU-Net's writer needs


def nnunet_case(predictor: Any, io: Any, path: Path, out: Path, clock: Clock) -> NnunetCase:
    """nnU-Net's route on one file, reading and writing with the plans' reader and writer."""
    from batchgenerators.utilities.file_and_folder_operations import save_pickle

    start = clock.now()
    images, properties = io.read_images([str(path)])
    mask, probabilities = predictor.predict_single_npy_array(images.astype(np.float32, copy=False), properties,
                                                             None, None, True)
    io.write_seg(mask, str(out / f"{case_name(path)}.nii.gz"), properties)
    written = clock.now()
    np.savez_compressed(out / f"{case_name(path)}.npz", probabilities=probabilities)
    save_pickle(properties, str(out / f"{case_name(path)}.pkl"))
    return NnunetCase(mask, probabilities[1], written - start, clock.now() - written, properties)


def run_nnunet(model: TrainedModel, cases: Sequence[Path], mirroring: bool, clock: Clock, out: Path,
               combine: int) -> NnunetRun:
    """nnU-Net's predictor for one model on ``cases`` after a warm-up case; with ``combine`` > 0,
    also nnUNetv2_ensemble's averaging of that many models' saved probabilities of the first case."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    import ichseg.engine
    from ichseg.layout import FINAL_CHECKPOINT

    out.mkdir(parents=True, exist_ok=True)
    os.environ["nnUNet_extTrainer"] = str(Path(ichseg.engine.__file__).parent)  # where IchsegTrainer is found
    autotune = torch.backends.cudnn.benchmark  # nnU-Net turns cuDNN's autotuner on for good: restored after
    try:
        start = clock.now()
        with redirect_stdout(sys.stderr):
            predictor = nnUNetPredictor(tile_step_size=STEP_SIZE, use_gaussian=True, use_mirroring=mirroring,
                                        perform_everything_on_device=True, device=clock.device, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(str(model.nnunet_folder), use_folds=(model.fold,),
                                                           checkpoint_name=FINAL_CHECKPOINT)
        load_seconds = clock.now() - start
        io = predictor.plans_manager.image_reader_writer_class()
        nnunet_case(predictor, io, cases[0], out, clock)  # warm-up, untimed
        clock.reset_peak()
        done = [nnunet_case(predictor, io, path, out, clock) for path in cases]
    finally:
        torch.backends.cudnn.benchmark = autotune
    measurement = Measurement([d.seconds for d in done], clock.peak_bytes(), load_seconds)
    first = done[0]
    combined = None
    if combine:
        combined = combine_seconds(predictor, io, out / f"{case_name(cases[0])}.npz", first.properties, combine,
                                   out, clock)
    return NnunetRun(measurement, [d.probability_seconds for d in done], combined, first.mask, first.probability)


def combine_seconds(predictor: Any, io: Any, npz: Path, properties: dict[str, Any], n_models: int, out: Path,
                    clock: Clock) -> float:
    """What ``nnUNetv2_ensemble`` does for one case of ``n_models`` models (the one saved file
    stands for each): load every model's probabilities, average, argmax, write the mask."""
    start = clock.now()
    total = np.load(npz)["probabilities"].astype(np.float32)
    for _ in range(n_models - 1):
        total += np.load(npz)["probabilities"]
    total /= n_models
    mask = predictor.label_manager.convert_probabilities_to_segmentation(total)
    io.write_seg(mask, str(out / "ensemble.nii.gz"), properties)
    return clock.now() - start


# --------------------------------------------------------------------------------------------
# Measuring: per mirroring setting, each configuration's single model and the ensemble
# --------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table: ichseg's figures, nnU-Net's time on the same cases, their agreement."""

    what: str
    mirroring: bool
    n_models: int
    ichseg: IchsegRun
    nnunet_per_case: float       # nnU-Net's route, per case (scaled from single models for an ensemble)
    ichseg_matched: float        # ichseg per case on the cases nnU-Net ran
    max_abs_dp: float | None = None
    dice: float | None = None
    nnunet: NnunetRun | None = None

    def as_dict(self) -> dict[str, Any]:
        m = self.ichseg.measurement
        found: dict[str, Any] = {
            "what": self.what, "mirroring": self.mirroring, "n_models": self.n_models,
            "ichseg": {"seconds": m.seconds, "seconds_per_case": m.per_case(), "load_seconds": m.load_seconds,
                       "peak_memory_bytes": m.peak_bytes, "tile_passes_per_case": [w.passes for w in m.workloads],
                       "flops_per_case": [w.flops for w in m.workloads],
                       "tile_passes_per_second": m.passes_per_second(), "tflops": m.tflops()},
            "nnunet_seconds_per_case": self.nnunet_per_case, "ichseg_seconds_per_case_same_cases": self.ichseg_matched,
            "ratio_nnunet_over_ichseg": self.nnunet_per_case / self.ichseg_matched,
            "max_abs_probability_difference": self.max_abs_dp, "dice_masks": self.dice}
        if self.nnunet is not None:
            n = self.nnunet.measurement
            found["nnunet"] = {"seconds": n.seconds, "probability_seconds": self.nnunet.probability_seconds,
                               "load_seconds": n.load_seconds, "peak_memory_bytes": n.peak_bytes,
                               "combine_seconds": self.nnunet.combine_seconds}
        return found


def measure_setting(setup: Setup, mirroring: bool, clock: Clock, counter: WorkloadCounter,
                    nnunet_cases: int) -> list[Row]:
    """The single models of each configuration and the ensemble, with ``mirroring``."""
    tag = "mirroring" if mirroring else "no-mirroring"
    rows, nnunet_runs = [], {}
    for index, (configuration, model) in enumerate(setup.singles.items()):
        label = f"{configuration} ({model.group} fold {model.fold})"
        say(f"{tag}: ichseg, {label}")
        mine = run_ichseg(setup, [model], mirroring, clock, counter, setup.runs / tag / "ichseg" / configuration)
        say(f"  {mine.measurement.per_case():.2f} s/case; nnU-Net's predictor, {label}")
        theirs = run_nnunet(model, setup.cases[:nnunet_cases], mirroring, clock,
                            setup.runs / tag / "nnunet" / configuration, combine=len(setup.models) if index == 0 else 0)
        say(f"  {theirs.measurement.per_case():.2f} s/case")
        nnunet_runs[configuration] = theirs
        theirs.measurement.workloads = mine.measurement.workloads[:nnunet_cases]  # same networks, same cases
        assert mine.first_probability is not None
        rows.append(Row(label, mirroring, 1, mine, theirs.measurement.per_case(),
                        mine.measurement.per_case(nnunet_cases),
                        float(np.abs(mine.first_probability - theirs.first_probability).max()),
                        dice(mine.first_mask > 0, theirs.first_mask > 0), theirs))
    say(f"{tag}: ichseg, ensemble of {len(setup.models)}")
    ensemble = run_ichseg(setup, setup.models, mirroring, clock, counter, setup.runs / tag / "ichseg" / "ensemble")
    say(f"  {ensemble.measurement.per_case():.2f} s/case")
    scaled = sum(nnunet_runs[m.configuration].measurement.per_case()
                 + float(np.mean(nnunet_runs[m.configuration].probability_seconds)) for m in setup.models)
    combine = next(r.combine_seconds for r in nnunet_runs.values() if r.combine_seconds is not None)
    rows.append(Row(f"ensemble ({len(setup.models)} models, mean)", mirroring, len(setup.models), ensemble,
                    scaled + combine, ensemble.measurement.per_case(nnunet_cases)))
    return rows


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def describe_device(clock: Clock) -> dict[str, Any]:
    import torch

    from ichseg.engine import nnunet_version
    from ichseg.version import __version__

    found = {**describe_machine(clock.device.type), "ichseg": __version__, "nnunetv2": nnunet_version()}
    if clock.cuda:
        properties = torch.cuda.get_device_properties(0)
        found.update(cuda=torch.version.cuda, gpu_memory_bytes=properties.total_memory,
                     gpu_multiprocessors=properties.multi_processor_count)
    return found


def describe_cases(cases: Sequence[Path]) -> dict[str, Any]:
    images = [load_image(p) for p in cases]
    return {"n_cases": len(images), "shapes_zyx": sorted({i.shape for i in images}),
            "spacings_zyx_mm": sorted({tuple(round(s, 2) for s in i.spacing) for i in images}),
            "orientations": sorted({i.orientation for i in images})}


def describe_plans(setup: Setup) -> dict[str, dict[str, Any]]:
    import json

    found = {}
    for configuration, model in setup.singles.items():
        planned = json.loads((model.nnunet_folder / "plans.json").read_text())["configurations"][configuration]
        found[configuration] = {"patch_size": planned["patch_size"], "spacing": planned["spacing"]}
    return found


def floors(rows: Sequence[Row], peak: float) -> dict[str, dict[str, float]]:
    """Per mirroring setting: the ensemble's TFLOP per case and the seconds per case at the peak."""
    found = {}
    for row in (r for r in rows if r.n_models > 1):  # li2022's ensemble has three groups at least
        tflop = float(np.mean([w.flops for w in row.ichseg.measurement.workloads])) / 1e12
        found["on" if row.mirroring else "off"] = {"tflop_per_case": tflop, "seconds_at_peak": tflop / peak}
    return found


def table(rows: Sequence[Row], peak: float) -> str:
    header = ["mirroring", "route", "models", "ichseg s/case", "tile passes/s", "TFLOP/s", "% of peak",
              "peak mem GiB", "nnU-Net s/case", "nnU-Net / ichseg", "max abs dP", "Dice"]
    body = []
    for row in rows:
        m = row.ichseg.measurement
        scaled = " (scaled)" if row.n_models > 1 else ""
        body.append(["on" if row.mirroring else "off", row.what, row.n_models, f"{m.per_case():.3f}",
                     f"{m.passes_per_second():.4g}", f"{m.tflops():.4g}", f"{100 * m.tflops() / peak:.3g}",
                     f"{m.peak_bytes / GIB:.2f}", f"{row.nnunet_per_case:.3f}{scaled}",
                     f"{row.nnunet_per_case / row.ichseg_matched:.2f}x",
                     "-" if row.max_abs_dp is None else f"{row.max_abs_dp:.1e}",
                     "-" if row.dice is None else f"{row.dice:.6f}"])
    return markdown_table(header, body)


def print_report(args: argparse.Namespace, setup: Setup, figures: dict[str, Any], rows: Sequence[Row]) -> None:
    """The context lines, then the table, last."""
    device, cases, peak = figures["device"], figures["cases"], figures["peak_tflops"]
    print("Inference at the hardware's limit: ichseg's in-memory route vs nnU-Net's predictor (same process)")
    print(f"device: {args.device}" + (f" ({device['gpu']}, {device['gpu_memory_bytes'] / GIB:.0f} GiB, "
                                      f"CUDA {device['cuda']})" if "gpu" in device else "")
          + f", {device['cpu_cores']} CPU cores, torch {device['torch']} ({device['torch_threads']} threads), "
          f"python {device['python']}, nnunetv2 {device['nnunetv2']}")
    print(f"peak: {peak:.4g} TFLOP/s ({figures['peak_source']}); a large matmul here: "
          f"{figures['matmul_tflops']:.4g} TFLOP/s ({'float16' if 'gpu' in device else 'float32'})")
    print(f"cases: {cases['n_cases']} {args.size} phantoms, shape (z, y, x) "
          f"{', '.join('x'.join(map(str, s)) for s in cases['shapes_zyx'])}, spacing (mm) "
          f"{', '.join('x'.join(map(str, s)) for s in cases['spacings_zyx_mm'])}, orientation "
          f"{', '.join(cases['orientations'])}")
    print(f"models: {RECIPE}, initial weights (output layer x {UNTRAINED_LOGIT_SCALE}), {len(setup.models)} = "
          f"{' + '.join(sorted({m.group for m in setup.models}))} x folds "
          f"{','.join(map(str, sorted({str(m.fold) for m in setup.models})))}; nnU-Net's plans for "
          f"{args.train_cases} {args.train_size} phantoms: "
          + "; ".join(f"{c} patch {p['patch_size']} spacing {[round(s, 3) for s in p['spacing']]}"
                      for c, p in figures["plans"].items()))
    print("preparation (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup.stages.items())
          + "; start-up (s): " + ", ".join(f"{r.what.split(' ')[0]} {r.ichseg.measurement.load_seconds:.1f}"
                                            for r in rows if r.mirroring == rows[0].mirroring))
    for setting, floor in figures["floor"].items():
        print(f"floor, mirroring {setting}: the ensemble's {floor['tflop_per_case']:.4g} TFLOP per case / "
              f"{peak:.4g} TFLOP/s = {floor['seconds_at_peak']:.4g} s per case (network FLOPs only)")
    print(f"ichseg s/case: read + segment + write the mask, mean of {cases['n_cases']} cases after a warm-up case; "
          f"nnU-Net / ichseg: both routes on the first {args.nnunet_cases} case(s); the ensemble's nnU-Net time "
          "is scaled from its single models (each model's time with probabilities saved, plus "
          "nnUNetv2_ensemble's averaging), so its agreement is that of the single models above; "
          "max abs dP and Dice: the first case's foreground probability and mask, the two routes; peak mem: "
          + ("max_memory_allocated" if "gpu" in device else "the process's peak RSS so far"))
    print()
    print(table(rows, peak))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="folder for phantoms, data set, plans, models and masks (reused when run again)")
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="full",
                        help="size of the phantoms predicted (default full: 512 x 512 x ~30, INSTANCE-like)")
    parser.add_argument("--train-size", choices=("tiny", "small", "full"), default=None,
                        help="size of the phantoms planned on (default: --size, so that the plans are nnU-Net's "
                             "own for such cases)")
    parser.add_argument("--train-cases", type=int, default=5,
                        help="phantoms planned on (at least 5, for nnU-Net's five-fold splits; default 5)")
    parser.add_argument("--cases", type=int, default=4, help="test cases timed (default 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--folds", default="0,1,2,3,4", help="folds of each group (default 0-4: 15 models)")
    parser.add_argument("--mirroring", default="on,off", help="test-time mirroring settings to time (default on,off)")
    parser.add_argument("--nnunet-cases", type=int, default=2,
                        help="cases nnU-Net's predictor is timed on, per model (default 2)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"the device's peak (default: {H200_PEAK_TFLOPS:g} on CUDA, a measured matmul on the CPU)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file (replaced if present)")
    args = parser.parse_args(argv)
    settings = {"on": True, "off": False}
    names = [m.strip() for m in args.mirroring.split(",") if m.strip()]
    if not names or set(names) - set(settings):
        parser.error(f"--mirroring: a list of on and off, got {args.mirroring!r}")
    args.mirroring = [settings[name] for name in dict.fromkeys(names)]
    if args.train_cases < 5 or args.cases < 1 or not 1 <= args.nnunet_cases <= args.cases:
        parser.error("--train-cases must be at least 5, --cases at least 1, --nnunet-cases from 1 to --cases")
    args.train_size = args.train_size or args.size
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    setup = prepare(args)
    clock = Clock(torch.device(args.device))
    say("matmul reference")
    matmul = matmul_tflops(clock)
    peak = args.peak_tflops or (H200_PEAK_TFLOPS if clock.cuda else matmul)
    counter = WorkloadCounter()
    rows = [row for mirroring in args.mirroring
            for row in measure_setting(setup, mirroring, clock, counter, args.nnunet_cases)]
    figures = {
        "device": describe_device(clock), "cases": describe_cases(setup.cases), "plans": describe_plans(setup),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "preparation_seconds": setup.stages, "matmul_tflops": matmul, "peak_tflops": peak,
        "peak_source": "--peak-tflops" if args.peak_tflops else
        ("H100/H200 dense fp16/bf16" if clock.cuda else "float32 matmul measured here"),
        "tile_flops": {f"{key[2]} {list(patch)}": flops for (key, patch), flops in counter.tile_flops.items()},
        "floor": floors(rows, peak), "rows": [row.as_dict() for row in rows]}
    if args.json:
        write_json(args.json, figures, overwrite=True)
        say(f"figures written to {args.json}")
    print_report(args, setup, figures, rows)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IchsegError as error:
        print(f"bench_gpu: error: {error}", file=sys.stderr)
        sys.exit(2)
