"""``ichseg serve``: a DICOM node that segments CT series sent to it and sends the results back."""

from __future__ import annotations

import argparse
from pathlib import Path

from ichseg.cli.common import add_device, add_workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="DICOM node: receive CT series, send SEG, key images and SR back",
                                   description=run.__doc__)
    parser.add_argument("--model", type=Path, help="trained model folder (WORKSPACE/models/DATASET/RECIPE)")
    parser.add_argument("--listen", metavar="AE_TITLE@PORT", help="this node's AE title and port, e.g. ICHSEG@11112")
    parser.add_argument("--send-to", metavar="AE_TITLE@HOST:PORT",
                        help="where results go (a PACS), e.g. ORTHANC@127.0.0.1:4242; it may also send")
    parser.add_argument("--allow-ae", action="append", default=[], metavar="AE_TITLE",
                        help="a further calling AE title allowed to send (repeatable)")
    parser.add_argument("--quiet-seconds", type=float, default=30.0,
                        help="a study is complete after this long without a new instance in any of its "
                             "series (default 30)")
    parser.add_argument("--all-series", action="store_true",
                        help="segment every series of a study that fits the series rules, not only the best one")
    parser.add_argument("--series-rules", type=Path, metavar="FILE",
                        help="JSON rules choosing a study's series, replacing ichseg's default (see the README)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--keep-identifiers", action="store_true", help="log UIDs as they are, not hashed")
    parser.add_argument("--no-mirroring", action="store_true", help="faster, slightly less accurate")
    parser.add_argument("--status", action="store_true", help="print the node's queue and last errors, and exit")
    _add_timeouts(parser)
    add_device(parser)
    add_workspace(parser)
    parser.set_defaults(run=run)


def _add_timeouts(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ichseg.serve.config.Timeouts` field, named as dcmtk's storescu names them."""
    from ichseg.serve.config import Timeouts

    defaults = Timeouts()
    group = parser.add_argument_group("waiting on the PACS results go to (seconds; an attempt that "
                                      "times out is retried with back-off)")
    for flag, field, what in (("--connect-timeout", "connect", "the TCP connection"),
                              ("--acse-timeout", "association", "the answer to an association request"),
                              ("--dimse-timeout", "dimse", "the answer to each C-STORE"),
                              ("--network-timeout", "network", "a read or write that makes no progress")):
        group.add_argument(flag, dest=f"timeout_{field}", type=float, default=getattr(defaults, field),
                           metavar="S", help=f"{what} (default {getattr(defaults, field):g})")


def run(args: argparse.Namespace) -> int:
    """Receive CT studies by C-STORE; once a study has been quiet for --quiet-seconds, segment the
    series the series rules choose in it (every eligible one with --all-series) and send the
    DICOM-SEG, a key-image Secondary Capture and a TID 1500 measurement report of each to
    --send-to. State (instances, queue, results, log.jsonl) lives in WORKSPACE/serve."""
    from ichseg.errors import InputError
    from ichseg.io.series_selection import SeriesRules
    from ichseg.serve import (
        ServeOptions,
        format_status,
        parse_listen,
        parse_peer,
        queue_status,
        serve,
    )
    from ichseg.serve.config import Timeouts, ae_title
    from ichseg.workspace import Workspace

    state_dir = Workspace.open(args.workspace).root / "serve"
    if args.status:
        print(format_status(queue_status(state_dir)))
        return 0
    missing = [flag for flag, value in (("--model", args.model), ("--listen", args.listen),
                                         ("--send-to", args.send_to)) if not value]
    if missing:
        raise InputError(f"serve needs {', '.join(missing)} (or --status)")
    title, port = parse_listen(args.listen)
    timeouts = Timeouts(args.timeout_connect, args.timeout_association, args.timeout_dimse, args.timeout_network)
    serve(ServeOptions(model=args.model, ae_title=title, port=port, send_to=parse_peer(args.send_to),
                       state_dir=state_dir, allow_ae=tuple(ae_title(a) for a in args.allow_ae),
                       quiet_seconds=args.quiet_seconds, keep_identifiers=args.keep_identifiers,
                       device=args.device, mirroring=not args.no_mirroring, host=args.host,
                       timeouts=timeouts, series_rules=SeriesRules.coerce(args.series_rules),
                       all_series=args.all_series))
    return 0
