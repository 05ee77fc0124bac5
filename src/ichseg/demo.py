"""The demo: from nothing to segmented phantoms, with the same API a user calls.

Synthesises a training set and a separate test set (phantoms with the blood-like tissues of a real
head: muscles, scalp vessels, dural sinuses, falx), imports and plans the training set, trains
Li & Chen's 3D model (3d_fullres, Adam, 0.6 Dice + 0.4 weighted cross-entropy) on a short
schedule, predicts the test set without and with the intracranial rule, and prints per case Dice,
volumes, the false-positive volume and what the model marked outside the skull. The test set
always holds a phantom without hemorrhage, where every marked voxel is a false positive.

A model trained on phantoms is for testing the pipeline end to end; it has learned smooth shapes,
not anatomy, and is not for reading patients' scans.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.workspace import Workspace

DATASET = "demo"
#: The demo trains one group of the li2022 recipe: on a short CPU schedule its Adam and weighted
#: cross-entropy find the small bleeds, where nnU-Net's default SGD schedule still predicts none.
RECIPE, GROUP = "li2022", "3d_wce"
#: Seeds of the test phantoms: the first has no hemorrhage (its every marked voxel is a false positive).
TEST_SEED = 1000


@dataclass(frozen=True)
class DemoResult:
    """Per test case (``rows``): Dice, predicted and true volume, false-positive volume and voxels
    outside the skull, each without (``_raw``) and with the intracranial rule."""

    rows: list[dict[str, Any]]
    output_dir: Path
    model_dir: Path
    seconds: float


def demo(workspace: str | Path | Workspace | None = None, *, n_train: int = 10, n_test: int = 3,
         size: str = "tiny", epochs: int = 25, iterations: int = 10, device: str = "auto",
         progress: bool = True) -> DemoResult:
    """Run the whole pipeline on synthetic head CTs; everything lands in the workspace."""
    from ichseg.commands import predict, train
    from ichseg.data.importer import import_dataset
    from ichseg.data.synth import synthesize
    from ichseg.postprocessing import Rule, save_rule
    from ichseg.training import plan

    start = time.perf_counter()
    ws = Workspace.coerce(workspace)
    data, output = ws.root / "demo-data", ws.root / "demo-output"
    for folder in (data, output):
        if folder.exists():
            shutil.rmtree(folder)
    say = _printer(progress)
    say(f"1/6 Synthesising {n_train} training and {n_test} test head CTs ({size}) in {data}")
    synthesize(data / "train", n_train, seed=0, size=size, progress=progress)
    synthesize(data / "test", n_test, seed=TEST_SEED, size=size, progress=progress)
    say("2/6 Importing the training set")
    import_dataset(data / "train", DATASET, ws, overwrite=True, progress=progress)
    say("3/6 Planning (nnU-Net fingerprint, plans, preprocessing)")
    plan(DATASET, RECIPE, workspace=ws, configurations=("3d_fullres",), progress=progress)
    say(f"4/6 Training {RECIPE} {GROUP} (3d_fullres) on all training cases: {epochs} epochs × {iterations} iterations")
    model = train(DATASET, RECIPE, workspace=ws, folds="full", groups=[GROUP], epochs=epochs,
                  iterations=iterations, val_iterations=2, device=device, overwrite=True, progress=progress)
    # One model trained on all cases has no out-of-fold predictions to choose a rule from; hemorrhage
    # is intracranial by definition, so the demo's model keeps the intracranial rule.
    save_rule(model.postprocessing_file, Rule("intracranial"), overwrite=True,
              extra={"selected_on": "ichseg demo: hemorrhage is intracranial by definition"})
    say("5/6 Predicting the test set, without and with the intracranial rule")
    without_rule, with_rule = output / "without-rule", output / "with-rule"
    predict(data / "test" / "data", without_rule, model.path, device=device, postprocess=False,
            progress=progress)
    predict(data / "test" / "data", with_rule, model.path, device=device, progress=progress)
    say("6/6 Evaluating against the true labels and the phantoms' tissue maps")
    rows = _evaluate(without_rule, with_rule, data / "test" / "label", n_test, size, progress)
    return DemoResult(rows, with_rule, model.path, time.perf_counter() - start)


def _evaluate(raw: Path, ruled: Path, labels: Path, n_test: int, size: str, progress: bool) -> list[dict[str, Any]]:
    """Each test case's figures without (``*_raw``) and with the rule."""
    from ichseg.metrics import evaluate_folders

    before, after = (evaluate_folders(folder, labels, progress=progress).rows for folder in (raw, ruled))
    outside = _outside_skull(n_test, size)
    rows = []
    for raw_row, row in zip(before, after, strict=True):
        case = str(row["case"])
        rows.append({"case": case, "true_ml": row["volume_ref_ml"],
                     "dice_raw": raw_row["dice"], "fp_ml_raw": raw_row["fp_ml"],
                     "outside_raw": outside(raw / f"{case}.nii.gz", case),
                     "dice": row["dice"], "predicted_ml": row["volume_pred_ml"], "fp_ml": row["fp_ml"],
                     "outside": outside(ruled / f"{case}.nii.gz", case)})
    return rows


def _outside_skull(n_test: int, size: str) -> Callable[[Path, str], int]:
    """A counter of the voxels a mask file marks outside the phantom's intracranial tissues (the
    test phantoms drawn again from their seeds, which give the same cases)."""
    from ichseg.data.synth import case_seed, generate_case
    from ichseg.data.synth.vocabulary import INTRACRANIAL_TISSUES
    from ichseg.io.image import load_image

    width = max(3, len(str(n_test - 1)))
    tissues = {f"ich_{index:0{width}d}": generate_case(case_seed(TEST_SEED, index), size).tissues
               for index in range(n_test)}

    def count(mask_file: Path, case: str) -> int:
        mask = load_image(mask_file).array != 0
        return int(np.count_nonzero(mask & ~np.isin(tissues[case], list(INTRACRANIAL_TISSUES))))

    return count


def format_table(result: DemoResult) -> str:
    """Per case: Dice, volumes, false-positive volume and voxels outside the skull, without the
    intracranial rule → with it."""
    lines = [f"{'case':<10} {'Dice':>15} {'FP mL':>15} {'outside skull':>15} {'predicted mL':>13} {'true mL':>8}"]
    for row in result.rows:
        lines.append(
            f"{row['case']:<10} {row['dice_raw']:>6.3f} → {row['dice']:<6.3f} "
            f"{row['fp_ml_raw']:>6.2f} → {row['fp_ml']:<6.2f} {row['outside_raw']:>6d} → {row['outside']:<6d} "
            f"{row['predicted_ml']:>13.2f} {row['true_ml']:>8.2f}")
    negatives = [row for row in result.rows if row["true_ml"] == 0]
    if negatives:
        worst = max(row["fp_ml"] for row in negatives)
        lines.append(f"\nwithout hemorrhage: {len(negatives)} phantom(s), false-positive volume at most "
                     f"{worst:.2f} mL with the rule ({max(row['fp_ml_raw'] for row in negatives):.2f} mL without)")
    lines.append("Columns: without the intracranial rule → with it. A model trained on phantoms tests the "
                 "pipeline; it is not for reading patients' scans.")
    return "\n".join(lines)


def _printer(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            print(message, file=sys.stderr, flush=True)
    return say
