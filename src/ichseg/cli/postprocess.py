"""``ichseg postprocess-select``: choose the postprocessing rules by cross-validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ichseg.cli.common import add_workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("postprocess-select", help="choose a postprocessing rule out of fold",
                                   description=run.__doc__)
    parser.add_argument("model", type=Path, help="trained model folder (WORKSPACE/models/DATASET/RECIPE)")
    parser.add_argument("--margin", type=float, help="how much worse than no postprocessing any metric may "
                        "get (default 0.01: absolute for Dice/NSD/RVD, relative for HD)")
    add_workspace(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Score every candidate (the component rules, alone and after the intracranial rule, which reads
    the imported training CTs) on the recipe's out-of-fold ensemble, keep the best mean Dice that
    worsens no metric by more than the margin, print the table and save the choice as JSON. With
    several hemorrhage classes the intracranial rule is chosen on any hemorrhage, then a component
    rule per class on that class's metrics."""
    from ichseg.crossval import select_postprocessing
    from ichseg.postprocessing.class_selection import (
        ClassSelection,
        format_class_selection,
    )
    from ichseg.postprocessing.selection import format_selection

    selection = select_postprocessing(args.model, args.workspace, margin=args.margin)
    print(format_class_selection(selection) if isinstance(selection, ClassSelection)
          else format_selection(selection))
    print(f"\nSaved to {args.model / 'postprocessing.json'}")
    return 0
