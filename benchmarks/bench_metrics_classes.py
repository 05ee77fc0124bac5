"""Time the evaluation of one case with five hemorrhage classes against the same case as one class.

Run: ``.venv/bin/python benchmarks/bench_metrics_classes.py [--repeats N]``. Everything runs on one
CPU thread. The pair is 512 × 512 × 40 at 0.45 × 0.45 × 5 mm: a reference with one bleed of each
subtype (EDH, IPH, IVH, SAH, SDH) and a prediction that moves and reshapes each bleed a little
and calls part of the IPH an IVH. Three timings, best of N: the metrics alone (the label check
and ``case_metrics`` on ``mask > 0`` for one class; the label check and ``metrics_by_class`` for
five), and the whole case as ``ichseg evaluate`` runs it, reading both NIfTI files.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from ichseg.io import CTImage, save_mask  # noqa: E402
from ichseg.labels import ONE_CLASS, SUBTYPES  # noqa: E402
from ichseg.metrics import EvaluationLabels, case_metrics, metrics_by_class  # noqa: E402
from ichseg.metrics.classes import label_map  # noqa: E402
from ichseg.metrics.evaluation import MaskPair, _evaluate_pair  # noqa: E402

SHAPE = (40, 512, 512)
SPACING = (5.0, 0.45, 0.45)
#: Each subtype's bleed: value, centre (mm) and radii (mm), from EDH to SDH.
BLEEDS = ((1, (60, 60, 60), (12, 25, 8)), (2, (100, 110, 130), (20, 22, 18)),
          (3, (100, 120, 100), (10, 8, 6)), (4, (130, 150, 160), (8, 30, 3)),
          (5, (90, 170, 60), (35, 40, 5)))


def bleed(rng: np.random.Generator, labels: np.ndarray, value: int, centre, radii) -> None:
    """An ellipsoid whose radius varies with a smooth random field, written as ``value``."""
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)], indexing="ij",
                       sparse=True)
    radius = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    near = radius < 2
    roughness = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), (0.6, 8, 8))
    labels[near & (radius < 1 + 0.25 * roughness / roughness.std())] = value


def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(23)
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    for value, centre, radii in BLEEDS:
        bleed(rng, ref, value, centre, radii)
        moved = tuple(c + d for c, d in zip(centre, (2.0, 1.5, -1.0), strict=True))
        bleed(rng, pred, value, moved, tuple(r * 1.05 for r in radii))
    pred[(pred == 2) & (np.arange(SHAPE[2]) * SPACING[2] > 135)] = 3
    return pred, ref


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (best is kept)")
    args = parser.parse_args()
    pred, ref = pair()
    one = EvaluationLabels(ONE_CLASS, "one class")
    five = EvaluationLabels(SUBTYPES, "subtypes")
    pred_one, ref_one = (pred > 0).astype(np.uint8), (ref > 0).astype(np.uint8)
    print(f"volume {'×'.join(map(str, SHAPE[::-1]))} voxels, one thread, best of {args.repeats}; "
          f"reference {np.count_nonzero(ref):,} voxels in 5 classes")

    def one_class():
        p, r = label_map(pred_one, one, "", ""), label_map(ref_one, one, "", "")
        return case_metrics(p.view(bool), r.view(bool), SPACING)

    def five_classes():
        p, r = label_map(pred, five, "", ""), label_map(ref, five, "", "")
        return metrics_by_class(p, r, SPACING, SUBTYPES)

    union, by_class = five_classes()
    assert union == one_class()
    print("  Dice: any " + f"{union['dice']:.3f}, "
          + ", ".join(f"{name} {values['dice']:.3f}" for name, values in by_class.items()))
    metrics_one, metrics_five = best_time(one_class, args.repeats), best_time(five_classes, args.repeats)
    print(f"  metrics: one class {metrics_one:.3f} s, five classes {metrics_five:.3f} s "
          f"({metrics_five / metrics_one:.1f}×)")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as folder:
        files = {}
        for name, array in (("pred1", pred_one), ("ref1", ref_one), ("pred5", pred), ("ref5", ref)):
            files[name] = save_mask(CTImage(array, spacing=SPACING), array, Path(folder) / f"{name}.nii.gz")
        case_one = best_time(lambda: _evaluate_pair(MaskPair("c", files["pred1"], files["ref1"]), 0.42, one),
                             args.repeats)
        case_five = best_time(lambda: _evaluate_pair(MaskPair("c", files["pred5"], files["ref5"]), 0.42, five),
                              args.repeats)
    print(f"  whole case with reading the files: one class {case_one:.3f} s, five classes "
          f"{case_five:.3f} s ({case_five / case_one:.1f}×)")


if __name__ == "__main__":
    main()
