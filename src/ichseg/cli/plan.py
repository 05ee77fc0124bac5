"""``ichseg plan``: nnU-Net fingerprint, plans and preprocessing for a data set and recipe."""

from __future__ import annotations

import argparse

from ichseg.cli.common import add_verbose, add_workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="plan and preprocess an imported data set (nnU-Net)",
                                   description=run.__doc__)
    parser.add_argument("--dataset", required=True, help="name given to 'ichseg import'")
    parser.add_argument("--recipe", default="nnunet", help="recipe whose preprocessing to plan (default: nnunet)")
    add_workspace(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fingerprint the data set and write nnU-Net plans and preprocessed data for 2d and 3d_fullres."""
    from ichseg.training import plan

    result = plan(args.dataset, args.recipe, workspace=args.workspace, verbose=args.verbose)
    print(f"Planned {result.dataset} for recipe {result.recipe} ({result.nnunet_dataset}, {result.plans_name}):")
    for c in result.configurations:
        spacing = " × ".join(f"{s:.3g}" for s in c.spacing)
        print(f"  {c.name:11s} patch {list(c.patch_size)}, batch {c.batch_size}, spacing {spacing} mm")
    return 0
