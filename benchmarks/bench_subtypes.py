"""Hemorrhage types as classes: per-type Dice of a model trained on typed phantoms, and what several
classes cost in prediction on a CPU against one.

Two measurements, each through ichseg's public Python API, in one run:

1. Per-type Dice. Typed phantoms (``synthesize(..., subtypes=True)``: 1 EDH, 2 IPH, 3 IVH,
   4 SAH, 5 SDH) for training (seed 0) and for a held-out set whose seed is the first from 1000
   on whose cases hold every type (the types found in the held-out labels are printed); the
   training set is imported (its classes kept), planned (3d_fullres) and one model is trained as
   ``ichseg demo`` trains it (li2022, group 3d_wce, fold 'full', ``--epochs`` x ``--iterations``).
   The held-out cases are predicted without and with the intracranial rule (the demo saves that
   rule too) and scored by ``ichseg.metrics.evaluate``: per type and for any hemorrhage, the cases
   where it is in the reference, the cases scored (the evaluator scores a type where it is in
   either mask; any hemorrhage in every case), the mean Dice of those, the summed false-positive
   volume, and the cases where the type is predicted but absent from the reference.
2. CPU cost of six classes against one. The same training phantoms imported twice, with their
   types and as one class (``labels="hemorrhage=1+2+3+4+5"``), planned alike, and a model with
   initial weights made for each (``ichseg.testing.untrained_model``: the network's output layer
   has 6 or 2 channels). ``Segmenter.segment`` of one ``--timing-size`` phantom (default
   ``full``: 512 x 512) is timed for each, after one untimed warm-up each, alternating
   one-class and six-class runs ``--repeat`` times; medians and their ratio are printed. Sanity
   line: on the six-class model's class probabilities, ichseg's argmax (``first_argmax``, used
   by the ensemble) against ``numpy.argmax``, and the class map ``segment`` returned against
   ``numpy.argmax`` of the same probabilities.

Everything is made in ``--workspace`` (default /tmp/bench-subtypes) on first use and reused
afterwards; a model trained for another schedule lives beside the first. Progress goes to
stderr, the tables last to stdout. A model trained on phantoms tests the pipeline; its Dice says
nothing about patients' scans. Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_subtypes.py
    .venv/bin/python benchmarks/bench_subtypes.py --cases 5 --test-cases 2 --epochs 1 --iterations 2 \\
        --timing-size small --repeat 2   # a check in a few minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import IchsegError
from ichseg.labels import SUBTYPES
from ichseg.metrics.overlap import dice
from ichseg.workspace import Workspace

#: As ``ichseg demo``: li2022's 3D group with Adam and weighted cross-entropy, one model on all cases.
RECIPE, GROUP, FOLD = "li2022", "3d_wce", "full"
TRAIN_SEED, FIRST_TEST_SEED = 0, 1000
#: How many held-out seeds are tried for one whose cases hold every type.
SEED_TRIES = 200
#: Output-layer scale of the untrained models: decided probabilities, busy class maps.
UNTRAINED_LOGIT_SCALE = 30.0
TYPES = SUBTYPES.names[1:]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Phantoms and data sets (made once per workspace)
# --------------------------------------------------------------------------------------------

def held_out_seed(n_cases: int, size: str) -> tuple[int, set[str]]:
    """The first seed from 1000 on whose ``n_cases`` cases hold every type; else the seed
    whose cases hold the most types."""
    from ichseg.data.synth import TYPE_ABBREVIATIONS, case_seed, generate_case

    best: tuple[int, set[str]] = (FIRST_TEST_SEED, set())
    for seed in range(FIRST_TEST_SEED, FIRST_TEST_SEED + SEED_TRIES):
        found = {TYPE_ABBREVIATIONS[kind] for index in range(n_cases)
                 for kind in generate_case(case_seed(seed, index), size).types}
        if len(found) > len(best[1]):
            best = (seed, found)
        if len(found) == len(TYPES):
            break
    return best


def phantoms(folder: Path, n_cases: int, seed: int, size: str) -> Path:
    from ichseg.data.synth import synthesize

    if not (folder / "cases.csv").is_file():
        say(f"synthesising {n_cases} typed {size} phantoms (seed {seed}) in {folder}")
        synthesize(folder, n_cases, seed=seed, size=size, overwrite=True, progress=False, subtypes=True)
    return folder


def types_in_labels(label_dir: Path) -> dict[str, list[str]]:
    """Per case, the types its reference label holds (read from the files)."""
    from ichseg.io import load_image
    from ichseg.io.image import case_name, is_image_file

    found = {}
    for path in sorted(p for p in label_dir.iterdir() if is_image_file(p)):
        values = np.unique(load_image(path).array)
        found[case_name(path)] = [SUBTYPES.name(int(v)) for v in values if v != 0]
    return found


def imported_and_planned(ws: Workspace, source: Path, dataset: str, labels: str | None = None) -> str:
    from ichseg.data.importer import import_dataset
    from ichseg.engine import require_plans
    from ichseg.recipes import load_recipe
    from ichseg.training import plan

    if dataset not in ws.datasets():
        say(f"importing {source} as data set {dataset!r}" + (f" (labels {labels})" if labels else ""))
        import_dataset(source, dataset, ws, overwrite=True, progress=False, labels=labels)
    recipe = load_recipe(RECIPE)
    try:
        require_plans(ws, ws.dataset_folder_name(dataset), recipe.plans_name, "3d_fullres")
    except IchsegError:
        say(f"planning {dataset} for {RECIPE} (3d_fullres)")
        plan(dataset, recipe, workspace=ws, configurations=("3d_fullres",), progress=False)
    return dataset


def plans_of(ws: Workspace, dataset: str) -> dict[str, Any]:
    from ichseg.engine import require_plans
    from ichseg.recipes import load_recipe

    plans = require_plans(ws, ws.dataset_folder_name(dataset), load_recipe(RECIPE).plans_name, "3d_fullres")
    return plans["configurations"]["3d_fullres"]


# --------------------------------------------------------------------------------------------
# 1. Per-type Dice of a trained model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TypeRow:
    name: str
    in_reference: int
    scored: int
    dice: float
    fp_ml: float
    false_alarms: int  # cases where it is predicted and not in the reference


def type_rows(evaluation: Any) -> list[TypeRow]:
    """Per type, then any hemorrhage, from the evaluator's rows (its scoring rule kept)."""
    rows = []
    summaries = evaluation.class_summaries()
    for name in TYPES:
        scored = evaluation.scored_rows(name)
        rows.append(TypeRow(name, sum(float(r["volume_ref_ml"]) > 0 for r in scored), len(scored),
                            summaries[name]["metrics"]["dice"]["mean"] if scored else float("nan"),
                            sum(float(r["fp_ml"]) for r in scored),
                            sum(float(r["volume_ref_ml"]) == 0 for r in scored)))
    every = evaluation.rows
    rows.append(TypeRow("any", sum(float(r["volume_ref_ml"]) > 0 for r in every), len(every),
                        evaluation.summary(["dice"])["dice"]["mean"], sum(float(r["fp_ml"]) for r in every),
                        sum(float(r["volume_ref_ml"]) == 0 and float(r["volume_pred_ml"]) > 0 for r in every)))
    return rows


def measure_dice(args: argparse.Namespace, ws: Workspace, train_dir: Path) -> dict[str, Any]:
    from ichseg.commands import predict, train
    from ichseg.metrics import evaluate
    from ichseg.postprocessing import Rule, save_rule
    from ichseg.recipes import load_recipe
    from ichseg.report.options import OutputOptions

    root = ws.root / "bench"
    dataset = imported_and_planned(ws, train_dir, f"subtypes_{args.size}_{args.cases}")
    seed = args.test_seed
    chosen = root / f"held-out-seed-{args.size}-{args.test_cases}.txt"  # the search, made once
    if seed is None and chosen.is_file():
        seed = int(chosen.read_text())
    elif seed is None:
        say(f"looking for a held-out seed from {FIRST_TEST_SEED} on whose {args.test_cases} cases hold every type")
        seed, _ = held_out_seed(args.test_cases, args.size)
        chosen.write_text(f"{seed}\n")
    test_dir = phantoms(root / f"phantoms-{args.size}" / f"test-{args.test_cases}-seed{seed}", args.test_cases,
                        seed, args.size)
    held_out = types_in_labels(test_dir / "label")

    recipe = load_recipe(RECIPE)
    schedule = f"{args.epochs}x{args.iterations}"
    say(f"training {RECIPE} {GROUP} (3d_fullres, fold '{FOLD}') on {dataset}: {args.epochs} epochs x "
        f"{args.iterations} iterations, or reusing the model trained so")
    start = time.perf_counter()
    model = train(dataset, replace(recipe, name=f"{RECIPE}-{schedule}"), workspace=ws, folds=FOLD, groups=[GROUP],
                  epochs=args.epochs, iterations=args.iterations, val_iterations=2, device=args.device,
                  progress=False)
    train_seconds = time.perf_counter() - start
    if not model.postprocessing_file.is_file():  # as the demo: hemorrhage is intracranial by definition
        save_rule(model.postprocessing_file, Rule("intracranial"),
                  extra={"selected_on": "bench_subtypes: hemorrhage is intracranial by definition"})

    output = root / f"predictions-{dataset}-{schedule}-seed{seed}"
    evaluations = {}
    for route, postprocess in (("raw", False), ("rule", True)):
        folder = output / route
        if folder.exists():
            shutil.rmtree(folder)
        say(f"predicting {args.test_cases} held-out cases ({'with' if postprocess else 'without'} the "
            f"intracranial rule) into {folder}")
        predict(test_dir / "data", folder, model.path, device=args.device, postprocess=postprocess,
                options=OutputOptions(preview=False, html=False), progress=False)
        say(f"evaluating {folder} against {test_dir / 'label'}")
        evaluations[route] = evaluate(folder, test_dir / "label", output / f"evaluation-{route}", overwrite=True,
                                      plots=False, progress=False)
        if not evaluations[route].ok or not evaluations[route].is_multiclass:
            raise IchsegError(f"evaluation of {folder}: failures {evaluations[route].failures}, classes "
                              f"{evaluations[route].labels}")
    return {"dataset": dataset, "seed": seed, "test_dir": test_dir, "held_out": held_out, "model": model.path,
            "train_seconds": train_seconds, "rows": {r: type_rows(e) for r, e in evaluations.items()},
            "output": output}


def dice_table(result: dict[str, Any]) -> str:
    raw, rule = result["rows"]["raw"], result["rows"]["rule"]

    def pair(a: float, b: float, fmt: str) -> str:
        text = [("-" if np.isnan(v) else format(v, fmt)) for v in (a, b)]
        return f"{text[0]:>8} → {text[1]:<8}"

    lines = [f"{'type':<5} {'in ref':>6}  {'scored':^19}  {'mean Dice':^19}  {'FP mL (sum)':^19}  "
             f"{'predicted, not in ref':^21}"]
    for a, b in zip(raw, rule, strict=True):
        lines.append(f"{a.name:<5} {a.in_reference:>6}  {pair(a.scored, b.scored, 'd')}  "
                     f"{pair(a.dice, b.dice, '.3f')}  {pair(a.fp_ml, b.fp_ml, '.2f')}  "
                     f"{pair(a.false_alarms, b.false_alarms, 'd')}".rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 2. CPU cost of six classes against one
# --------------------------------------------------------------------------------------------

def measure_timing(args: argparse.Namespace, ws: Workspace, train_dir: Path) -> dict[str, Any]:
    import torch

    from ichseg.data.synth import case_seed, generate_case
    from ichseg.ensemble.accumulator import first_argmax
    from ichseg.recipes import load_recipe
    from ichseg.segmentation.segmenter import Segmenter, to_input_geometry
    from ichseg.segmentation.settings import InferenceSettings
    from ichseg.testing import untrained_model

    typed = imported_and_planned(ws, train_dir, f"subtypes_{args.size}_{args.cases}")
    one = imported_and_planned(ws, train_dir, f"oneclass_{args.size}_{args.cases}", labels="hemorrhage=1+2+3+4+5")
    typed_plans, one_plans = plans_of(ws, typed), plans_of(ws, one)
    same_plans = {k: v for k, v in typed_plans.items() if k != "data_identifier"} == {
        k: v for k, v in one_plans.items() if k != "data_identifier"}
    recipe = replace(load_recipe(RECIPE), name=f"{RECIPE}-untrained")
    segmenters = {}
    for label, dataset in (("one class", one), ("six classes", typed)):
        say(f"model with initial weights for {dataset} (output layer x {UNTRAINED_LOGIT_SCALE})")
        folder = untrained_model(dataset, recipe, workspace=ws, folds=FOLD, groups=[GROUP],
                                 logit_scale=UNTRAINED_LOGIT_SCALE)
        segmenters[label] = Segmenter.load(folder.path, InferenceSettings(postprocess=False), device="cpu")
    classes = {label: s.labels.n_classes for label, s in segmenters.items()}
    if classes != {"one class": 2, "six classes": 6}:
        raise IchsegError(f"the models' classes (background included) are {classes}, expected 2 and 6")

    say(f"drawing a {args.timing_size} phantom with hemorrhage")
    case = generate_case(case_seed(FIRST_TEST_SEED, 0), args.timing_size, hemorrhage=True)
    image = case.image
    times: dict[str, list[float]] = {label: [] for label in segmenters}
    results = {}
    for label, segmenter in segmenters.items():
        say(f"warm-up (untimed): {label}")
        segmenter.segment(image)
    for round_ in range(args.repeat):
        for label, segmenter in segmenters.items():
            start = time.perf_counter()
            results[label] = segmenter.segment(image)
            times[label].append(time.perf_counter() - start)
        say(f"round {round_ + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))

    say("sanity: the six-class route's argmax against numpy's")
    six = segmenters["six classes"]
    canonical = image.reoriented()
    probability = next(iter(six.models.probabilities(six.models.prepare(canonical)))).probability
    ours = first_argmax(probability)
    ours = ours.cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    array = probability.float().cpu().numpy() if isinstance(probability, torch.Tensor) else np.asarray(probability)
    reference = np.argmax(array, axis=0).astype(np.uint8)
    mask = results["six classes"].mask.array
    in_input = to_input_geometry(canonical, reference, image)
    return {"times": times, "shape": image.shape, "spacing": image.spacing, "planned": typed_plans,
            "same_plans": same_plans, "classes": classes, "threads": torch.get_num_threads(),
            "argmax_equal": float(np.mean(ours == reference)),
            "map_equal": float(np.mean(mask == in_input)), "map_dice": dice(mask != 0, in_input != 0),
            "present": [SUBTYPES.name(int(v)) for v in np.unique(reference) if v != 0],
            "voxels": int(np.prod(array.shape[1:]))}


def timing_table(result: dict[str, Any]) -> str:
    times = result["times"]
    medians = {label: statistics.median(values) for label, values in times.items()}
    lines = [f"{'model':<12} {'classes':>7} {'median s':>9} {'min s':>7} {'max s':>7}  runs"]
    for label, values in times.items():
        lines.append(f"{label:<12} {result['classes'][label]:>7} {medians[label]:>9.2f} {min(values):>7.2f} "
                     f"{max(values):>7.2f}  " + ", ".join(f"{v:.2f}" for v in values))
    lines.append(f"ratio six classes / one class (medians): {medians['six classes'] / medians['one class']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/bench-subtypes"),
                        help="where phantoms, data sets, models and predictions are made and reused "
                             "(default /tmp/bench-subtypes)")
    parser.add_argument("--cases", type=int, default=10, help="training phantoms (default 10, as the demo)")
    parser.add_argument("--test-cases", type=int, default=4, help="held-out phantoms (default 4)")
    parser.add_argument("--test-seed", type=int, default=None,
                        help="seed of the held-out phantoms (default: the first from 1000 whose cases hold every type)")
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="tiny",
                        help="size of the training and held-out phantoms (default tiny, as the demo)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default 25, as the demo)")
    parser.add_argument("--iterations", type=int, default=10, help="iterations per epoch (default 10, as the demo)")
    parser.add_argument("--device", default="auto", help="training and prediction of part 1 (default auto); "
                                                          "the timing always runs on the CPU")
    parser.add_argument("--timing-size", choices=("tiny", "small", "full"), default="full",
                        help="size of the phantom segmented in the timing (default full: 512 x 512)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per model, alternating (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads (default: torch's own, or OMP_NUM_THREADS)")
    parser.add_argument("--only", choices=("dice", "timing"), default=None, help="run one of the two parts")
    args = parser.parse_args(argv)
    if min(args.cases, args.test_cases, args.epochs, args.iterations, args.repeat) < 1:
        parser.error("--cases, --test-cases, --epochs, --iterations and --repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[variable] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ws = Workspace.open(args.workspace)
    train_dir = phantoms(ws.root / "bench" / f"phantoms-{args.size}" / f"train-{args.cases}", args.cases,
                         TRAIN_SEED, args.size)
    dice_result = measure_dice(args, ws, train_dir) if args.only != "timing" else None
    timing = measure_timing(args, ws, train_dir) if args.only != "dice" else None

    import torch

    print(f"bench_subtypes: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; workspace {ws.root}; "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    if dice_result is not None:
        held_out = dice_result["held_out"]
        present = sorted({t for types in held_out.values() for t in types}, key=TYPES.index)
        missing = [t for t in TYPES if t not in present]
        print()
        print(f"1. Per-type Dice: {RECIPE} {GROUP} (3d_fullres, fold '{FOLD}'), {args.cases} typed {args.size} "
              f"phantoms (seed {TRAIN_SEED}), {args.epochs} epochs x {args.iterations} iterations "
              f"(training call {dice_result['train_seconds'] / 60:.1f} min in this run; seconds when the model "
              f"was reused)")
        print(f"held-out: {args.test_cases} phantoms, seed {dice_result['seed']}: "
              + "; ".join(f"{case} {'+'.join(types) or 'none'}" for case, types in held_out.items())
              + f" -> types present: {', '.join(present) or 'none'}"
              + (f"; absent: {', '.join(missing)}" if missing else " (all five)"))
        print(f"model: {dice_result['model']}; evaluation files: {dice_result['output']}/evaluation-{{raw,rule}}")
        print()
        print(dice_table(dice_result))
        print("Columns: without the intracranial rule → with it. 'scored': cases where the type is in the "
              "reference or the prediction (the evaluator's rule; any hemorrhage: every case, Dice 1 where both "
              "are empty); mean Dice over those; FP mL summed over the held-out cases. "
              "A model trained on phantoms tests the pipeline, not patients' scans.")
    if timing is not None:
        planned = timing["planned"]
        print()
        print(f"2. CPU cost of six classes against one: Segmenter.segment of one {args.timing_size} phantom "
              f"{'x'.join(map(str, timing['shape']))} (z, y, x) at "
              f"{'x'.join(f'{s:.3g}' for s in timing['spacing'])} mm; models with initial weights "
              f"({RECIPE} {GROUP}, 3d_fullres, fold '{FOLD}'), mirroring on, no postprocessing, "
              f"{timing['threads']} torch thread(s)")
        print(f"plans ({args.size} training phantoms): spacing {planned.get('spacing')}, patch "
              f"{planned.get('patch_size')}; one-class and typed data sets planned alike: "
              f"{'yes' if timing['same_plans'] else 'NO'}")
        print(f"one untimed warm-up each, then {args.repeat} runs each alternating one class, six classes")
        print()
        print(timing_table(timing))
        print(f"sanity (six classes, {timing['voxels']:,} voxels, classes argmaxed: "
              f"{', '.join(timing['present']) or 'background only'}): first_argmax = numpy argmax on "
              f"{timing['argmax_equal']:.2%} of voxels; segment's class map = numpy argmax of the same "
              f"probabilities on {timing['map_equal']:.2%} of voxels, any-hemorrhage Dice {timing['map_dice']:.4f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IchsegError as error:
        print(f"bench_subtypes: error: {error}", file=sys.stderr)
        sys.exit(2)
