"""The workspace: one folder holding everything ichseg keeps between commands.

Layout::

    WORKSPACE/
      nnUNet_raw/DatasetNNN_NAME/          imported data sets (nnU-Net raw format)
      nnUNet_preprocessed/DatasetNNN_NAME/ fingerprints, plans, preprocessed arrays
      models/NAME/RECIPE/                  trained recipes (self-describing model folders)

nnU-Net's three path variables are derived from this folder by :mod:`ichseg.engine`; the user
sets nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ichseg.errors import WorkspaceError

DEFAULT_WORKSPACE = "ichseg-workspace"
_DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def default_workspace() -> Path:
    """``$ICHSEG_WORKSPACE`` if set, else ``./ichseg-workspace``."""
    return Path(os.environ.get("ICHSEG_WORKSPACE") or DEFAULT_WORKSPACE)


def check_dataset_name(name: str) -> str:
    if not _VALID_NAME.match(name):
        raise WorkspaceError(
            f"data set name {name!r}: use letters, digits, '_' and '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> Workspace:
        return cls(Path(root) if root is not None else default_workspace()).resolved()

    @classmethod
    def coerce(cls, workspace: WorkspaceLike) -> Workspace:
        """A workspace given as an object, a path, or None (the default one), made absolute."""
        return workspace.resolved() if isinstance(workspace, Workspace) else cls.open(workspace)

    def resolved(self) -> Workspace:
        return Workspace(self.root.expanduser().absolute())

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        """nnU-Net's results folder: ichseg writes models elsewhere, but nnU-Net wants it set."""
        return self.root / "nnUNet_results"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def datasets(self) -> dict[str, str]:
        """Imported data sets: name -> nnU-Net folder name (``DatasetNNN_NAME``)."""
        found: dict[str, str] = {}
        if self.raw.is_dir():
            for folder in sorted(self.raw.iterdir()):
                match = _DATASET_FOLDER.match(folder.name)
                if match and folder.is_dir():
                    found[match.group(2)] = folder.name
        return found

    def dataset_folder_name(self, name: str) -> str:
        """The nnU-Net folder name of an imported data set, or a clear error."""
        datasets = self.datasets()
        if name not in datasets:
            known = ", ".join(datasets) or "none"
            raise WorkspaceError(
                f"data set {name!r} is not in workspace {self.root} (imported: {known}); "
                f"run 'ichseg import' first")
        return datasets[name]

    def new_dataset_folder_name(self, name: str) -> str:
        """A fresh ``DatasetNNN_NAME`` for ``name`` (reusing its number if it exists)."""
        check_dataset_name(name)
        datasets = self.datasets()
        if name in datasets:
            return datasets[name]
        used = {int(_DATASET_FOLDER.match(f).group(1)) for f in datasets.values()}  # type: ignore[union-attr]
        if self.preprocessed.is_dir():
            used |= {int(m.group(1)) for f in self.preprocessed.iterdir()
                     if (m := _DATASET_FOLDER.match(f.name))}
        number = next(n for n in range(1, 1000) if n not in used)
        return f"Dataset{number:03d}_{name}"

    def model_dir(self, dataset: str, recipe: str) -> Path:
        return self.models / dataset / recipe


#: What every function that takes a workspace accepts: a Workspace, a folder, or None (default).
WorkspaceLike = Workspace | str | os.PathLike | None
