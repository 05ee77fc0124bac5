"""Postprocessing: rules stored as data, applied in sequence, chosen by cross-validation.

The rules load with the package; the selection (which evaluates metrics, and imports scipy.stats
and plotting through them) loads on first use, so that applying a rule at prediction stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ichseg.connectivity import CONNECTIVITY
from ichseg.postprocessing.class_maps import ClassPostprocessing, postprocess_classes
from ichseg.postprocessing.intracranial import (
    IntracranialSpace,
    find_intracranial_space,
)
from ichseg.postprocessing.rules import (
    INTRACRANIAL,
    RULES,
    Rule,
    RuleError,
)
from ichseg.postprocessing.sequence import (
    PostprocessedCase,
    Postprocessing,
    apply_rule,
    postprocess,
)
from ichseg.postprocessing.storage import load_rule, save_rule

_SELECTION = ("DEFAULT_MARGIN", "Selection", "SelectionRow", "candidate_grid", "format_selection", "select_rule")
_CLASS_SELECTION = ("ClassCase", "ClassSelection", "format_class_selection", "select_class_rules")


def __getattr__(name: str) -> Any:
    if name in _SELECTION:
        return getattr(importlib.import_module("ichseg.postprocessing.selection"), name)
    if name in _CLASS_SELECTION:
        return getattr(importlib.import_module("ichseg.postprocessing.class_selection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONNECTIVITY", "INTRACRANIAL", "RULES", "ClassPostprocessing", "IntracranialSpace",
           "PostprocessedCase", "Postprocessing", "Rule", "RuleError", "apply_rule",
           "find_intracranial_space", "load_rule", "postprocess", "postprocess_classes", "save_rule",
           *_SELECTION, *_CLASS_SELECTION]
