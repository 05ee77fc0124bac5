"""Postprocessing: rules stored as data, applied in sequence, chosen by cross-validation.

The rules load with the package; the selection (which evaluates metrics, and imports scipy.stats
and plotting through them) loads on first use, so that applying a rule at prediction stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ichseg.connectivity import CONNECTIVITY
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
    load_rule,
    postprocess,
    save_rule,
)

_SELECTION = ("DEFAULT_MARGIN", "Selection", "SelectionRow", "candidate_grid", "format_selection", "select_rule")


def __getattr__(name: str) -> Any:
    if name in _SELECTION:
        return getattr(importlib.import_module("ichseg.postprocessing.selection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONNECTIVITY", "INTRACRANIAL", "RULES", "IntracranialSpace", "PostprocessedCase",
           "Postprocessing", "Rule", "RuleError", "apply_rule", "find_intracranial_space",
           "load_rule", "postprocess", "save_rule", *_SELECTION]
