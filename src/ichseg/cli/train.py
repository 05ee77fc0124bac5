"""``ichseg train``: train a recipe's models, resumably."""

from __future__ import annotations

import argparse

from ichseg.cli.common import (
    add_device,
    add_folds,
    add_overwrite,
    add_ray,
    add_verbose,
    add_workspace,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a recipe's models (resumable)", description=run.__doc__)
    parser.add_argument("--dataset", required=True, help="name given to 'ichseg import'")
    parser.add_argument("--recipe", default="nnunet", help="recipe name or .json path (default: nnunet)")
    add_folds(parser, "all", "default: all")
    parser.add_argument("--configuration", choices=("2d", "3d_fullres"),
                        help="train only the recipe's groups of this configuration")
    parser.add_argument("--group", action="append", help="train only this model group (repeatable)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--iterations", type=int, help="override the training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, help="override the validation iterations per epoch")
    add_device(parser)
    add_ray(parser, "train the models at once, as Ray tasks with one GPU each (CPU without GPUs),")
    add_workspace(parser)
    add_overwrite(parser)
    add_verbose(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train every (group, fold) of the recipe in order. Re-running skips finished models and continues
    an interrupted one from its last checkpoint; each cross-validation model keeps its out-of-fold
    predictions."""
    from ichseg.atomic import check_output_dir
    from ichseg.commands import train
    from ichseg.workspace import Workspace

    check_output_dir(Workspace.coerce(args.workspace).root, keep=True, what="workspace")
    folder = train(args.dataset, args.recipe, workspace=args.workspace, folds=args.fold, groups=args.group,
                   configuration=args.configuration, epochs=args.epochs, iterations=args.iterations,
                   val_iterations=args.val_iterations, device=args.device, overwrite=args.overwrite,
                   verbose=args.verbose, ray=args.ray)
    models = folder.trained_models()
    print(f"{len(models)} trained model(s) in {folder.path}")
    return 0
