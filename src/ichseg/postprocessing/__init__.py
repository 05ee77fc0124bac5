"""Connected-component postprocessing: rules stored as data, chosen by cross-validation."""

from ichseg.postprocessing.rules import (
    CONNECTIVITY,
    RULES,
    Rule,
    RuleError,
    apply_rule,
    load_rule,
    save_rule,
)
from ichseg.postprocessing.selection import (
    DEFAULT_MARGIN,
    Selection,
    SelectionRow,
    candidate_grid,
    format_selection,
    select_rule,
)

__all__ = [
    "CONNECTIVITY",
    "DEFAULT_MARGIN",
    "RULES",
    "Rule",
    "RuleError",
    "Selection",
    "SelectionRow",
    "apply_rule",
    "candidate_grid",
    "format_selection",
    "load_rule",
    "save_rule",
    "select_rule",
]
