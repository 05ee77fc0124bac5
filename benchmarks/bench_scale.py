"""Scaling out: prediction through Ray against the local route, and memory as the batch grows.

Two measurements, in one run, on one local Ray instance:

- **throughput**: cases per minute of ``predict(..., ray=True, ray_workers=W)`` for each ``W`` in
  ``--workers`` (model actors, one CPU each) against the local route
  (``predict(...)`` in this process, reading and writing on background threads) on the same
  cases, with the ratios; every figure is a whole call (model loading and, for Ray, starting
  the actors and the pipeline included);
- **memory**: the peak proportional set size (PSS: shared pages divided among the processes
  that share them, so Ray's object store counts once) of this process and every process it
  started (the Ray instance: its workers, raylet, GCS), sampled every 0.25 s, while the Ray
  pipeline predicts each count of ``--counts`` cases: flat when back-pressure bounds memory.

Everything it needs (phantoms, an imported and planned data set, a one-model nnunet folder trained
on a short schedule) is made in ``--workspace`` on first use and reused. Cases are copies of a few
distinct tiny phantoms under distinct names (the work per case does not depend on the name).
Linux only (it reads ``/proc``). Run with the project's interpreter::

    .venv/bin/python benchmarks/bench_scale.py --workspace /tmp/bench-scale --cases 24 \\
        --counts 25,50,100 --cpus 2
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ichseg.metrics.summary import text_table
from ichseg.report.options import OutputOptions
from ichseg.workspace import Workspace

DISTINCT = 8  # distinct phantoms the cases are copied from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--cases", type=int, default=48, help="cases timed by every route (default 48)")
    parser.add_argument("--workers", default="1,2", help="Ray model actors to time (default 1,2; '' skips the timing)")
    parser.add_argument("--counts", default="50,100,200,400",
                        help="batch sizes whose peak memory is measured (default 50,100,200,400)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    args = parser.parse_args()
    import ray

    model, phantoms = prepare(args.workspace)
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    root = args.workspace / "scale"
    cases = make_cases(phantoms, root / f"cases-{args.cases}", args.cases)
    print(f"{args.cases} tiny cases, one 3d_fullres model, CPU, no mirroring, no reports", flush=True)
    if args.workers:
        timings = throughput(model, cases, [int(w) for w in args.workers.split(",")], root)
        base = timings["local"]
        print(text_table(["route", "seconds", "cases/min", "vs local"],
                         [[name, f"{seconds:.1f}", f"{60 * args.cases / seconds:.1f}", f"{base / seconds:.2f}"]
                          for name, seconds in timings.items()]), flush=True)
    print("cases  seconds  peak PSS MiB (all processes), Ray with 1 worker", flush=True)
    for count in (int(c) for c in args.counts.split(",")):
        batch = make_cases(phantoms, root / f"cases-{count}", count)
        seconds, peak = with_peak_memory(lambda batch=batch: run_ray(model, batch, root / "memory", 1))
        print(f"{count:5d}  {seconds:7.1f}  {peak / 2**20:8.0f}", flush=True)
    ray.shutdown()


def prepare(workspace: Path) -> tuple[Path, Path]:
    """A trained one-model folder and a folder of distinct test phantoms (made once)."""
    from ichseg.commands import train
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.training import plan

    ws = Workspace.open(workspace)
    model_dir = ws.model_dir("scale", "nnunet")
    phantoms = workspace / "scale" / "phantoms"
    if not phantoms.is_dir():
        synthesize(phantoms, DISTINCT, seed=1000, size="tiny", progress=False)
    if "scale" not in ws.datasets():
        synthesize(workspace / "scale" / "train", 6, seed=0, size="tiny", progress=False)
        import_dataset(workspace / "scale" / "train", "scale", ws, progress=False)
    if not model_dir.is_dir():
        plan("scale", "nnunet", workspace=ws, configurations=("3d_fullres",), progress=False)
        train("scale", "nnunet", workspace=ws, folds=[0], epochs=1, iterations=2, val_iterations=1,
              device="cpu", progress=False)
    return model_dir, phantoms / "data"


def make_cases(phantoms: Path, folder: Path, count: int) -> Path:
    """``count`` cases named case_NNNNN, copied in turn from the distinct phantoms (made once)."""
    if folder.is_dir() and len(list(folder.iterdir())) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sources = sorted(phantoms.glob("*.nii.gz"))
    for index in range(count):
        shutil.copyfile(sources[index % len(sources)], folder / f"case_{index:05d}.nii.gz")
    return folder


OPTIONS = OutputOptions(preview=False, html=False, overwrite=True)


def run_local(model: Path, cases: Path, out: Path) -> None:
    from ichseg.commands import predict

    result = predict(cases, out, model, device="cpu", mirroring=False, options=OPTIONS, progress=False)
    assert not result.failures, result.failures


def run_ray(model: Path, cases: Path, out: Path, workers: int) -> None:
    from ichseg.commands import predict

    result = predict(cases, out, model, device="cpu", mirroring=False, options=OPTIONS, progress=False,
                     ray=True, ray_workers=workers)
    assert not result.failures, result.failures


def throughput(model: Path, cases: Path, workers: list[int], root: Path) -> dict[str, float]:
    """Seconds per route, each after an untimed warm-up call on the same cases."""
    routes: dict[str, Callable[[], None]] = {"local": lambda: run_local(model, cases, root / "out-local")}
    for count in workers:
        routes[f"ray, {count} worker(s)"] = lambda count=count: run_ray(model, cases, root / f"out-ray-{count}", count)
    seconds = {}
    for name, route in routes.items():
        route()  # warm-up: imports, file caches, Ray's worker processes
        start = time.perf_counter()
        route()
        seconds[name] = time.perf_counter() - start
    return seconds


def with_peak_memory(work: Callable[[], Any]) -> tuple[float, int]:
    """Seconds ``work`` took and the peak PSS (bytes) of this process and its descendants meanwhile."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], tree_pss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return time.perf_counter() - start, peak[0]


def tree_pss() -> int:
    """PSS in bytes of this process and all its descendants (Linux ``/proc``)."""
    import os

    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in family]
        family.update(children)
        frontier.extend(children)
    total = 0
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


if __name__ == "__main__":
    main()
