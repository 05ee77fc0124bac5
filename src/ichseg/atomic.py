"""Write outputs so that a failure never leaves a half-written file or folder behind.

Everything ichseg writes goes to a temporary name beside its destination and is renamed into
place only once complete. Existing outputs are replaced only when the caller passes
``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ichseg.errors import OutputExistsError


def full_suffix(path: Path) -> str:
    """Return every suffix of ``path`` (``.nii.gz`` rather than ``.gz``)."""
    return "".join(path.suffixes)


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and may not be replaced."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")


def _temporary_sibling(path: Path) -> Path:
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.partial-{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path with the same extension; move it onto ``path`` on success."""
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; it replaces ``path`` only if the block finishes."""
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = _temporary_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write a text file atomically and return its path."""
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: object, overwrite: bool = False) -> Path:
    """Write JSON (indented, NaN and inf as null) atomically and return its path."""
    import json

    return write_text(path, json.dumps(_json_safe(data), indent=2) + "\n", overwrite)


def _json_safe(value: object) -> object:
    """Turn numpy scalars, paths and non-finite floats into plain JSON values."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
