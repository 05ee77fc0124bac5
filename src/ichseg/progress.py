"""Progress of long steps on stderr, so that it never mixes with results on stdout.

On a terminal, rich draws bars. Anywhere else (a log file, CI, a batch scheduler) a bar would be
noise, and silence for minutes is no better: :class:`PlainProgress` writes one plain line per task
each time it has advanced another :data:`PLAIN_STEP` of its total, at least every
:data:`PLAIN_INTERVAL_S` seconds while it runs, and when it ends. A task added with
``every_step=True`` (training epochs, each with its loss) gets a line at every update.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: A plain progress line whenever a task has advanced this share of its total...
PLAIN_STEP = 0.05
#: ...and at least this often (seconds) while it runs.
PLAIN_INTERVAL_S = 30.0


def console() -> Console:
    """A console bound to the current stderr (created before nnU-Net's output is captured)."""
    return Console(file=sys.stderr)


def make_progress(enabled: bool = True) -> Progress | PlainProgress:
    """Bars on a terminal, plain lines elsewhere, nothing when not ``enabled``.

    Both kinds take ``add_task``, ``advance``, ``update`` and ``remove_task`` as rich does.
    """
    out = console()
    if enabled and not out.is_terminal:
        return PlainProgress(sys.stderr)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=out, disable=not enabled, transient=False,
    )


def progress_bar(items: Iterable[T], description: str, enabled: bool = True,
                 total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` while showing progress (see :func:`make_progress`)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with make_progress(enabled) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@dataclass
class _PlainTask:
    description: str
    total: float | None
    every_step: bool
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last_line: float = field(default_factory=time.monotonic)
    last_step: int = 0  # the multiples of the step reported so far


class PlainProgress:
    """Progress as plain lines on ``stream`` (the stream is bound now: nnU-Net's output may be
    redirected later). Safe to update from several threads."""

    def __init__(self, stream: TextIO, step: float = PLAIN_STEP,
                 interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.stream = stream
        self.step = step
        self.interval_s = interval_s
        self._tasks: dict[TaskID, _PlainTask] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        self._ticker = threading.Thread(target=self._tick, name="ichseg-progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()

    def add_task(self, description: str, total: float | None = None, every_step: bool = False,
                 **_fields: Any) -> TaskID:
        with self._lock:
            task_id = TaskID(len(self._tasks))
            self._tasks[task_id] = _PlainTask(description.strip(), total, every_step)
            return task_id

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: TaskID, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, description: str | None = None,
               **_fields: Any) -> None:
        with self._lock:
            task = self._tasks[task_id]
            if description is not None:
                task.description = description.strip()
            if total is not None:
                task.total = total
            if completed is not None:
                task.completed = completed
            if advance is not None:
                task.completed += advance
            if self._due(task):
                self._write(task)

    def remove_task(self, task_id: TaskID) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def _due(self, task: _PlainTask) -> bool:
        if task.every_step:
            return True
        if not task.total:
            return False
        return task.completed >= task.total or self._steps(task) > task.last_step

    def _steps(self, task: _PlainTask) -> int:
        """How many whole steps (of ``step`` × total) the task has done."""
        return int(task.completed * round(1 / self.step) // task.total) if task.total else 0

    def _write(self, task: _PlainTask) -> None:
        """One line: description, count (and share) done, time since the task began."""
        now = time.monotonic()
        elapsed = _duration(now - task.started)
        if task.total:
            task.last_step = self._steps(task)
            done = f"{task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
        else:
            done = f"{task.completed:g} done" if task.completed else "running"
        task.last_line = now
        print(f"{task.description}: {done}, {elapsed}", file=self.stream, flush=True)

    def _tick(self) -> None:
        """A line for every task that has been quiet for ``interval_s``, so that a slow step
        still shows it is alive."""
        while not self._stop.wait(min(1.0, self.interval_s)):
            with self._lock:
                now = time.monotonic()
                for task in self._tasks.values():
                    unfinished = not task.total or task.completed < task.total
                    if unfinished and now - task.last_line >= self.interval_s:
                        self._write(task)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class TrainingEpoch:
    """What a training reports after each epoch, from nnU-Net's logger: the epochs done, the
    schedule's total, the mean training and validation loss, and the pseudo-Dice (mean over
    foreground classes of the Dice on the validation batches, nnU-Net's running estimate)."""

    done: int
    total: int
    train_loss: float
    val_loss: float
    pseudo_dice: float

    @property
    def summary(self) -> str:
        return (f"loss {self.train_loss:.3f}, val loss {self.val_loss:.3f}, "
                f"pseudo-Dice {self.pseudo_dice:.3f}")
