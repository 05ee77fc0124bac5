"""Inference speed: ``ichseg predict`` against nnU-Net's own command-line route, same models, same cases.

Four comparisons, each timed in the same run and checked for agreement (Dice between the masks):

- one model: ``ichseg predict --group G --fold F`` vs ``nnUNetv2_predict_from_modelfolder -f F``;
- mean ensemble: ``ichseg predict --ensemble mean`` vs ``nnUNetv2_predict_from_modelfolder
  --save_probabilities`` once per (group, fold), then ``nnUNetv2_ensemble`` over those folders;
- majority vote: ``ichseg predict --ensemble vote`` vs one nnU-Net prediction per (group, fold) and
  a vote over the saved masks, computed here (its time is counted);
- mean ensemble, folds in one call: the same ichseg run vs one nnU-Net call per group with all its
  folds (nnU-Net averages the folds' logits in memory) and ``nnUNetv2_ensemble`` across groups,
  the fastest route nnU-Net offers. Its masks may differ slightly: logits, not probabilities,
  are averaged across folds.

Everything the benchmark needs (phantoms, an imported and planned data set, a model folder) is
made in ``--workspace`` on first use and reused afterwards. The models are planned on
``--train-size`` phantoms and predict ``--size`` phantoms: tiny plans with full-size inputs (the
default, as a model from ``make demo`` meets real scans) send every case through nnU-Net's
resampling to the plans' spacing and back to 512 x 512, where the two routes could part. With
``--weights untrained`` (the default) the models keep nnU-Net's initial weights with a scaled
output layer: no training, and busy masks whose every boundary shows a resampling difference;
``--weights trained`` trains ``--epochs`` x ``--iterations``. Agreement is printed per case for
every comparison; a case where one route is empty and the other is not counts as Dice 0. Times are
wall-clock times of whole commands, start-up, reading and writing included. Run with the
project's interpreter::

    .venv/bin/python benchmarks/bench_inference.py --workspace /tmp/bench --cases 3 --folds 0 \\
        --compare single --device cpu
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.atomic import atomic_dir, write_json
from ichseg.data.derived import IMAGE_SUFFIX
from ichseg.errors import IchsegError, ModelError
from ichseg.io.image import case_name, is_image_file, load_image, save_mask
from ichseg.metrics.overlap import dice
from ichseg.metrics.summary import text_table
from ichseg.model.folder import ModelFolder, TrainedModel
from ichseg.workspace import Workspace

RECIPES = ("li2022", "nnunet")
#: Output-layer scale of untrained models: decided probabilities, busy masks.
UNTRAINED_LOGIT_SCALE = 30.0
TRAIN_SEED, TEST_SEED = 0, 1000
#: nnU-Net's own defaults for ``-npp`` and ``-nps`` of its predict commands.
NNUNET_DEFAULT_PROCESSES = 3
BIN = Path(sys.executable).parent  # console scripts are looked up here first, then on PATH


# --------------------------------------------------------------------------------------------
# Preparation: phantoms, data set, plans, trained models (reused when already there)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setup:
    """Everything the routes read, made once per workspace, size and number of cases."""

    root: Path               # WORKSPACE/bench: inputs and run folders
    cases: Path              # the test phantoms as they are (ichseg's input)
    nnunet_cases: Path       # the same files named NAME_0000.nii.gz (nnU-Net's input)
    warmup_cases: Path       # the first test case alone, both namings, for the untimed warm-up
    warmup_nnunet_cases: Path
    model: ModelFolder
    models: tuple[TrainedModel, ...]  # the (group, fold) models compared, in recipe order


def prepare(args: argparse.Namespace) -> Setup:
    from ichseg.data.synth import synthesize

    ws = Workspace.open(args.workspace)
    root = ws.root / "bench"
    train_dir = root / f"phantoms-{args.train_size}" / f"train-{args.train_cases}"
    test_dir = root / f"phantoms-{args.size}" / f"test-{args.cases}"
    phantoms = [(test_dir, args.cases, TEST_SEED, args.size)]
    if args.model is None:
        phantoms.append((train_dir, args.train_cases, TRAIN_SEED, args.train_size))
    for folder, count, seed, size in phantoms:
        if not (folder / "cases.csv").is_file():
            say(f"synthesising {count} {size} phantoms in {folder}")
            synthesize(folder, count, seed=seed, size=size, overwrite=True, progress=False)

    if args.model is not None:
        model, models = _given_model(args)
    else:
        model, models = _made_model(args, ws, train_dir)
    cases = sorted(p for p in (test_dir / "data").iterdir() if is_image_file(p))
    inputs = root / f"inputs-{args.size}-{args.cases}"
    folders = [inputs / "nnunet", inputs / "warmup", inputs / "warmup-nnunet"]
    for folder, files, nnunet_names in zip(folders, (cases, cases[:1], cases[:1]), (True, False, True), strict=True):
        _copy_cases(files, folder, nnunet_names)
    return Setup(root, test_dir / "data", *folders, model, models)


def _given_model(args: argparse.Namespace) -> tuple[ModelFolder, tuple[TrainedModel, ...]]:
    """``--model``: a trained folder as it is (``make demo``'s, say), its models of ``--folds``."""
    from ichseg.model.folder import parse_folds

    model = ModelFolder.open(args.model)
    if not model.recipe.preprocessing.is_identity:
        raise IchsegError(f"{args.model}: its recipe windows or pads the CT; nnU-Net's route would need "
                          f"preprocessed copies, which this benchmark does not make")
    folds = parse_folds(args.folds, model.recipe)
    return model, tuple(m for m in model.require_models() if m.fold in folds)


def _made_model(args: argparse.Namespace, ws: Workspace,
                train_dir: Path) -> tuple[ModelFolder, tuple[TrainedModel, ...]]:
    """The data set planned on ``--train-size`` phantoms and its models (made once)."""
    from ichseg.data.importer import import_dataset
    from ichseg.model.folder import parse_folds
    from ichseg.recipes import load_recipe
    from ichseg.training import plan

    recipe = load_recipe(args.recipe)
    if not recipe.preprocessing.is_identity:
        raise IchsegError(f"recipe {recipe.name!r} windows or pads the CT; nnU-Net's route would need "
                          f"preprocessed copies, which this benchmark does not make")
    dataset = f"bench_{args.train_size}_{args.train_cases}"
    groups = recipe.select_groups(None, None)
    configurations = tuple(dict.fromkeys(g.configuration for g in groups))
    if dataset not in ws.datasets():
        say(f"importing {train_dir} as data set {dataset!r}")
        import_dataset(train_dir, dataset, ws, overwrite=True, progress=False)
    if not _is_planned(ws, dataset, recipe.plans_name, configurations):
        say(f"planning {dataset} for {recipe.name} ({', '.join(configurations)})")
        plan(dataset, recipe, workspace=ws, configurations=configurations, progress=False)
    folds = parse_folds(args.folds, recipe)
    model = _model_folder(args, ws, dataset, recipe, folds)
    names = [g.name for g in groups]
    return model, tuple(m for m in model.require_models() if m.group in names and m.fold in folds)


def _model_folder(args: argparse.Namespace, ws: Workspace, dataset: str, recipe: Any,
                  folds: Sequence[int | str]) -> ModelFolder:
    """The models compared: initial weights (made once), or trained for the given schedule."""
    from ichseg.commands import train
    from ichseg.testing import untrained_model

    if args.weights == "untrained":  # made once: a finished model is left alone
        say(f"{recipe.name} models with initial weights (output layer x {UNTRAINED_LOGIT_SCALE})")
        return untrained_model(dataset, replace(recipe, name=f"{recipe.name}-untrained"), workspace=ws,
                               folds=folds, logit_scale=UNTRAINED_LOGIT_SCALE)
    say(f"training {recipe.name} (folds {', '.join(map(str, folds))}) for {args.epochs} epoch(s) x "
        f"{args.iterations} iteration(s), or reusing the models already trained")
    try:
        return train(dataset, recipe, workspace=ws, folds=folds, epochs=args.epochs, iterations=args.iterations,
                     val_iterations=args.iterations, device=args.device, progress=False)
    except ModelError as error:
        raise ModelError(f"{error} (here: give the --epochs and --iterations of the first run, "
                         f"or another --workspace)") from None


def _is_planned(ws: Workspace, dataset: str, plans_name: str, configurations: Sequence[str]) -> bool:
    from ichseg.engine import require_plans

    try:
        for configuration in configurations:
            require_plans(ws, ws.dataset_folder_name(dataset), plans_name, configuration)
    except IchsegError:
        return False
    return True


def _copy_cases(files: Sequence[Path], target: Path, nnunet_names: bool) -> None:
    """Copies of ``files`` in ``target`` (made once), named as nnU-Net wants (``NAME_0000``) if asked."""
    if target.is_dir():
        return
    with atomic_dir(target) as staging:
        for path in files:
            shutil.copy2(path, staging / (f"{case_name(path)}{IMAGE_SUFFIX}" if nnunet_names else path.name))


# --------------------------------------------------------------------------------------------
# Routes: a route turns a folder of cases into a folder of NAME.nii.gz masks
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Inputs:
    ichseg: Path   # original file names
    nnunet: Path   # NAME_0000.nii.gz


@dataclass(frozen=True)
class RouteOutput:
    """Where a route left its masks (``NAME.nii.gz``) and, if it has them, each model's masks."""

    masks: Path
    model_masks: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Route:
    key: str                                        # unique; names its run folder
    label: str                                      # what it runs, for the table
    run: Callable[[Inputs, Path], RouteOutput]      # (inputs, empty work folder) -> outputs


@dataclass(frozen=True)
class Comparison:
    name: str
    n_models: int
    ichseg: Route
    nnunet: Route


class Runner:
    """Runs the commands of the routes with one environment and one set of options."""

    def __init__(self, setup: Setup, args: argparse.Namespace) -> None:
        self.setup = setup
        self.device = args.device
        self.mirroring = not args.no_mirroring
        self.reports = args.reports
        self.processes = args.nnunet_processes
        self.logs = setup.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        ws = Workspace.open(args.workspace)
        engine_spec = importlib.util.find_spec("ichseg.engine")
        assert engine_spec is not None and engine_spec.submodule_search_locations
        self.env = dict(os.environ,
                        nnUNet_extTrainer=engine_spec.submodule_search_locations[0],
                        nnUNet_raw=str(ws.raw), nnUNet_preprocessed=str(ws.preprocessed),
                        nnUNet_results=str(ws.results))

    def command(self, name: str, *arguments: str | Path) -> None:
        """Run a console script of this environment; its output goes to a log, a failure stops all."""
        executable = shutil.which(name, path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
        if executable is None:
            raise IchsegError(f"{name}: not found beside {sys.executable} nor on PATH; "
                              f"run this script with the project's interpreter")
        log = self.logs / f"{name}.log"
        with open(log, "a", encoding="utf-8") as sink:
            sink.write(f"\n$ {name} {' '.join(map(str, arguments))}\n")
            sink.flush()
            done = subprocess.run([executable, *map(str, arguments)], env=self.env, stdout=sink,
                                  stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise IchsegError(f"{name} failed (exit {done.returncode}); end of {log}:\n" + "\n".join(tail))

    def ichseg(self, models: Sequence[TrainedModel], ensemble: str) -> Callable[[Inputs, Path], RouteOutput]:
        def run(inputs: Inputs, work: Path) -> Path:
            selection: list[str] = []
            for group in dict.fromkeys(m.group for m in models):
                selection += ["--group", group]
            for fold in dict.fromkeys(m.fold for m in models):
                selection += ["--fold", "full" if fold == "all" else str(fold)]  # --fold all: every fold
            outputs = [] if self.reports else ["--no-report", "--no-postprocess"]
            self.command("ichseg", "predict", "-i", inputs.ichseg, "-o", work, "--model", self.setup.model.path,
                         *selection, "--ensemble", ensemble, *outputs,
                         "--device", self.device, *([] if self.mirroring else ["--no-mirroring"]))
            return RouteOutput(work)
        return run

    def nnunet_predict(self, model_folder: Path, folds: Sequence[int | str], inputs: Path, output: Path,
                       probabilities: bool) -> None:
        self.command("nnUNetv2_predict_from_modelfolder", "-i", inputs, "-o", output, "-m", model_folder,
                     "-f", *map(str, folds), "-device", self.device, "-npp", str(self.processes),
                     "-nps", str(self.processes), "--disable_progress_bar",
                     *(["--save_probabilities"] if probabilities else []),
                     *([] if self.mirroring else ["--disable_tta"]))

    def nnunet_ensemble(self, folders: Sequence[Path], output: Path) -> None:
        self.command("nnUNetv2_ensemble", "-i", *folders, "-o", output, "-np", str(self.processes))

    def nnunet_single(self, model: TrainedModel) -> Callable[[Inputs, Path], RouteOutput]:
        def run(inputs: Inputs, work: Path) -> RouteOutput:
            self.nnunet_predict(model.nnunet_folder, [model.fold], inputs.nnunet, work, probabilities=False)
            return RouteOutput(work)
        return run

    def nnunet_per_model(self, models: Sequence[TrainedModel], probabilities: bool,
                         combine: Callable[[Sequence[Path], Path], None],
                         combined_name: str) -> Callable[[Inputs, Path], RouteOutput]:
        """One nnU-Net prediction per model into its own folder, then ``combine`` those folders."""
        def run(inputs: Inputs, work: Path) -> RouteOutput:
            folders = [work / f"{m.group}_fold{m.fold}" for m in models]
            for model, folder in zip(models, folders, strict=True):
                self.nnunet_predict(model.nnunet_folder, [model.fold], inputs.nnunet, folder,
                                    probabilities=probabilities)
            combine(folders, work / combined_name)
            return RouteOutput(work / combined_name, tuple(folders))
        return run

    def nnunet_mean(self, models: Sequence[TrainedModel]) -> Callable[[Inputs, Path], RouteOutput]:
        return self.nnunet_per_model(models, True, self.nnunet_ensemble, "ensemble")

    def nnunet_vote(self, models: Sequence[TrainedModel]) -> Callable[[Inputs, Path], RouteOutput]:
        return self.nnunet_per_model(models, False, majority_vote_folders, "vote")

    def nnunet_mean_by_group(self, models: Sequence[TrainedModel]) -> Callable[[Inputs, Path], RouteOutput]:
        groups = group_folds(models)

        def run(inputs: Inputs, work: Path) -> RouteOutput:
            several = len(groups) > 1
            folders = [work / group for group in groups]
            for (folder_path, folds), folder in zip(groups.values(), folders, strict=True):
                self.nnunet_predict(folder_path, folds, inputs.nnunet, folder, probabilities=several)
            if not several:
                return RouteOutput(folders[0])
            self.nnunet_ensemble(folders, work / "ensemble")
            return RouteOutput(work / "ensemble")
        return run


def group_folds(models: Sequence[TrainedModel]) -> dict[str, tuple[Path, list[int | str]]]:
    """Per group: its nnU-Net model folder and its folds, in the order given."""
    groups: dict[str, tuple[Path, list[int | str]]] = {}
    for model in models:
        groups.setdefault(model.group, (model.nnunet_folder, []))[1].append(model.fold)
    return groups


def majority_vote_folders(folders: Sequence[Path], output: Path) -> None:
    """Per case, hemorrhage where more than half of the folders' masks mark it (ichseg's vote rule)."""
    output.mkdir(parents=True)
    for path in sorted(p for p in folders[0].iterdir() if is_image_file(p)):
        reference = load_image(path)
        votes = np.zeros(reference.shape, dtype=np.uint8)
        for folder in folders:
            votes += load_image(folder / path.name).array > 0
        save_mask(reference, votes > len(folders) // 2, output / path.name)


def build_comparisons(runner: Runner, models: Sequence[TrainedModel], single: TrainedModel,
                      wanted: Sequence[str]) -> list[Comparison]:
    one = Comparison("one model", 1,
                     Route("ichseg-single", f"ichseg predict --group {single.group} --fold {single.fold}",
                           runner.ichseg([single], "mean")),
                     Route("nnunet-single", f"nnUNetv2_predict_from_modelfolder -f {single.fold}",
                           runner.nnunet_single(single)))
    comparisons = {"single": one}
    if len(models) > 1:
        n = len(models)
        mean = Route("ichseg-mean", "ichseg predict --ensemble mean", runner.ichseg(models, "mean"))
        comparisons["mean"] = Comparison(
            "mean ensemble", n, mean,
            Route("nnunet-mean", f"{n} x predict --save_probabilities + nnUNetv2_ensemble", runner.nnunet_mean(models)))
        comparisons["vote"] = Comparison(
            "majority vote", n, Route("ichseg-vote", "ichseg predict --ensemble vote", runner.ichseg(models, "vote")),
            Route("nnunet-vote", f"{n} x predict + vote of the masks", runner.nnunet_vote(models)))
        groups = group_folds(models)
        calls = f"{len(groups)} x predict -f {' '.join(map(str, next(iter(groups.values()))[1]))}"
        comparisons["grouped"] = Comparison(
            "mean, folds in one call", n, mean,
            Route("nnunet-grouped", calls + (" + nnUNetv2_ensemble" if len(groups) > 1 else ""),
                  runner.nnunet_mean_by_group(models)))
    return [comparisons[name] for name in wanted if name in comparisons]


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    output: RouteOutput | None = None

    @property
    def best(self) -> float:
        return min(self.seconds)


def warm_up(runner: Runner, setup: Setup) -> None:
    """Every tool once on one case, untimed: imports, checkpoints and file caches are warm for all routes.

    ichseg runs with every model; nnU-Net once per group with all its folds (each checkpoint is
    read) and, for several groups, ``nnUNetv2_ensemble`` over those outputs.
    """
    inputs = Inputs(setup.warmup_cases, setup.warmup_nnunet_cases)
    work = fresh(setup.root / "runs" / "warmup")
    runner.ichseg(setup.models, "mean")(inputs, work / "ichseg")
    runner.nnunet_mean_by_group(setup.models)(inputs, work / "nnunet")


def measure(routes: Sequence[Route], inputs: Inputs, root: Path, repeat: int) -> dict[str, Timing]:
    """Each route ``repeat`` times, the routes interleaved; the folders of the last run are kept."""
    timings = {route.key: Timing() for route in routes}
    for round_index in range(repeat):
        for route in routes:
            work = fresh(root / route.key)
            say(f"run {round_index + 1}/{repeat}: {route.label}")
            start = time.perf_counter()
            output = route.run(inputs, work)
            timings[route.key].seconds.append(time.perf_counter() - start)
            timings[route.key].output = output
            say(f"  {timings[route.key].seconds[-1]:.1f} s")
    return timings


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class CaseAgreement:
    """One case: Dice between the routes' masks (1 where both are empty, 0 where only one is),
    their voxel counts, and for ensembles whose per-model masks nnU-Net keeps, the share of voxels
    where ichseg's vote map counts as many models as nnU-Net's masks do."""

    case: str
    dice: float
    voxels_ichseg: int
    voxels_nnunet: int
    votes_equal: float | None


@dataclass(frozen=True)
class Agreement:
    cases: tuple[CaseAgreement, ...]

    @property
    def dice_mean(self) -> float:
        return float(np.mean([c.dice for c in self.cases]))

    @property
    def dice_min(self) -> float:
        return float(np.min([c.dice for c in self.cases]))

    @property
    def votes_equal(self) -> float | None:
        shares = [c.votes_equal for c in self.cases if c.votes_equal is not None]
        return float(np.mean(shares)) if shares else None

    def as_dict(self) -> dict[str, Any]:
        return {"dice_mean": self.dice_mean, "dice_min": self.dice_min, "votes_equal": self.votes_equal,
                "cases": [asdict(c) for c in self.cases]}


def agreement(ichseg: RouteOutput, nnunet: RouteOutput, names: Sequence[str]) -> Agreement:
    """The two routes' masks compared case by case."""
    found = []
    for name in names:
        a = load_image(ichseg.masks / f"{name}.nii.gz").array > 0
        b = load_image(nnunet.masks / f"{name}.nii.gz").array > 0
        if a.shape != b.shape:
            raise IchsegError(f"{name}: ichseg mask {a.shape} and nnU-Net mask {b.shape} differ in shape")
        votes_equal = None
        ichseg_votes = ichseg.masks / f"{name}_votes.nii.gz"
        if nnunet.model_masks and ichseg_votes.is_file():
            counted = sum((load_image(f / f"{name}.nii.gz").array > 0).astype(np.uint8) for f in nnunet.model_masks)
            votes_equal = float(np.mean(load_image(ichseg_votes).array == counted))
        found.append(CaseAgreement(name, float(dice(a, b)), int(a.sum()), int(b.sum()), votes_equal))
    return Agreement(tuple(found))


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def describe_machine(device: str) -> dict[str, Any]:
    import torch

    found = {"device": device, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
             "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if device == "cuda":
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def describe_cases(folder: Path) -> dict[str, Any]:
    images = [load_image(p) for p in sorted(folder.iterdir()) if is_image_file(p)]
    return {"n_cases": len(images),
            "shapes_zyx": sorted({tuple(i.shape) for i in images}),
            "spacings_zyx_mm": sorted({tuple(round(s, 2) for s in i.spacing) for i in images})}


def report_table(comparisons: Sequence[Comparison], timings: dict[str, Timing],
                 agreements: dict[str, Agreement], n_cases: int) -> str:
    header = ["comparison", "models", "ichseg s", "s/case", "nnU-Net s", "s/case", "nnU-Net/ichseg",
              "Dice mean", "Dice min", "votes equal"]
    body = []
    for c in comparisons:
        mine, theirs, agree = timings[c.ichseg.key].best, timings[c.nnunet.key].best, agreements[c.name]
        body.append([c.name, c.n_models, f"{mine:.1f}", f"{mine / n_cases:.2f}", f"{theirs:.1f}",
                     f"{theirs / n_cases:.2f}", f"{theirs / mine:.2f}x", f"{agree.dice_mean:.4f}",
                     f"{agree.dice_min:.4f}", "-" if agree.votes_equal is None else f"{agree.votes_equal:.4%}"])
    return text_table(header, body)


def case_table(comparisons: Sequence[Comparison], agreements: dict[str, Agreement]) -> str:
    """Agreement per case and comparison: Dice and mask voxels of both routes."""
    header = ["comparison", "case", "Dice", "voxels ichseg", "voxels nnU-Net", "votes equal"]
    body = [[c.name, case.case, f"{case.dice:.5f}", case.voxels_ichseg, case.voxels_nnunet,
             "-" if case.votes_equal is None else f"{case.votes_equal:.4%}"]
            for c in comparisons for case in agreements[c.name].cases]
    return text_table(header, body)


def resampling_fallbacks(logs: Path) -> int:
    """How often ichseg fell back to nnU-Net's own resampling (a port gap it logs)."""
    log = logs / "ichseg.log"
    return log.read_text(encoding="utf-8", errors="replace").count("not ported to torch") if log.is_file() else 0


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

COMPARISONS = ("single", "mean", "vote", "grouped")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="folder for phantoms, data set, models and runs (reused when run again)")
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="full",
                        help="size of the phantoms predicted (default full: INSTANCE-like)")
    parser.add_argument("--train-size", choices=("tiny", "small", "full"), default="tiny",
                        help="size of the phantoms the models are planned on (default tiny, as make demo)")
    parser.add_argument("--weights", choices=("untrained", "trained"), default="untrained",
                        help="initial weights with a scaled output layer (default), or trained ones")
    parser.add_argument("--cases", type=int, default=10, help="test cases to predict (default 10)")
    parser.add_argument("--train-cases", type=int, default=10,
                        help="training phantoms (at least 5, for five-fold splits; default 10)")
    parser.add_argument("--recipe", choices=RECIPES, default="li2022", help="default li2022: 3 groups x folds")
    parser.add_argument("--model", type=Path,
                        help="an existing ichseg model folder (make demo's, say) instead of one made here; "
                             "--recipe, --train-*, --weights, --epochs and --iterations then do not apply")
    parser.add_argument("--reports", action="store_true",
                        help="ichseg writes its default outputs (postprocessing, JSON, preview, HTML report) "
                             "instead of masks alone")
    parser.add_argument("--folds", default="0,1,2,3,4", help="folds to train and compare (default 0-4)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="with --weights trained: epochs (default 2: speed needs no good weights)")
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per epoch (default 10)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="no test-time mirroring, on both routes (nnU-Net: --disable_tta)")
    parser.add_argument("--nnunet-processes", type=int, default=NNUNET_DEFAULT_PROCESSES,
                        help="nnU-Net's -npp, -nps and nnUNetv2_ensemble -np (default 3, nnU-Net's -npp/-nps default)")
    parser.add_argument("--compare", default=",".join(COMPARISONS),
                        help=f"comparisons to run, of {', '.join(COMPARISONS)} (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="time each route N times, keep the best")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up on one case")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (replaced if present)")
    args = parser.parse_args(argv)
    args.compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    unknown = set(args.compare) - set(COMPARISONS)
    if unknown:
        parser.error(f"--compare: unknown {sorted(unknown)}; choose from {', '.join(COMPARISONS)}")
    if args.cases < 1 or args.repeat < 1 or args.nnunet_processes < 1:
        parser.error("--cases, --repeat and --nnunet-processes must be at least 1")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup = prepare(args)
    singles = [m for m in setup.models if m.configuration == "3d_fullres"] or list(setup.models)
    runner = Runner(setup, args)
    comparisons = build_comparisons(runner, setup.models, singles[0], args.compare)
    routes = list({r.key: r for c in comparisons for r in (c.ichseg, c.nnunet)}.values())
    if not args.no_warmup:
        say("warm-up (untimed) on one case")
        warm_up(runner, setup)
    timings = measure(routes, Inputs(setup.cases, setup.nnunet_cases), setup.root / "runs", args.repeat)
    names = sorted(case_name(p) for p in setup.cases.iterdir() if is_image_file(p))
    agreements = {c.name: agreement(timings[c.ichseg.key].output, timings[c.nnunet.key].output, names)
                  for c in comparisons}

    machine, cases = describe_machine(args.device), describe_cases(setup.cases)
    groups = group_folds(setup.models)
    schedule = setup.model.description["recipe"]["training"]
    print("Inference: ichseg predict vs nnU-Net's command-line route (same models, same cases, same run)")
    print(f"device: {args.device}" + (f" ({machine['gpu']})" if "gpu" in machine else "")
          + f", {machine['cpu_cores']} CPU cores, torch {machine['torch']} ({machine['torch_threads']} threads)")
    print(f"cases: {cases['n_cases']} {args.size} phantoms, shape (z, y, x) "
          f"{', '.join('x'.join(map(str, s)) for s in cases['shapes_zyx'])}, spacing (mm) "
          f"{', '.join('x'.join(map(str, s)) for s in cases['spacings_zyx_mm'])}")
    plans = setup.models[0].nnunet_folder / "plans.json"
    planned = {name: c.get("spacing") for name, c in json.loads(plans.read_text())["configurations"].items()}
    if args.model is not None:
        weights = (f"the given folder {args.model} (recipe {setup.model.recipe.name}, trained {schedule['epochs']} "
                   f"epoch(s) x {schedule['iterations_per_epoch']} iterations)")
    elif args.weights == "untrained":
        weights = f"initial weights, output layer x {UNTRAINED_LOGIT_SCALE} (busy masks: a strict agreement test)"
    else:
        weights = f"trained {schedule['epochs']} epoch(s) x {schedule['iterations_per_epoch']} iterations"
    print(f"models: {len(setup.models)} = "
          + " + ".join(f"{g} folds {','.join(map(str, folds))}" for g, (_, folds) in groups.items())
          + f"; plans' spacing in nnU-Net's axis order: {planned}; {weights}")
    print(f"mirroring: {'off' if args.no_mirroring else 'on'} on both routes; nnU-Net -npp {args.nnunet_processes} "
          f"-nps {args.nnunet_processes}, nnUNetv2_ensemble -np {args.nnunet_processes}; "
          + ("ichseg writes its default outputs (postprocessing, JSON, preview, report)" if args.reports
             else "ichseg: --no-report --no-postprocess"))
    print("inputs: ichseg reads the phantoms as they are; nnU-Net reads copies named NAME_0000.nii.gz (made untimed)")
    print(("no warm-up" if args.no_warmup else "untimed warm-up: ichseg and nnU-Net (per group) on one case first")
          + (f"; each route run {args.repeat} times, best kept" if args.repeat > 1 else "; each route run once"))
    print()
    print(report_table(comparisons, timings, agreements, cases["n_cases"]))
    for c in comparisons:
        print(f"  {c.name}: ichseg = {c.ichseg.label}; nnU-Net = {c.nnunet.label}")
    print("  votes equal: share of voxels where ichseg's vote map (NAME_votes.nii.gz) equals the number of "
          "nnU-Net's per-model masks marking the voxel")
    print()
    print("Agreement per case (Dice 1: same mask; a case empty in one route only has Dice 0)")
    print(case_table(comparisons, agreements))
    fallbacks = resampling_fallbacks(runner.logs)
    print(f"resampling: {fallbacks} call(s) of nnU-Net's own function where the torch port does not apply")

    if args.json:
        figures = {
            "machine": machine, "cases": cases, "size": args.size, "recipe": setup.model.recipe.name,
            "model": str(args.model) if args.model else None, "reports": args.reports,
            "models": [{"group": m.group, "configuration": m.configuration, "fold": m.fold} for m in setup.models],
            "train_size": args.train_size, "weights": args.weights, "resampling_fallbacks": fallbacks,
            "training": schedule, "mirroring": not args.no_mirroring, "nnunet_processes": args.nnunet_processes,
            "warmup": not args.no_warmup, "repeat": args.repeat,
            "comparisons": [
                {"name": c.name, "n_models": c.n_models,
                 "ichseg": {"command": c.ichseg.label, "seconds": timings[c.ichseg.key].seconds},
                 "nnunet": {"command": c.nnunet.label, "seconds": timings[c.nnunet.key].seconds},
                 "ratio_nnunet_over_ichseg": timings[c.nnunet.key].best / timings[c.ichseg.key].best,
                 "agreement": agreements[c.name].as_dict()}
                for c in comparisons],
        }
        write_json(args.json, figures, overwrite=True)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except IchsegError as error:
        print(f"bench_inference: error: {error}", file=sys.stderr)
        sys.exit(2)
