"""Connected-component postprocessing: rules stored as data, chosen by cross-validation.

The rules load with the package; the selection (which evaluates metrics, and imports scipy.stats
and plotting through them) loads on first use, so that applying a rule at prediction stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ichseg.postprocessing.rules import (
    CONNECTIVITY,
    RULES,
    Rule,
    RuleError,
    apply_rule,
    load_rule,
    save_rule,
)

_SELECTION = ("DEFAULT_MARGIN", "Selection", "SelectionRow", "candidate_grid", "format_selection", "select_rule")


def __getattr__(name: str) -> Any:
    if name in _SELECTION:
        return getattr(importlib.import_module("ichseg.postprocessing.selection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONNECTIVITY", "RULES", "Rule", "RuleError", "apply_rule", "load_rule", "save_rule", *_SELECTION]
