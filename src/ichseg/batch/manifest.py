"""A batch's record in its output folder, so that an interrupted batch can resume.

``ichseg_run.json`` holds what decides a batch's outputs: the model folder (a fingerprint of its
description, its checkpoints and its postprocessing rule), the ensemble, the inference settings
and the output options. :func:`open_run` checks the output folder before any work starts and, to
resume, refuses a folder whose manifest differs, removes what a killed run left under temporary
names and reports the cases whose outputs are all complete; :meth:`Run.start` writes the manifest
just before the first case's files, and :meth:`Run.finish` leaves nothing behind when no case
succeeded. Every route that writes a batch (one process, or a cluster) goes through these.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichseg.atomic import check_output_dir, is_partial, remove_partials, write_json
from ichseg.errors import IchsegError, OutputExistsError

if TYPE_CHECKING:
    from ichseg.ensemble.spec import EnsembleSpec
    from ichseg.model.folder import ModelFolder, TrainedModel
    from ichseg.report.options import OutputOptions

MANIFEST_FILE = "ichseg_run.json"
FORMAT_VERSION = 1
#: A checkpoint is a zip archive whose directory (with every member's CRC) sits at its end:
#: hashing the tail identifies its content without reading gigabytes.
_TAIL_BYTES = 1 << 20
#: Fields that describe a run without deciding its outputs (not compared on resume).
_INFORMATIVE = ("path",)


def model_fingerprint(folder: ModelFolder, models: Sequence[TrainedModel], postprocess: bool) -> dict[str, Any]:
    """What identifies the models a batch uses, cheaply: the description's hash, each chosen
    checkpoint's size and the hash of its last megabyte, and the postprocessing rule applied."""
    rule = folder.postprocessing_file if postprocess and folder.postprocessing_file.is_file() else None
    return {
        "path": str(folder.path.resolve()),
        "description_sha256": _sha256(folder.path / "ichseg_model.json"),
        "checkpoints": [{"group": m.group, "fold": m.fold, "bytes": m.checkpoint.stat().st_size,
                         "tail_sha256": _sha256(m.checkpoint, tail=_TAIL_BYTES)} for m in models],
        "postprocessing_sha256": _sha256(rule) if rule is not None else None,
    }


def run_manifest(model: Mapping[str, Any] | None, ensemble: EnsembleSpec, options: OutputOptions,
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of a batch: the model (:func:`model_fingerprint`), the ensemble, the settings
    that change masks (mirroring, step size, series, postprocessing) and the output options."""
    outputs = {key: value for key, value in asdict(options).items() if key != "overwrite"}
    return _plain({"format": FORMAT_VERSION, "model": model, "ensemble": ensemble.to_dict(),
                   "settings": dict(settings), "outputs": outputs})


@dataclass
class Run:
    """A batch writing into ``output_dir``; ``done`` holds the JSON of each case whose outputs
    were complete when it was opened (resume), by case name."""

    output_dir: Path
    manifest: dict[str, Any]
    resumed: bool = False
    existed: bool = False
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    _started: bool = False

    @property
    def manifest_file(self) -> Path:
        return self.output_dir / MANIFEST_FILE

    def start(self) -> None:
        """Record the manifest, once, before the first case's files are written."""
        if not self._started:
            write_json(self.manifest_file, self.manifest, overwrite=True)
            self._started = True

    def finish(self, succeeded: bool) -> None:
        """When no case succeeded (and none was done before), remove what this run wrote: the
        folder itself if the run created it, else the manifest."""
        if succeeded or self.done:
            return
        if not self.existed:
            shutil.rmtree(self.output_dir, ignore_errors=True)
        elif self._started:
            self.manifest_file.unlink(missing_ok=True)
            remove_partials(self.output_dir)


def open_run(output_dir: str | os.PathLike[str], manifest: Mapping[str, Any], *, resume: bool = False,
             overwrite: bool = False) -> Run:
    """Check ``output_dir`` (a folder, or creatable, writable; without ``resume`` or
    ``overwrite``, holding no results) and open a batch in it; writes nothing yet.

    With ``resume``, the folder's manifest must equal ``manifest`` (else
    :class:`OutputExistsError`): stale temporary files are removed and the complete cases are
    listed in :attr:`Run.done`. ``overwrite`` removes the stale files and redoes every case.
    """
    if resume and overwrite:
        raise IchsegError("use --resume (continue a batch) or --overwrite (start it again), not both")
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite=overwrite, keep=resume)
    run = Run(output_dir, _plain(manifest), resumed=resume, existed=output_dir.exists())
    if not run.existed:
        return run
    if resume:
        _check_same_run(output_dir, run.manifest)
    remove_partials(output_dir)
    if resume:
        run.done = complete_cases(output_dir)
    return run


def complete_cases(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Each case JSON of ``output_dir`` whose listed outputs all exist, by case name."""
    done = {}
    for path in sorted(output_dir.glob("*.json")):
        if path.name == MANIFEST_FILE or is_partial(path):
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a finished case's JSON: the case is done again
        outputs = summary.get("outputs") if isinstance(summary, dict) else None
        if isinstance(outputs, dict) and outputs.get("json") == path.name and all(
                isinstance(name, str) and (output_dir / name).is_file() for name in outputs.values()):
            done[str(summary.get("case", path.stem))] = summary
    return done


def _check_same_run(output_dir: Path, manifest: dict[str, Any]) -> None:
    file = output_dir / MANIFEST_FILE
    holds_results = any(not is_partial(entry) for entry in output_dir.iterdir())
    if not file.is_file():
        if holds_results:
            raise OutputExistsError(f"{output_dir}: holds results without a {MANIFEST_FILE}, so "
                                    f"--resume cannot tell how they were made (use --overwrite "
                                    f"to start again)")
        return
    try:
        recorded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OutputExistsError(f"{file}: unreadable ({error}); use --overwrite to start "
                                f"again") from None
    differences = _differences(recorded, manifest)
    if differences:
        raise OutputExistsError(f"{output_dir}: its results were made with a different "
                                f"{', '.join(differences)}; --resume continues only the same run "
                                f"(use --overwrite to start again)")


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields that differ (one level into each section)."""
    if not isinstance(recorded, dict) or not isinstance(current, dict):
        return [] if recorded == current else [prefix or "manifest"]
    names = []
    for key in sorted(set(recorded) | set(current)):
        if key in _INFORMATIVE or recorded.get(key) == current.get(key):
            continue
        name = f"{prefix}.{key}" if prefix else key
        if prefix or not isinstance(current.get(key), dict):
            names.append(name)
        else:
            names.extend(_differences(recorded.get(key), current.get(key), name))
    return names


def _sha256(path: Path, tail: int | None = None) -> str:
    with open(path, "rb") as handle:
        if tail is not None:
            handle.seek(max(0, path.stat().st_size - tail))
        return hashlib.sha256(handle.read()).hexdigest()


def _plain(value: Any) -> Any:
    """As it reads back from JSON (tuples become lists), so that manifests compare equal."""
    return json.loads(json.dumps(value))
