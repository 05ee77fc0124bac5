"""Write outputs so that a failure never leaves a half-written file or folder behind.

Everything ichseg writes goes to a temporary name beside its destination and is renamed into
place only once complete. Existing outputs are replaced only when the caller passes
``overwrite=True``. :func:`check_output_dir` and :func:`check_output_file` check an output path
before any work starts, without creating anything; :func:`remove_partials` clears what an
interrupted (killed) run left under temporary names.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ichseg.errors import OutputExistsError, OutputPathError

#: Temporary names are ``.STEM.partial-XXXXXXXX.EXT`` (hidden, beside their destination).
PARTIAL_MARKER = ".partial-"


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
    return path.with_name(f".{stem}{PARTIAL_MARKER}{uuid.uuid4().hex[:8]}{suffix}")


def is_partial(path: Path) -> bool:
    """True for a temporary name of :func:`atomic_file` / :func:`atomic_dir`."""
    return path.name.startswith(".") and PARTIAL_MARKER in path.name


def remove_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders a killed run left in ``folder``; return them."""
    folder = Path(folder)
    stale = [entry for entry in folder.iterdir() if is_partial(entry)] if folder.is_dir() else []
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return stale


def check_output_dir(path: str | os.PathLike, *, overwrite: bool = False, keep: bool = False,
                     what: str = "output folder") -> Path:
    """Check, creating nothing, that ``path`` can become or is a writable folder of results.

    Refuses a file in its place or on the way to it, a folder that cannot be written (probed by
    creating and removing a temporary file, which also catches read-only file systems), and a
    folder that already holds entries unless ``overwrite`` or ``keep`` (adding to or resuming
    what is there) is given. Returns the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file, not a folder")
    if path.is_dir():
        _probe_writable(path, path)
        if not (overwrite or keep) and any(not is_partial(entry) for entry in path.iterdir()):
            raise OutputExistsError(f"{path}: already exists and holds results "
                                    f"(use --overwrite to replace them)")
        return path
    _probe_writable(_existing_parent(path, what), path)
    return path


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, creating nothing, that the file ``path`` can be written (and may be replaced)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file name")
    refuse_existing(path, overwrite)
    _probe_writable(_existing_parent(path, "file"), path)
    return path


def _existing_parent(target: Path, what: str) -> Path:
    """The nearest existing folder above ``target``; a file on the way is refused."""
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{target}: cannot create the {what}, {parent} is a file")
    return parent


def _probe_writable(folder: Path, target: Path) -> None:
    """Create and remove a temporary file in ``folder``: the only test that is never wrong
    (permission bits say nothing about read-only mounts, ACLs or a full disk)."""
    probe = folder / f".ichseg-write-test{PARTIAL_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        where = "" if folder == target else f" ({folder} is not writable)"
        raise OutputPathError(f"{target}: cannot write here{where}: "
                              f"{error.strerror or type(error).__name__}") from None


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
