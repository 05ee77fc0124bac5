"""Progress display for long steps, on stderr so that it never mixes with results on stdout."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def console() -> Console:
    """A console bound to the current stderr (created before nnU-Net's output is captured)."""
    return Console(file=sys.stderr)


def make_progress(enabled: bool = True) -> Progress:
    """Bars on a terminal only: in logs and pipes they would be noise."""
    out = console()
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=out, disable=not (enabled and out.is_terminal), transient=False,
    )


def progress_bar(items: Iterable[T], description: str, enabled: bool = True,
                 total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (a plain loop when disabled or not on a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(enabled) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
