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
        "import", help="import a labelled data set (INSTANCE, nnU-Net raw or BHSD layout)",
        description="Check every image/label pair of SRC and copy the data set into the workspace "
                    "in nnU-Net raw format. SRC holds data/ and label/ (INSTANCE 2022; one class "
                    "unless SRC/labels.json declares the classes, as 'ichseg synth --subtypes' "
                    "writes), dataset.json, imagesTr/ and labelsTr/ (nnU-Net raw, one channel, the "
                    "classes its labels declare) or images/ and 'ground truths'/ (BHSD and MBH-Seg: "
                    "1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH). If any pair fails a check, every problem "
                    "is listed and nothing is imported.")
    parser.add_argument("source", type=Path, metavar="SRC", help="the data set folder to import")
    parser.add_argument("--name", required=True,
                        help="name of the data set in the workspace (letters, digits, '_', '-')")
    parser.add_argument(
        "--labels", metavar="NAME=VALUE,...",
        help="the class of each label value in SRC, in place of what SRC declares. ichseg's "
             "values are 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH (BHSD, MBH-Seg), or 1 hemorrhage for "
             "one class. NAME: EDH, IPH, IVH, SAH, SDH (or epidural, intraparenchymal, "
             "intraventricular, subarachnoid, subdural), 'hemorrhage' for a one-class data set, "
             "'background' for values to drop; join several values with '+'. Examples: a source "
             "whose 1 is IPH and 2 SDH: --labels IPH=1,SDH=2; a one-class source marking "
             "hemorrhage 255: --labels hemorrhage=255; a subtype source as one class: "
             "--labels hemorrhage=1+2+3+4+5. Other values are refused.")
    add_workspace(parser)
    add_overwrite(parser)
    add_accept_intensities(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ichseg.data.importer import import_dataset

    imported = import_dataset(args.source, args.name, args.workspace, overwrite=args.overwrite,
                              progress=sys.stderr.isatty(), accept_intensities=args.accept_intensities,
                              labels=args.labels)
    print_warnings(imported.warnings)
    classes = f" (classes {', '.join(imported.labels.names[1:])})" if imported.labels.is_multiclass else ""
    print(f"imported {imported.n_cases} cases as data set '{imported.name}' into {imported.folder}{classes}")
    return 0
