"""nnU-Net's settings and output, scoped to the calls that need them, so that the user sets none.

- Folders: nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` at each
  use, so :func:`nnunet_paths` sets them around each call and restores what was there before.
- Process counts: nnU-Net reads ``nnUNet_def_n_proc`` once, at import, into default arguments, so
  ichseg passes every count explicitly and never sets it; ``torch.compile`` is decided by
  :meth:`ichseg.engine.trainer.IchsegTrainer._do_i_compile`, not by ``nnUNet_compile``.
- W&B: an inherited ``nnUNet_wandb_enabled`` would make training fail (W&B is not a dependency);
  it is reported in one line and switched off around ichseg's calls.
- Output: the trainer's log lines go to its log file through its own hook
  (:meth:`~ichseg.engine.trainer.IchsegTrainer.print_to_log_file`); :func:`captured_output`
  redirects stdout only around calls that print and cannot be told not to, and
  :func:`quiet_warnings` hides the warning categories nnU-Net and torch raise in passing.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from ichseg.errors import IchsegError
from ichseg.workspace import Workspace

_WANDB_VARIABLE = "nnUNet_wandb_enabled"
#: Warnings about nnU-Net's and torch's own code (deprecations, planned changes), not the user's
#: data: hidden around their calls. Anything else still reaches the user.
QUIET_CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning,
                                               FutureWarning)
_reported: set[str] = set()


def augmentation_workers(device: torch.device) -> int:
    """Data-augmentation worker processes: none on a CPU (they would steal the network's cores)."""
    if "nnUNet_n_proc_DA" in os.environ:
        return int(os.environ["nnUNet_n_proc_DA"])
    if device.type != "cuda":
        return 0
    return max(1, min(12, (os.cpu_count() or 2) - 2))


@contextlib.contextmanager
def nnunet_paths(workspace: Workspace, results: Path | None = None,
                 device: torch.device | None = None) -> Iterator[None]:
    """Point nnU-Net's folders at the workspace (``results`` overrides its results folder), with
    W&B logging off; ``device`` sets the data-augmentation workers for training on it."""
    values = {
        "nnUNet_raw": str(workspace.raw),
        "nnUNet_preprocessed": str(workspace.preprocessed),
        "nnUNet_results": str(results if results is not None else workspace.results),
        _WANDB_VARIABLE: "0",
    }
    if device is not None:
        values["nnUNet_n_proc_DA"] = str(augmentation_workers(device))
    _report_wandb()
    with scoped_environ(values):
        yield


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore what was there before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _report_wandb() -> None:
    """One line, once per process, when the user's environment asks nnU-Net for W&B logging."""
    value = os.environ.get(_WANDB_VARIABLE, "")
    if value.lower() in ("1", "true", "t", "yes") and _WANDB_VARIABLE not in _reported:
        _reported.add(_WANDB_VARIABLE)
        print(f"ichseg: warning: {_WANDB_VARIABLE}={value} is ignored: ichseg trains without "
              f"W&B logging (nnU-Net's log file and progress.png are in each model folder)",
              file=sys.stderr)


@contextlib.contextmanager
def captured_output(log_file: Path | None, verbose: bool) -> Iterator[None]:
    """Send what a call prints on stdout to ``log_file`` (or nowhere) unless ``verbose``; hide
    the :data:`QUIET_CATEGORIES` warnings it raises.

    For calls that print and cannot be told not to. Scoped to the block: ichseg's own progress
    display writes to the stream it was given when it was created, so it stays visible.
    """
    if verbose:
        yield
        return
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        sink: io.TextIOBase = open(log_file, "a", encoding="utf-8")  # noqa: SIM115
    else:
        sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), quiet_warnings():
            yield
    finally:
        sink.close()


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Hide the :data:`QUIET_CATEGORIES` warnings raised in the block."""
    with warnings.catch_warnings():
        for category in QUIET_CATEGORIES:
            warnings.filterwarnings("ignore", category=category)
        yield


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise IchsegError("--device cuda: no CUDA GPU is available on this machine")
    if name not in ("cpu", "cuda"):
        raise IchsegError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)

