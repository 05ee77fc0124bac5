"""The ``ichseg`` command line: a thin layer over the Python API.

Each command lives in its own module under :mod:`ichseg.cli` with a ``register(subparsers)``
function. Expected failures (:class:`ichseg.errors.IchsegError`) print one line on stderr and exit
with code 2; heavy imports happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ichseg.errors import IchsegError
from ichseg.version import __version__

#: Modules under ichseg.cli, in the order their commands appear in ``ichseg --help``.
COMMAND_MODULES = (
    "demo",
    "synth",
    "import_data",
    "plan",
    "recipes",
    "train",
    "predict",
    "evaluate",
    "cv_report",
    "postprocess",
    "compare",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ichseg",
        description="Intracranial hemorrhage segmentation on non-contrast head CT (nnU-Net v2).",
    )
    parser.add_argument("--version", action="version", version=f"ichseg {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"ichseg.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except IchsegError as error:
        print(f"ichseg: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("ichseg: interrupted", file=sys.stderr)
        return 130
