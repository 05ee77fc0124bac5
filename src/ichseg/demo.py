"""The demo: from nothing to segmented phantoms, with the same API a user calls.

Synthesises a training set and a separate test set, imports and plans the training set, trains
Li & Chen's 3D model (3d_fullres, Adam, 0.6 Dice + 0.4 weighted cross-entropy) on a short schedule,
predicts the test set and prints Dice and volumes per case.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ichseg.workspace import Workspace

DATASET = "demo"
#: The demo trains one group of the li2022 recipe: on a short CPU schedule its Adam and weighted
#: cross-entropy find the small bleeds, where nnU-Net's default SGD schedule still predicts none.
RECIPE, GROUP = "li2022", "3d_wce"


@dataclass(frozen=True)
class DemoResult:
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
    from ichseg.metrics import evaluate_folders
    from ichseg.training import plan

    start = time.perf_counter()
    ws = Workspace.coerce(workspace)
    data = ws.root / "demo-data"
    output = ws.root / "demo-output"
    for folder in (data, output):
        if folder.exists():
            shutil.rmtree(folder)
    say = _printer(progress)
    say(f"1/6 Synthesising {n_train} training and {n_test} test head CTs ({size}) in {data}")
    synthesize(data / "train", n_train, seed=0, size=size, progress=progress)
    synthesize(data / "test", n_test, seed=1000, size=size, preview=data / "test-preview.png", progress=progress)
    say("2/6 Importing the training set")
    import_dataset(data / "train", DATASET, ws, overwrite=True, progress=progress)
    say("3/6 Planning (nnU-Net fingerprint, plans, preprocessing)")
    plan(DATASET, RECIPE, workspace=ws, configurations=("3d_fullres",), progress=progress)
    say(f"4/6 Training {RECIPE} {GROUP} (3d_fullres) on all training cases: {epochs} epochs × {iterations} iterations")
    model = train(DATASET, RECIPE, workspace=ws, folds="full", groups=[GROUP], epochs=epochs,
                  iterations=iterations, val_iterations=2, device=device, overwrite=True, progress=progress)
    say("5/6 Predicting the test set")
    predict(data / "test" / "data", output, model.path, device=device, progress=progress)
    say("6/6 Evaluating against the true labels")
    evaluation = evaluate_folders(output, data / "test" / "label", progress=progress)
    rows = [{"case": r["case"], "dice": r["dice"], "predicted_ml": r["volume_pred_ml"],
             "true_ml": r["volume_ref_ml"]} for r in evaluation.rows]
    return DemoResult(rows, output, model.path, time.perf_counter() - start)


def format_table(result: DemoResult) -> str:
    lines = [f"{'case':<12} {'Dice':>6} {'predicted mL':>13} {'true mL':>9}"]
    for row in result.rows:
        lines.append(f"{row['case']:<12} {row['dice']:>6.3f} {row['predicted_ml']:>13.2f} {row['true_ml']:>9.2f}")
    return "\n".join(lines)


def _printer(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(message, file=sys.stderr, flush=True)
    return say
