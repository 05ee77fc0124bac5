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

from ichseg.version import __version__ as __version__

_API = {
    "synthesize": "ichseg.data.synth",
    "import_dataset": "ichseg.data.importer",
    "plan": "ichseg.training",
    "train": "ichseg.commands",
    "predict": "ichseg.commands",
    "predict_folder": "ichseg.batch.runner",
    "InferenceSettings": "ichseg.segmentation.settings",
    "evaluate": "ichseg.metrics",
    "cv_report": "ichseg.crossval",
    "select_postprocessing": "ichseg.crossval",
    "compare_scans": "ichseg.clinical.expansion",
    "load_image": "ichseg.io",
    "load_recipe": "ichseg.recipes",
    "demo": "ichseg.demo",
    "Segmenter": "ichseg.segmentation.segmenter",
    "Segmentation": "ichseg.segmentation.result",
    "EnsembleSpec": "ichseg.ensemble.spec",
    "OutputOptions": "ichseg.report.options",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ichseg' has no attribute {name!r}")
