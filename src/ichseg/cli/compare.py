"""``ichseg compare BASELINE FOLLOWUP``: hematoma expansion between two scans."""

from __future__ import annotations

import argparse
from pathlib import Path

from ichseg.cli.common import add_overwrite


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="hematoma growth between a baseline and a follow-up scan",
        description="Compare the hemorrhage volumes of two scans of one patient and flag "
                    "expansion (growth > 6 mL or > 33% by default). Each scan is a mask image "
                    "or a case JSON written by 'ichseg predict'. When both scans name their "
                    "hemorrhage types (case JSONs of a subtype model, or masks holding the values "
                    "1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH), each type is compared too.",
    )
    parser.add_argument("baseline", type=Path, help="baseline mask (NIfTI) or case JSON")
    parser.add_argument("followup", type=Path, help="follow-up mask (NIfTI) or case JSON")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="also write the comparison as JSON")
    parser.add_argument("--absolute-threshold", type=float, default=None, metavar="ML",
                        help="growth in mL above which expansion is flagged (default: 6)")
    parser.add_argument("--relative-threshold", type=float, default=None, metavar="SHARE",
                        help="growth as a share of the baseline above which expansion is "
                             "flagged (default: 0.33)")
    parser.add_argument("--subtypes", action="store_true",
                        help="read masks as class maps of the subtypes even when they hold only 0 and "
                             "1 (1 is then epidural, not any hemorrhage)")
    add_overwrite(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ichseg.atomic import check_output_file, write_json
    from ichseg.clinical.expansion import compare_files, format_comparison

    if args.json is not None:
        check_output_file(args.json, overwrite=args.overwrite)
    given = {"absolute_threshold_ml": args.absolute_threshold,
             "relative_threshold": args.relative_threshold}
    thresholds = {name: value for name, value in given.items() if value is not None}
    result = compare_files(args.baseline, args.followup, subtypes=args.subtypes, **thresholds)
    print(format_comparison(result))
    if args.json is not None:
        write_json(args.json, result, overwrite=args.overwrite)
    return 0
