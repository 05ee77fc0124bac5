"""``ichseg synth``: write a synthetic head-CT data set with hemorrhage labels (INSTANCE layout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ichseg.cli.common import add_overwrite

#: The size options of :data:`ichseg.data.synth.SIZES` (listed here so ``--help`` stays fast).
SIZE_CHOICES = ("tiny", "small", "full")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="write synthetic head CTs with hemorrhage labels",
        description="Write N synthetic non-contrast head CTs with hemorrhage labels in the "
                    "INSTANCE 2022 layout: OUT/data/NAME.nii.gz, OUT/label/NAME.nii.gz and "
                    "OUT/cases.csv (types, volume, spacing and shape of every case). The heads "
                    "hold the tissues that read like blood and are not (muscles, scalp vessels, "
                    "dural sinuses, falx and tentorium, choroid plexus, beam hardening). The same "
                    "seed gives the same cases.")
    parser.add_argument("out", type=Path, metavar="OUT", help="folder to create")
    parser.add_argument("-n", "--cases", type=int, default=10, dest="n_cases",
                        help="number of cases (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--size", choices=SIZE_CHOICES, default="small",
                        help="tiny: 16x64x64 (tests); small: 24-32x128x128 (demos); "
                             "full: 20-40x512x512, INSTANCE-like (default: small)")
    parser.add_argument("--preview", type=Path, metavar="PNG", default=None,
                        help="also write a PNG showing the first cases (up to 12), each at its "
                             "bleed and at the level of its look-alikes")
    parser.add_argument("--subtypes", action="store_true",
                        help="label each voxel with its hemorrhage type (1 EDH, 2 IPH, 3 IVH, "
                             "4 SAH, 5 SDH) instead of 1, and name the classes in OUT/labels.json")
    add_overwrite(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ichseg.atomic import check_output_dir, check_output_file
    from ichseg.data.synth import synthesize

    check_output_dir(args.out, overwrite=args.overwrite)
    if args.preview is not None:
        check_output_file(args.preview, overwrite=args.overwrite)
    records = synthesize(args.out, args.n_cases, seed=args.seed, size=args.size,
                         overwrite=args.overwrite, preview=args.preview,
                         progress=sys.stderr.isatty(), subtypes=args.subtypes)
    bleeding = sum(1 for record in records if record.types)
    shown = f"; preview {args.preview}" if args.preview else ""
    print(f"wrote {len(records)} {args.size} cases ({bleeding} with hemorrhage) to {args.out}{shown}")
    return 0
