"""``ichseg recipes``: the named recipes and what each contains."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipes", help="list the recipes and what each trains",
                                   description=run.__doc__)
    parser.add_argument("name", nargs="?", help="show only this recipe (a name or a .json path)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List the built-in recipes (or one recipe file): groups, losses, schedule, preprocessing, ensemble."""
    from ichseg.recipes import builtin_recipe_names, describe_recipe, load_recipe

    names = [args.name] if args.name else builtin_recipe_names()
    print("\n\n".join(describe_recipe(load_recipe(n)) for n in names))
    return 0
