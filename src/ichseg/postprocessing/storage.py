"""A model folder's ``postprocessing.json``: the rules chosen for it, stored as data.

``{"steps": [{"name": ..., "params": {...}}, ...]}`` holds a sequence of rules
(:class:`~ichseg.postprocessing.sequence.Postprocessing`); with ``"classes": {NAME: [...]}``
beside it, rules per hemorrhage class (:class:`~ichseg.postprocessing.class_maps.
ClassPostprocessing`). What chose them may be stored beside the rules. Files written before
sequences existed hold one rule, ``{"rule": {...}}``, and read as a sequence of that rule alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ichseg.atomic import write_json
from ichseg.jsonfile import read_json
from ichseg.postprocessing.class_maps import ClassPostprocessing
from ichseg.postprocessing.rules import Rule, RuleError
from ichseg.postprocessing.sequence import Postprocessing

#: The entries that hold the rules themselves.
RULE_ENTRIES = ("steps", "classes", "rule")


def save_rule(path: str | os.PathLike, rules: Rule | Postprocessing | Sequence[Rule] | ClassPostprocessing,
              extra: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write the rules as JSON, atomically, with ``extra`` (e.g. the selection) beside them."""
    extra = dict(extra or {})
    if set(RULE_ENTRIES) & set(extra):
        raise ValueError(f"{', '.join(map(repr, RULE_ENTRIES))} are reserved for the rules themselves")
    stored = (rules.stored() if isinstance(rules, ClassPostprocessing)
              else {"steps": Postprocessing.of(rules).to_list()})
    return write_json(path, {**stored, **extra}, overwrite)


def load_rule(path: str | os.PathLike) -> Postprocessing | ClassPostprocessing:
    """Read what :func:`save_rule` wrote (or an older file's single ``rule``); any problem is
    one line naming the file."""
    path = Path(path)
    data = read_json(path, RuleError, "postprocessing rule")
    try:
        if isinstance(data, dict) and "classes" in data:
            return ClassPostprocessing.from_stored(data)
        if isinstance(data, dict) and "steps" in data:
            return Postprocessing.from_list(data["steps"])
        if isinstance(data, dict) and "rule" in data:
            return Postprocessing.of(Rule.from_dict(data["rule"]))
    except RuleError as error:
        raise RuleError(f"{path}: {error}") from None
    raise RuleError(f"{path}: no 'steps' entry")
