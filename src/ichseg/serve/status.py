"""``ichseg serve --status``: what the node holds, what it owes the PACS, what went wrong last."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from ichseg.errors import WorkspaceError
from ichseg.serve.store import Store


def queue_status(state_dir: Path, n_errors: int = 5) -> dict[str, Any]:
    """Counts by state, the unsent results and the last ``n_errors`` errors of the node's store."""
    if not (state_dir / "queue.sqlite").is_file():
        raise WorkspaceError(f"{state_dir}: no DICOM node has run with this workspace")
    store = Store(state_dir)
    try:
        return {"counts": store.counts(), "unsent": store.unsent(), "errors": store.last_errors(n_errors)}
    finally:
        store.close()


def format_status(status: dict[str, Any]) -> str:
    """The status as a few lines for a terminal."""
    c = status["counts"]
    lines = [(f"series    received {c['received']}  waiting {c['waiting'] + c['processing']}  "
              f"done {c['done']}  failed {c['failed']}  skipped {c['skipped']}"),
             f"instances {c['instances']}",
             f"results   sent {c['sent']}  unsent {c['unsent']}  unsendable {c['unsendable']}"]
    for series, kind, attempts, error, given_up in status["unsent"]:
        lines.append(f"  {'unsendable' if given_up else 'unsent'} {kind} of series {series}: {attempts} attempt(s)"
                     + (f", last error: {error}" if error else ""))
    if status["errors"]:
        lines.append("last errors:")
    for when, series, message in status["errors"]:
        stamp = datetime.datetime.fromtimestamp(when).isoformat(sep=" ", timespec="seconds")
        lines.append(f"  {stamp}  series {series}: {message}")
    return "\n".join(lines)
