"""A recipe's models trained as Ray tasks: one (group, fold) per task, as many at once as fit.

The driver prepares the model folder (its description written once, before any task, so that no
two tasks write it) and submits every model of :func:`ichseg.training.jobs.prepare_training`'s plan.
Each task is :func:`ichseg.training.jobs.run_job`, the same step the local route runs, so a model keeps
its guarantees: it resumes from its latest checkpoint, is skipped once finished and writes its
out-of-fold predictions. A task whose worker process or machine dies is retried by Ray and resumes
from the checkpoint its first attempt saved; a model that fails for a real reason (an exception)
is not retried, is reported by name, and the others go on.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ichseg.distributed.cluster import (
    RayAddress,
    cluster_cpus,
    cluster_gpus,
    connect,
    require_ray,
)
from ichseg.errors import IchsegError, first_line
from ichseg.model.folder import ModelFolder
from ichseg.training.jobs import JobOutcome, ModelJob, TrainingPlan, run_job

#: Retries of a model whose worker died (a killed process, a lost node); its checkpoint is kept.
MAX_RETRIES = 3


@dataclass(frozen=True)
class ModelEvent:
    """One line of progress: a model ``started`` (on ``host``, process ``pid``), ``finished`` or
    ``failed``; ``done`` of ``total`` models are over."""

    kind: str
    name: str
    done: int = 0
    total: int = 0
    host: str = ""
    pid: int = 0
    seconds: float = 0.0
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "started":
            return f"{self.name}: started on {self.host} (process {self.pid})"
        return f"{self.name}: {self.kind} after {self.seconds:.1f} s{self.detail} ({self.done}/{self.total} done)"


class ModelsFailedError(IchsegError):
    """Some models failed for a real reason; the others finished. ``failures``: (name, message)."""

    def __init__(self, failures: list[tuple[str, str]], total: int) -> None:
        self.failures = failures
        listed = "; ".join(f"{name}: {message}" for name, message in failures)
        super().__init__(f"{len(failures)} of {total} model(s) failed ({listed})")


@dataclass(frozen=True)
class RayRunner:
    """A :class:`~ichseg.training.jobs.TrainingRunner` on Ray: ``address`` (True: a local
    instance; 'auto', HOST:PORT or ray://HOST:10001: that cluster); ``quiet`` drops the progress lines."""

    address: RayAddress = True
    verbose: bool = False
    quiet: bool = False

    def check(self) -> None:
        require_ray()

    def run(self, plan: TrainingPlan) -> ModelFolder:
        return train_on_ray(plan, self.address, verbose=self.verbose,
                            report=(lambda event: None) if self.quiet else None)


def train_on_ray(plan: TrainingPlan, address: RayAddress = None, *, verbose: bool = False,
                 max_retries: int = MAX_RETRIES, report: Callable[[ModelEvent], None] | None = None) -> ModelFolder:
    """Train ``plan``'s models as Ray tasks; returns the model folder once all are over.

    Each task takes one GPU when the cluster has GPUs (and its share of the CPUs for nnU-Net's
    data augmentation), one CPU otherwise. ``report`` receives every :class:`ModelEvent` (default:
    one line each on stderr). Raises :class:`ModelsFailedError` naming the models that failed,
    after all the others have finished.
    """
    ray = connect(address)
    report = report or _print_event
    from ray.util.queue import Queue

    events = Queue(actor_options={"num_cpus": 0})
    started: dict[str, float] = {}
    options, device = _task_options(ray, max_retries)
    task = _remote_task(ray)
    pending = {task.options(**options, name=f"ichseg train {job.name}").remote(job, device, events, verbose): job
               for job in plan.jobs}
    failures: list[tuple[str, str]] = []
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        _relay_started(events, started, report)
        for ref in ready:
            job = pending.pop(ref)
            done += 1
            seconds = time.time() - started.get(job.name, time.time())
            try:
                outcome: JobOutcome = ray.get(ref)
            except ray.exceptions.RayError as error:
                failures.append((job.name, _failure_message(error)))
                report(ModelEvent("failed", job.name, done, len(plan.jobs), seconds=seconds,
                                  detail=f": {failures[-1][1]}"))
                continue
            report(ModelEvent("finished", job.name, done, len(plan.jobs), seconds=seconds,
                              detail=_outcome_detail(outcome)))
    ray.kill(events.actor)
    if failures:
        raise ModelsFailedError(failures, len(plan.jobs))
    return plan.folder


def _task_options(ray: ModuleType, max_retries: int) -> tuple[dict[str, Any], str]:
    """A model's resources and device: a GPU and its share of the CPUs when the cluster has GPUs,
    else one CPU. Retried when its worker dies, not when it raises."""
    options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 0, "max_retries": max_retries, "retry_exceptions": False}
    gpus = cluster_gpus(ray)
    if not gpus:
        return options, "cpu"
    share = max(1, cluster_cpus(ray) // gpus)
    options.update(num_cpus=share, num_gpus=1)
    if "nnUNet_n_proc_DA" not in os.environ:  # nnU-Net would start a worker per core of the node
        options["runtime_env"] = {"env_vars": {"nnUNet_n_proc_DA": str(max(1, share - 1))}}
    return options, "cuda"


@functools.cache
def _remote_task(ray: ModuleType) -> Any:
    return ray.remote(_train_task)


def _train_task(job: ModelJob, device: str, events: Any, verbose: bool) -> JobOutcome:
    """What runs on a worker: say where, then the local route's step for one model."""
    events.put(ModelEvent("started", job.name, host=socket.gethostname(), pid=os.getpid()))
    return run_job(job, device, verbose=verbose)


def _relay_started(events: Any, started: dict[str, float], report: Callable[[ModelEvent], None]) -> None:
    while not events.empty():
        event: ModelEvent = events.get_nowait()
        started.setdefault(event.name, time.time())
        report(event)


def _outcome_detail(outcome: JobOutcome) -> str:
    if outcome.already_trained:
        return ", already trained"
    if outcome.resumed_from is not None:
        return f", resumed from epoch {outcome.resumed_from}"
    return ""


def _failure_message(error: Exception) -> str:
    """The model's own error (one line), or why Ray gave up on it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, IchsegError):
        return str(cause)
    reason = cause if isinstance(cause, BaseException) else error
    kind = type(reason)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {first_line(reason)}"


def _print_event(event: ModelEvent) -> None:
    print(f"ichseg: {event}", file=sys.stderr, flush=True)
