"""ichseg: intracranial hemorrhage segmentation on non-contrast head CT, built on nnU-Net v2.

The public API mirrors the command line::

    import ichseg
    ichseg.synthesize("phantoms", n_cases=10, size="small")
    ichseg.import_dataset("phantoms", "demo", workspace="ws")
    ichseg.plan("demo", "li2022", workspace="ws")
    model = ichseg.train("demo", "li2022", workspace="ws", folds="all")
    ichseg.predict("scans/", "out/", model.path)
    ichseg.evaluate("out/", "labels/", "eval/")

Functions are imported on first use, so ``import ichseg`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "synthesize": "ichseg.data.synth",
    "import_dataset": "ichseg.data.importer",
    "plan": "ichseg.training",
    "train": "ichseg.training",
    "predict": "ichseg.prediction",
    "evaluate": "ichseg.metrics",
    "cv_report": "ichseg.crossval",
    "select_postprocessing": "ichseg.crossval",
    "compare_scans": "ichseg.clinical.expansion",
    "load_image": "ichseg.io",
    "load_recipe": "ichseg.recipes",
    "demo": "ichseg.demo",
    "Segmenter": "ichseg.segmenter",
    "Segmentation": "ichseg.segmenter",
    "EnsembleSpec": "ichseg.ensemble.spec",
    "OutputOptions": "ichseg.report.options",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ichseg' has no attribute {name!r}")
