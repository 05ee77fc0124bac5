"""Time ichseg's case metrics against DeepMind's surface-distance on 512×512×70 mask pairs.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--repeats N]``. Everything runs on one CPU
thread. Two pairs are timed: a hemorrhage-like blob and a prediction of it (the common case), and
the same prediction with small false positives scattered over the slab, which makes the box
around both masks nearly as large as the volume. For each, the script prints the best time of
ichseg's ``case_metrics`` (all metrics, from uint8 arrays as read from NIfTI, input checks
included), the best time of DeepMind's Dice, HD, HD95 and NSD (boolean arrays prepared outside
the timing), their ratio, and whether the values agree.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from ichseg.metrics import case_metrics  # noqa: E402

SHAPE = (70, 512, 512)
SPACING = (5.0, 0.45, 0.45)
TOLERANCE_MM = 0.42


def hemorrhage(rng: np.random.Generator, centre_mm, radii_mm) -> np.ndarray:
    """An irregular blob: an ellipsoid whose radius varies with a smooth random field."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    low = [max(0, int((c - 1.6 * r) / s)) for c, r, s in zip(centre_mm, radii_mm, SPACING, strict=True)]
    high = [min(n, int((c + 1.6 * r) / s) + 1)
            for c, r, s, n in zip(centre_mm, radii_mm, SPACING, SHAPE, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    grid = np.meshgrid(*[np.arange(a, b) * s for a, b, s in zip(low, high, SPACING, strict=True)], indexing="ij")
    radius = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre_mm, radii_mm, strict=True))
    roughness = ndimage.gaussian_filter(rng.standard_normal(radius.shape), (0.6, 8, 8))
    mask[box] = radius < 1 + 0.25 * roughness / roughness.std()
    return mask


def pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2022)
    centre = (35 * 5.0, 250 * 0.45, 260 * 0.45)
    ref = hemorrhage(rng, centre, (30.0, 30.0, 25.0))
    pred = hemorrhage(rng, (centre[0] + 3, centre[1] + 1.5, centre[2] - 1), (28.0, 31.0, 26.0))
    scattered = pred.copy()
    corners = zip(rng.integers(5, 65, 40), rng.integers(40, 470, 40), rng.integers(40, 470, 40), strict=True)
    for z, y, x in corners:
        scattered[z, y:y + 4, x:x + 4] = 1
    return {"blob": (pred, ref), "blob + scattered false positives": (scattered, ref)}


def best_time(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def deepmind_metrics():
    """DeepMind's functions, with the numpy aliases it needs under numpy 2; None if absent."""
    try:
        from surface_distance import metrics
    except ImportError:
        return None
    np.Inf, np.NaN = np.inf, np.nan  # removed in numpy 2, still used by surface-distance 0.1
    warnings.simplefilter("ignore", DeprecationWarning)

    def compute(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
        distances = metrics.compute_surface_distances(ref, pred, SPACING)
        return {
            "dice": metrics.compute_dice_coefficient(ref, pred),
            "hd": metrics.compute_robust_hausdorff(distances, 100),
            "hd95": metrics.compute_robust_hausdorff(distances, 95),
            "nsd": metrics.compute_surface_dice_at_tolerance(distances, TOLERANCE_MM),
        }

    return compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (best is kept)")
    args = parser.parse_args()
    deepmind = deepmind_metrics()
    print(f"volume {'×'.join(map(str, SHAPE[::-1]))} voxels, spacing "
          f"{' × '.join(map(str, SPACING[::-1]))} mm (x, y, z), NSD tolerance {TOLERANCE_MM} mm, "
          f"one thread, best of {args.repeats}")
    for name, (pred, ref) in pairs().items():
        print(f"\n{name}: reference {np.count_nonzero(ref):,} voxels, prediction "
              f"{np.count_nonzero(pred):,} voxels")
        ours_s, ours = best_time(partial(case_metrics, pred, ref, SPACING, TOLERANCE_MM), args.repeats)
        print(f"  ichseg case_metrics (all metrics): {ours_s:.3f} s  "
              + ", ".join(f"{key} {ours[key]:.6g}" for key in ("dice", "hd", "hd95", "nsd")))
        if deepmind is None:
            print("  DeepMind surface-distance is not installed (pip install surface-distance)")
            continue
        pred_bool, ref_bool = pred.astype(bool), ref.astype(bool)
        theirs_s, theirs = best_time(partial(deepmind, pred_bool, ref_bool), args.repeats)
        agree = all(np.isclose(ours[key], float(value), rtol=1e-6, atol=1e-9)
                    for key, value in theirs.items())
        print(f"  DeepMind surface-distance:         {theirs_s:.3f} s  "
              + ", ".join(f"{key} {float(value):.6g}" for key, value in theirs.items()))
        print(f"  ratio DeepMind / ichseg: {theirs_s / ours_s:.1f}×; values agree: {agree}")


if __name__ == "__main__":
    main()
