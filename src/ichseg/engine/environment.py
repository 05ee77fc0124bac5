"""nnU-Net's settings, set by ichseg so that the user sets none.

nnU-Net reads its folders and process counts from environment variables. Process counts are read
once, when nnunetv2 is first imported, so :func:`set_process_defaults` runs before that import;
the three folders are read at each use, so :func:`nnunet_paths` sets them around each call and
restores what was there before.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from ichseg.errors import IchsegError
from ichseg.workspace import Workspace

_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def set_process_defaults() -> None:
    """Process counts that suit the machine, unless the user set nnU-Net's own variables."""
    cpus = os.cpu_count() or 1
    os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(8, cpus))))
    # torch.compile costs minutes per model and run; worth it only for long trainings.
    os.environ.setdefault("nnUNet_compile", "false")


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
    """Point nnU-Net's folders at the workspace (``results`` overrides its results folder)."""
    values = {
        "nnUNet_raw": str(workspace.raw),
        "nnUNet_preprocessed": str(workspace.preprocessed),
        "nnUNet_results": str(results if results is not None else workspace.results),
    }
    if device is not None:
        values["nnUNet_n_proc_DA"] = str(augmentation_workers(device))
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


@contextlib.contextmanager
def captured_output(log_file: Path | None, verbose: bool) -> Iterator[None]:
    """Send nnU-Net's printing to ``log_file`` (or nowhere) unless ``verbose``.

    Scoped to the block: ichseg's own progress display writes to the stream it was given when it
    was created, so it stays visible.
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
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sink.close()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise IchsegError("--device cuda: no CUDA GPU is available on this machine")
    if name not in ("cpu", "cuda"):
        raise IchsegError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)

