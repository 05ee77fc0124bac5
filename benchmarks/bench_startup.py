"""Start-up: from process start to a model folder's networks loaded, against ``import torch`` alone.

Each measurement is a fresh interpreter, the two kinds alternating, so file caches are warm for
both; the script prints the medians, their difference (the goal: at most 1 s) and which heavy
modules the loading process imported (neither ``torch._dynamo`` nor nnU-Net's training code
should be among them). Run with the project's interpreter::

    .venv/bin/python benchmarks/bench_startup.py --model WORKSPACE/models/DATASET/RECIPE --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TORCH_ONLY = "import torch"
LOAD = ("import sys, json; from ichseg.segmentation.segmenter import Segmenter; "
        "s = Segmenter.load({model!r}, device={device!r}); "
        "print(json.dumps({{'models': len(s.models), 'heavy': sorted(m for m in sys.modules if m.startswith("
        "('torch._dynamo', 'nnunetv2.training', 'nnunetv2.inference.predict_from_raw_data', 'matplotlib')))}}))")
FIRST_CASE = ("from ichseg.segmentation.segmenter import Segmenter; s = Segmenter.load({model!r}, device={device!r}); "
              "s.segment({case!r})")


def timed(code: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ichseg model folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--case", type=Path,
                        help="also time process start to this case segmented (a NIfTI file): what loading "
                             "leaves to the first case (nnU-Net's preprocessing modules) shows here")
    args = parser.parse_args()
    torch_times, load_times, case_times, report = [], [], [], ""
    model = str(args.model.resolve())
    timed(TORCH_ONLY)  # untimed: the first start fills the file cache
    for _ in range(args.runs):
        torch_times.append(timed(TORCH_ONLY)[0])
        seconds, report = timed(LOAD.format(model=model, device=args.device))
        load_times.append(seconds)
        if args.case:
            case_times.append(timed(FIRST_CASE.format(model=model, device=args.device,
                                                      case=str(args.case.resolve())))[0])
    loaded = json.loads(report)
    torch_median, load_median = statistics.median(torch_times), statistics.median(load_times)
    print(f"start-up, median of {args.runs} fresh processes each (device {args.device}):")
    print(f"  python -c 'import torch'            {torch_median:6.2f} s")
    print(f"  Segmenter.load ({loaded['models']} model(s))       {load_median:6.2f} s")
    print(f"  difference                          {load_median - torch_median:6.2f} s  (goal: at most 1 s)")
    if case_times:
        print(f"  ... and {args.case.name} segmented        {statistics.median(case_times):6.2f} s")
    print(f"  heavy modules imported: {', '.join(loaded['heavy']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
