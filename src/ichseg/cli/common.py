"""Options shared by several commands."""

from __future__ import annotations

import argparse
import sys
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


def add_folds(parser: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """``--fold`` as training and prediction both take it (parsed by
    :func:`ichseg.model.folder.parse_folds`)."""
    parser.add_argument("--fold", default=default,
                        help=f"0-4, a list such as 0,1, 'all' (every cross-validation fold of the recipe) "
                             f"or 'full' (the model trained on all cases, nnU-Net's fold 'all'); {what}")


def add_accept_intensities(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accept-intensities", action="store_true",
                        help="segment CTs whose values do not look like Hounsfield units (NaN voxels, "
                             "8-bit exports, values beyond any CT scale), with a warning, instead of "
                             "refusing them")


def print_warnings(warnings: list[str]) -> None:
    """Each warning as one line on stderr."""
    for warning in warnings:
        print(f"ichseg: warning: {warning}", file=sys.stderr)


def add_ray(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                        help=f"{what} on Ray: a local instance, or the cluster at ADDRESS ('auto', HOST:PORT, "
                             "ray://HOST:10001); the workspace and outputs must be on storage every node "
                             "sees (needs pip install 'ichseg[ray]')")
