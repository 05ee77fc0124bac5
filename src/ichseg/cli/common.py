"""Options shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", type=Path, default=None,
        help="folder for data sets, plans and models (default: $ICHSEG_WORKSPACE or ./ichseg-workspace)",
    )


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="show nnU-Net's own output")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs (default: cuda when available)")
