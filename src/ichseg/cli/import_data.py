"""``ichseg import``: bring a labelled data set into the workspace in nnU-Net raw format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ichseg.cli.common import (
    add_accept_intensities,
    add_overwrite,
    add_workspace,
    print_warnings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import", help="import a labelled data set (INSTANCE or nnU-Net raw layout)",
        description="Check every image/label pair of SRC and copy the data set into the workspace "
                    "in nnU-Net raw format. SRC holds data/ and label/ (INSTANCE 2022) or "
                    "dataset.json, imagesTr/ and labelsTr/ (nnU-Net raw, one channel, labels 0 "
                    "and 1). If any pair fails a check, every problem is listed and nothing is "
                    "imported.")
    parser.add_argument("source", type=Path, metavar="SRC", help="the data set folder to import")
    parser.add_argument("--name", required=True,
                        help="name of the data set in the workspace (letters, digits, '_', '-')")
    add_workspace(parser)
    add_overwrite(parser)
    add_accept_intensities(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ichseg.data.importer import import_dataset

    imported = import_dataset(args.source, args.name, args.workspace, overwrite=args.overwrite,
                              progress=sys.stderr.isatty(), accept_intensities=args.accept_intensities)
    print_warnings(imported.warnings)
    print(f"imported {imported.n_cases} cases as data set '{imported.name}' into {imported.folder}")
    return 0
