"""Training speed: each recipe's trainer against nnU-Net's ``nnUNetTrainer``, same plans, same device.

For every model group of the chosen recipes (li2022: 2d, 2d_wce, 3d_wce; nnunet: 3d_fullres, 2d;
liangwei2022: 3d_fullres on its windowed, padded data set), two trainers on the same plans,
configuration, fold 0 and device:

- ichseg's :class:`~ichseg.engine.trainer.IchsegTrainer`, built as ``ichseg train`` builds it: the
  job's ``TrainerParams`` come from :func:`ichseg.training.jobs.prepare_training` itself, so the loss,
  optimiser and schedule are the recipe's;
- nnU-Net's plain ``nnUNetTrainer`` (its Dice + CE loss, SGD-Nesterov), as ``nnUNetv2_train`` runs it.

Both go through nnU-Net's own loop pieces: ``on_train_start`` (network, loss, optimiser, data
loaders), then iterations of ``train_step(next(dataloader_train))``, then ``on_train_end``. Each
trainer does ``--warmup`` untimed iterations (torch.compile, cuDNN's algorithm search and caches
happen there), then ``--repeat`` rounds of ``--iterations`` timed ones, the two trainers
alternating one iteration each (ichseg, nnU-Net, ichseg, ... in the first round, nnU-Net first in
the second), so that a change in the machine's load hits both alike. it/s is one over the median
time of an iteration, data loading (``next``) included; "step" counts ``train_step`` alone;
"spread" is the interquartile range of a trainer's iteration times over their median (the larger
of the two): figures with a large spread were taken on a busy machine. CUDA is synchronised
before each clock is read. Both trainers load data with the same number of augmentation workers
(ichseg's choice for the device: none on a CPU; ``--workers`` overrides) and start from the same
seed.

The switches that differ between the two commands are, by default (``as-run``), set as each
command sets them: both turn ``cudnn.benchmark`` on for CUDA (``ichseg train`` around each
training); ``nnUNetv2_train`` compiles the network unless ``nnUNet_compile`` says otherwise,
``ichseg train`` only when ``nnUNet_compile`` is set. ``--cudnn-benchmark on|off`` and
``--compile on|off`` set them alike for both, which measures the trainers' own code. On a CPU
neither applies (nnU-Net never compiles there). Both trainers run in this process with its torch
thread count (``nnUNetv2_train`` would set it to every core on a CPU, one on CUDA).

On a CPU shared with other work, torch's threads wait for each other at every parallel region
and a step can take 10-30 times longer while the other work runs; ``--threads 1`` avoids that
(steadier, if slower, figures), and the alternation keeps the ratio fair either way.

Phantoms (``--cases``, at least 5 for the five-fold split), the imported data set and nnU-Net's
plans and preprocessing are made once in ``--workspace`` and reused. Progress goes to stderr, the
table comes last on stdout, ``--json`` writes every iteration's times and losses. On the CPU,
quick (tiny phantoms)::

    .venv/bin/python benchmarks/bench_training.py --workspace /tmp/bench-train --threads 1 --recipes li2022 \\
        --groups 3d_wce --iterations 5

On a GPU machine (INSTANCE-sized phantoms)::

    python benchmarks/bench_training.py --workspace /tmp/bench-train --size full --device cuda \\
        --json /tmp/bench-train/training.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's helpers (no package here)
from bench_inference import describe_machine, say
from ichseg.atomic import write_json
from ichseg.errors import IchsegError
from ichseg.metrics.summary import text_table
from ichseg.workspace import Workspace

if TYPE_CHECKING:
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from ichseg.recipes import Recipe
    from ichseg.training.jobs import ModelJob

RECIPES = ("li2022", "nnunet", "liangwei2022")
FOLD = 0
SEED = 0
SIDES = ("ichseg", "nnunet")


# --------------------------------------------------------------------------------------------
# Preparation: phantoms, data set, plans and preprocessing, the jobs ichseg train would run
# --------------------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> tuple[Workspace, list[ModelJob]]:
    """The workspace and, per chosen recipe and group, the job ``ichseg train`` would run (fold 0)."""
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.recipes import load_recipe
    from ichseg.training.jobs import TrainingRequest, prepare_training

    ws = Workspace.open(args.workspace)
    dataset = f"bench_training_{args.size}_{args.cases}"
    phantoms = ws.root / "bench" / f"phantoms-{args.size}" / f"training-{args.cases}"
    if not (phantoms / "cases.csv").is_file():
        say(f"synthesising {args.cases} {args.size} phantoms in {phantoms}")
        synthesize(phantoms, args.cases, seed=SEED, size=args.size, overwrite=True, progress=False)
    if dataset not in ws.datasets():
        say(f"importing {phantoms} as data set {dataset!r}")
        import_dataset(phantoms, dataset, ws, overwrite=True, progress=False)
    recipes = [load_recipe(name) for name in args.recipes]
    unknown = set(args.groups) - {g.name for recipe in recipes for g in recipe.groups}
    if unknown:
        raise IchsegError(f"--groups: no recipe of {', '.join(args.recipes)} has group(s) {', '.join(sorted(unknown))}")
    jobs: list[ModelJob] = []
    for recipe in recipes:
        chosen = [g for g in recipe.groups if not args.groups or g.name in args.groups]
        if chosen:
            ensure_planned(ws, dataset, recipe, [g.configuration for g in chosen])
            request = TrainingRequest(folds=[FOLD], groups=[g.name for g in chosen], overwrite=True)
            jobs += prepare_training(dataset, recipe, request, workspace=ws).jobs
    return ws, jobs


def ensure_planned(ws: Workspace, dataset: str, recipe: Recipe, configurations: Sequence[str]) -> None:
    """nnU-Net's plans and preprocessing of the recipe's data set (derived where it windows), once."""
    from ichseg.data.derived import derived_dataset
    from ichseg.engine import require_plans
    from ichseg.training import plan

    folder = derived_dataset(ws, dataset, recipe.preprocessing, progress=False)
    wanted = tuple(dict.fromkeys(configurations))
    try:
        for configuration in wanted:
            require_plans(ws, folder, recipe.plans_name, configuration)
    except IchsegError:
        say(f"planning and preprocessing {folder} for {recipe.name} ({', '.join(wanted)})")
        plan(dataset, recipe, workspace=ws, configurations=wanted, progress=False)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Switches:
    """Process-wide switches one side runs under: ``nnUNet_compile`` (None: left as it is, so the
    trainer's own default decides) and ``torch.backends.cudnn.benchmark``."""

    compile: str | None
    cudnn_benchmark: bool


@dataclass
class Run:
    """One trainer's measured iterations (seconds), losses and what it ran with."""

    trainer: str
    switches: Switches
    compiled: bool = False
    warmup_s: float = 0.0
    data_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def add(self, data_s: float, step_s: float, loss: float) -> None:
        self.data_s.append(data_s)
        self.step_s.append(step_s)
        self.losses.append(loss)

    @property
    def totals(self) -> list[float]:
        """Each iteration's seconds, data loading included."""
        return [data + step for data, step in zip(self.data_s, self.step_s, strict=True)]

    @property
    def spread(self) -> float:
        """Interquartile range of the iteration times over their median: how steady the machine was."""
        quartiles = statistics.quantiles(self.totals, n=4)
        return (quartiles[2] - quartiles[0]) / statistics.median(self.totals)

    @property
    def it_per_s(self) -> float:
        return 1.0 / statistics.median(self.totals)

    @property
    def step_per_s(self) -> float:
        return 1.0 / statistics.median(self.step_s)

    def as_dict(self) -> dict[str, Any]:
        return {"trainer": self.trainer, "compile_variable": self.switches.compile,
                "cudnn_benchmark": self.switches.cudnn_benchmark, "compiled": self.compiled,
                "warmup_s": self.warmup_s, "it_per_s": self.it_per_s, "step_per_s": self.step_per_s,
                "spread": self.spread,
                "median_data_s": statistics.median(self.data_s), "data_s": self.data_s,
                "step_s": self.step_s, "losses": self.losses}


def side_switches(args: argparse.Namespace, device: torch.device) -> dict[str, Switches]:
    """Each side's switches: as its command sets them (``as-run``), or alike for both."""
    compile_value = {"as-run": None, "on": "1", "off": "0"}[args.compile]
    cuda = device.type == "cuda"  # both commands tune cuDNN on CUDA (ichseg.engine.fold_training.cudnn_autotuning)
    benchmark = {"as-run": (cuda, cuda), "on": (True, True),
                 "off": (False, False)}[args.cudnn_benchmark]
    return {side: Switches(compile_value, flag) for side, flag in zip(SIDES, benchmark, strict=True)}


def build_trainer(side: str, ws: Workspace, job: ModelJob, device: torch.device, switches: Switches,
                  workers: int | None) -> nnUNetTrainer:
    """A trainer ready to iterate: built as its command builds it, ``on_train_start`` done."""
    import numpy as np
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from ichseg.engine import IchsegTrainer, require_plans
    from ichseg.engine.environment import captured_output, nnunet_paths, scoped_environ

    plans = dict(require_plans(ws, job.nnunet_dataset, job.plans_name, job.configuration), continue_training=False)
    dataset_json = json.loads((ws.preprocessed / job.nnunet_dataset / "dataset.json").read_text())
    results = ws.root / "bench" / "training-runs" / job.model_dir.name / job.group
    variables = {} if switches.compile is None else {"nnUNet_compile": switches.compile}
    if workers is not None:
        variables["nnUNet_n_proc_DA"] = str(workers)
    trainer_class = IchsegTrainer if side == "ichseg" else nnUNetTrainer
    with scoped_environ(variables), nnunet_paths(ws, results=results, device=device), \
            captured_output(results / f"{side}.log", verbose=False):
        torch.manual_seed(SEED)
        np.random.seed(SEED)
        trainer = trainer_class(plans=plans, configuration=job.configuration, fold=job.fold,
                                dataset_json=dataset_json, device=device)
        if isinstance(trainer, IchsegTrainer):
            trainer.configure(job.params)
        trainer.disable_checkpointing = True  # on_train_end writes no checkpoint
        trainer.on_train_start()
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
    return trainer


def iteration(trainer: nnUNetTrainer, switches: Switches) -> tuple[float, float, float]:
    """One training iteration: seconds in ``next(dataloader_train)``, seconds in ``train_step``, loss."""
    import torch

    torch.backends.cudnn.benchmark = switches.cudnn_benchmark
    start = time.perf_counter()
    batch = next(trainer.dataloader_train)
    loaded = time.perf_counter()
    loss = trainer.train_step(batch)["loss"]
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    return loaded - start, time.perf_counter() - loaded, float(loss)


def compare(ws: Workspace, job: ModelJob, device: torch.device, switches: dict[str, Switches],
            args: argparse.Namespace) -> dict[str, Run]:
    """Both trainers on one job: warm-up each, then ``repeat`` rounds of timed iterations, alternating
    one iteration each, so that a change in the machine's load hits both alike."""
    from ichseg.engine.environment import captured_output, quiet_warnings

    trainers: dict[str, nnUNetTrainer] = {}
    runs: dict[str, Run] = {}
    try:
        for side in SIDES:
            trainers[side] = build_trainer(side, ws, job, device, switches[side], args.workers)
            runs[side] = Run(type(trainers[side]).__name__, switches[side],
                             compiled=hasattr(trainers[side].network, "_orig_mod"))
        with quiet_warnings():
            for side in SIDES:
                start = time.perf_counter()
                for _ in range(args.warmup):
                    iteration(trainers[side], switches[side])
                runs[side].warmup_s = time.perf_counter() - start
            for round_number in range(args.repeat):  # each round's first turn goes to the other side
                order = SIDES if round_number % 2 == 0 else SIDES[::-1]
                for _ in range(args.iterations):
                    for side in order:
                        runs[side].add(*iteration(trainers[side], switches[side]))
    finally:
        for trainer in trainers.values():  # stops the augmentation workers
            with captured_output(None, verbose=False):
                trainer.on_train_end()
    return runs


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def job_plans(ws: Workspace, job: ModelJob) -> dict[str, Any]:
    """The configuration's patch size and batch size from the plans both trainers read."""
    from ichseg.engine import require_plans

    configuration = require_plans(ws, job.nnunet_dataset, job.plans_name, job.configuration)["configurations"]
    return {"patch_size": configuration[job.configuration]["patch_size"],
            "batch_size": configuration[job.configuration]["batch_size"]}


def report_table(ws: Workspace, results: Sequence[tuple[ModelJob, dict[str, Run]]]) -> str:
    header = ["recipe", "group", "configuration", "patch", "batch", "optimiser", "ichseg it/s", "nnU-Net it/s",
              "ratio", "step ratio", "spread", "data ms ichseg", "data ms nnU-Net", "loss ichseg", "loss nnU-Net"]
    body = []
    for job, runs in results:
        mine, theirs = runs["ichseg"], runs["nnunet"]
        plans = job_plans(ws, job)
        body.append([job.model_dir.name, job.group, job.configuration, "x".join(map(str, plans["patch_size"])),
                     plans["batch_size"], job.params.training.optimizer, f"{mine.it_per_s:.3f}",
                     f"{theirs.it_per_s:.3f}", f"{mine.it_per_s / theirs.it_per_s:.2f}",
                     f"{mine.step_per_s / theirs.step_per_s:.2f}", f"{max(mine.spread, theirs.spread):.0%}",
                     f"{1000 * statistics.median(mine.data_s):.0f}", f"{1000 * statistics.median(theirs.data_s):.0f}",
                     f"{mine.losses[-1]:.4f}", f"{theirs.losses[-1]:.4f}"])
    return text_table(header, body)


def print_report(ws: Workspace, args: argparse.Namespace, device: torch.device,
                 results: Sequence[tuple[ModelJob, dict[str, Run]]]) -> dict[str, Any]:
    """The header lines and the table on stdout; returns the figures for ``--json``."""
    from ichseg.engine.environment import augmentation_workers

    machine = describe_machine(device.type)
    workers = args.workers if args.workers is not None else augmentation_workers(device)
    first = results[0][1]
    print("Training throughput: ichseg's trainer (as ichseg train builds it) vs nnU-Net's nnUNetTrainer, "
          f"same plans, fold {FOLD}, same device and data loading")
    print(f"device: {device.type}" + (f" ({machine['gpu']})" if "gpu" in machine else "")
          + f", {machine['cpu_cores']} CPU cores, torch {machine['torch']} ({machine['torch_threads']} threads), "
          f"python {machine['python']}")
    print(f"data: {args.cases} {args.size} phantoms; {workers} augmentation worker(s) per trainer")
    print(f"timing: {args.warmup} warm-up iteration(s), then {args.repeat} round(s) of {args.iterations} per trainer, "
          f"alternating; it/s = 1 / median(next(dataloader) + train_step); step ratio: train_step alone; "
          f"spread: interquartile range / median of the iteration times")
    print("switches: " + "; ".join(
        f"{side}: compiled {'yes' if first[side].compiled else 'no'}, cudnn.benchmark "
        f"{'on' if first[side].switches.cudnn_benchmark else 'off'}" for side in SIDES)
          + f" (--compile {args.compile}, --cudnn-benchmark {args.cudnn_benchmark})")
    print("ratio = ichseg it/s / nnU-Net it/s (goal >= 1.0); losses: the last timed iteration's (recipes' losses "
          "differ from nnU-Net's: a finiteness check, not a comparison)")
    print()
    table = report_table(ws, results)
    print(table, end="")
    return {"machine": machine, "size": args.size, "cases": args.cases, "workers": workers,
            "warmup": args.warmup, "iterations": args.iterations, "repeat": args.repeat,
            "compile": args.compile, "cudnn_benchmark": args.cudnn_benchmark, "table": table,
            "comparisons": [comparison_figures(ws, job, runs) for job, runs in results]}


def comparison_figures(ws: Workspace, job: ModelJob, runs: dict[str, Run]) -> dict[str, Any]:
    """One group's figures for ``--json``: the job, both ratios and every iteration of each side."""
    return {"recipe": job.model_dir.name, "group": job.group, "configuration": job.configuration,
            "plans": job.plans_name, "nnunet_dataset": job.nnunet_dataset, **job_plans(ws, job),
            "trainer_params": job.params.to_dict(),
            "ratio": runs["ichseg"].it_per_s / runs["nnunet"].it_per_s,
            "step_ratio": runs["ichseg"].step_per_s / runs["nnunet"].step_per_s,
            **{side: runs[side].as_dict() for side in SIDES}}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="folder for phantoms, data set, plans and trainer logs (reused when run again)")
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="tiny",
                        help="size of the phantoms planned and trained on (default tiny)")
    parser.add_argument("--cases", type=int, default=6, help="phantoms (at least 5, for five-fold splits; default 6)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"default: {','.join(RECIPES)}")
    parser.add_argument("--groups", default="", help="only these group names (default: every group of each recipe)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="default: cuda when available")
    parser.add_argument("--iterations", type=int,
                        help="timed iterations per trainer and round (default 10 on a CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per trainer first (default 3)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of --iterations, each begun by the other trainer (default 2)")
    parser.add_argument("--workers", type=int, help="augmentation workers for both (default: ichseg's for the device)")
    parser.add_argument("--compile", choices=("as-run", "on", "off"), default="as-run",
                        help="nnUNet_compile for both trainers; as-run: each trainer's own default")
    parser.add_argument("--cudnn-benchmark", choices=("as-run", "on", "off"), default="as-run",
                        help="as-run: on for nnU-Net (as nnUNetv2_train sets it), torch's default for ichseg")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (replaced if present)")
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    if set(args.recipes) - set(RECIPES) or not args.recipes:
        parser.error(f"--recipes: choose from {', '.join(RECIPES)}")
    if args.cases < 5 or args.warmup < 0 or args.repeat < 1 or (args.iterations is not None and args.iterations < 2):
        parser.error("--cases must be at least 5, --warmup at least 0, --repeat at least 1, --iterations at least 2")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ichseg.engine import resolve_device

    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.iterations is None:
        args.iterations = 50 if device.type == "cuda" else 10
    ws, jobs = prepare(args)
    switches = side_switches(args, device)
    results = []
    for job in jobs:
        say(f"{job.model_dir.name} {job.group} ({job.configuration}): {args.warmup} warm-up + "
            f"{args.iterations} x {args.repeat} iterations per trainer on {device.type}")
        runs = compare(ws, job, device, switches, args)
        say(f"  ichseg {runs['ichseg'].it_per_s:.3f} it/s, nnU-Net {runs['nnunet'].it_per_s:.3f} it/s")
        results.append((job, runs))
    figures = print_report(ws, args, device, results)
    if args.json:
        write_json(args.json, figures, overwrite=True)
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IchsegError as error:
        print(f"bench_training: error: {error}", file=sys.stderr)
        sys.exit(2)
