"""``ichseg cv-report``: the cross-validated ablation of a trained recipe (Li & Chen's Table 1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ichseg.cli.common import add_workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cv-report", help="compare model groups and ensembles out of fold",
                                   description=run.__doc__)
    parser.add_argument("model", type=Path, help="trained model folder (WORKSPACE/models/DATASET/RECIPE)")
    parser.add_argument("--tolerance", type=float, default=None, metavar="MM",
                        help="NSD tolerance in mm (default: 0.42, INSTANCE's)")
    add_workspace(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate each model group and each ensemble strategy on the out-of-fold predictions; print
    mean ± sd of Dice, HD, RVD, NSD and the false-positive volume and components, the false
    positives on the cases without hemorrhage (mean and max), for any hemorrhage and, with several
    hemorrhage classes, for each class; write cv_report.md / cv_report.csv into the model folder."""
    from ichseg.atomic import check_output_dir
    from ichseg.crossval import cv_report
    from ichseg.metrics import DEFAULT_NSD_TOLERANCE_MM
    from ichseg.model.folder import ModelFolder

    check_output_dir(ModelFolder.open(args.model).path, keep=True, what="model folder")
    tolerance = DEFAULT_NSD_TOLERANCE_MM if args.tolerance is None else args.tolerance
    report = cv_report(args.model, args.workspace, nsd_tolerance_mm=tolerance)
    print(f"Out-of-fold results, {report.n_cases} cases, groups: {', '.join(report.groups)}\n")
    print(report.markdown)
    print(f"\nWritten: {args.model / 'cv_report.md'}, {args.model / 'cv_report.csv'}")
    return 0
