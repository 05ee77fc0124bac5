"""``ichseg evaluate``: INSTANCE challenge metrics of predicted masks against reference masks.

``ichseg evaluate PRED REF`` evaluates one folder (or one file) of predictions;
``ichseg evaluate --compare A B C --ref REF`` evaluates several and ranks them the INSTANCE way.
Label maps of hemorrhage types are scored for any hemorrhage and per class, their names read
from a labels.json or dataset.json beside the references or given with ``--labels``.
Exit code 2 when a case failed or no case matched, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ichseg.cli.common import add_overwrite
from ichseg.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, HD, HD95, NSD, RVD and volumes of predictions against references",
        description="Evaluate predicted masks against reference masks with the INSTANCE 2022 "
                    "challenge metrics, and the false-positive volume and components. Cases are "
                    "matched by file name. Label maps of hemorrhage types are scored for any "
                    "hemorrhage (the challenge's binary metrics on mask > 0) and per class.",
    )
    parser.add_argument("pred", nargs="?", type=Path, metavar="PRED",
                        help="predicted masks: a folder of NAME.nii.gz files, or one file")
    parser.add_argument("ref", nargs="?", type=Path, metavar="REF",
                        help="reference masks: a folder with the same names, or one file")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="PRED",
                        help="rank several prediction folders against --ref (methods are named "
                             "after their folders)")
    parser.add_argument("--ref", dest="compare_ref", type=Path, metavar="REF",
                        help="reference folder for --compare")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT",
                        help="folder for metrics.csv, summary.json, summary.md and PNG plots")
    parser.add_argument("--tolerance", type=float, default=None, metavar="MM",
                        help="NSD tolerance in mm (default: 0.42, INSTANCE's)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="cases evaluated in parallel (default: one per CPU core)")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--missing", choices=("error", "empty"), default="error",
                        help="a reference case without a prediction: an error (default), or scored "
                             "as an empty prediction (Dice 0, HD infinite), as the challenge does")
    parser.add_argument("--labels", metavar="NAME=VALUE,...",
                        help="the classes of label maps, e.g. EDH=1,IPH=2,IVH=3,SAH=4,SDH=5 "
                             "(default: the labels of a labels.json or dataset.json in the "
                             "reference folder or the one above; without one, masks must be "
                             "binary)")
    add_overwrite(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ichseg.metrics import (
        DEFAULT_NSD_TOLERANCE_MM,
        EvaluationLabels,
        compare_methods,
        evaluate,
        parse_labels_option,
    )

    labels = None
    if args.labels is not None:
        labels = EvaluationLabels(parse_labels_option(args.labels), "--labels")
    options = dict(
        nsd_tolerance_mm=DEFAULT_NSD_TOLERANCE_MM if args.tolerance is None else args.tolerance,
        workers=args.workers, overwrite=args.overwrite, plots=not args.no_plots,
        missing=args.missing, labels=labels,
    )
    if args.compare:
        if args.pred or args.ref or args.compare_ref is None:
            raise InputError("use --compare PRED... --ref REF without positional PRED REF")
        comparison = compare_methods(args.compare, args.compare_ref, args.output, **options)
        _print_comparison(comparison)
        evaluations = list(comparison.evaluations.items())
        ok = comparison.ok
    else:
        if args.pred is None or args.ref is None or args.compare_ref is not None:
            raise InputError("give PRED and REF (two folders or two files), or --compare PRED... "
                             "--ref REF")
        evaluation = evaluate(args.pred, args.ref, args.output, **options)
        _print_evaluation(evaluation)
        evaluations = [("", evaluation)]
        ok = evaluation.ok
    for method, evaluation in evaluations:
        _print_issues(method, evaluation)
    if args.output is not None:
        print(f"wrote {args.output}")
    return 0 if ok else 2


def _print_evaluation(evaluation) -> None:
    from ichseg.metrics.summary import case_table, metric_summary_table
    from ichseg.metrics.writing import method_name

    if not evaluation.rows:
        return
    what = ", any hemorrhage" if evaluation.is_multiclass else ""
    _print_table(f"Per case{what}", *case_table(evaluation.rows))
    _print_table(f"Summary of {len(evaluation.rows)} cases{what} (NSD tolerance "
                 f"{evaluation.nsd_tolerance_mm:g} mm)", *metric_summary_table(evaluation.summary()))
    _print_by_class({"": evaluation})
    _print_empty_references({method_name(evaluation): evaluation.rows})


def _print_comparison(comparison) -> None:
    from ichseg.metrics.ranking import ranking_table

    by_class = ", any hemorrhage" if comparison.class_rankings else ""
    if comparison.ranking:
        _print_table(f"INSTANCE ranking{by_class}: mean ± sd [mean per-case rank]",
                     *ranking_table(comparison.ranking, comparison.results))
    for name, ranking in comparison.class_rankings.items():
        _print_table(f"INSTANCE ranking, {name}: mean ± sd [mean per-case rank]",
                     *ranking_table(ranking, comparison.class_results(name)))
    _print_by_class(comparison.evaluations)
    _print_empty_references(comparison.results)


def _print_by_class(evaluations) -> None:
    """For label maps, a summary by class (for each method of a comparison)."""
    from ichseg.metrics.summary import class_summary_table
    from ichseg.metrics.writing import CLASS_METRICS

    for method, evaluation in evaluations.items():
        if evaluation.is_multiclass and evaluation.rows:
            title = f"By class{f' ({method})' if method else ''}: mean ± sd over the cases scored"
            _print_table(title, *class_summary_table(evaluation.class_summaries(CLASS_METRICS),
                                                     CLASS_METRICS))


def _print_empty_references(results) -> None:
    from ichseg.metrics.summary import empty_reference_summary, empty_reference_table

    if any(empty_reference_summary(rows)["n_cases"] for rows in results.values()):
        _print_table("False positives on cases without hemorrhage in the reference",
                     *empty_reference_table(results))


def _print_table(title: str, header: list[str], body: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for column in header:
        table.add_column(Text(column),
                         justify="left" if column in ("Case", "Method", "Metric", "Class") else "right")
    for row in body:
        table.add_row(*(Text(cell) for cell in row))
    Console().print(table)


def _print_issues(method: str, evaluation) -> None:
    """Failures as one error line each, then missing and extra cases as warnings, on stderr."""
    where = f"{method}: " if method else ""
    for name, reason in evaluation.failures:
        print(f"ichseg: error: {where}case {name}: {reason}", file=sys.stderr)
    if evaluation.missing:
        print(f"ichseg: warning: {where}no prediction for {len(evaluation.missing)} reference "
              f"case(s), scored as empty masks: {', '.join(evaluation.missing)}", file=sys.stderr)
    if evaluation.extra:
        print(f"ichseg: warning: {where}no reference for {len(evaluation.extra)} prediction(s): "
              f"{', '.join(evaluation.extra)}", file=sys.stderr)
    if not evaluation.rows:
        print(f"ichseg: error: {where}no case could be evaluated", file=sys.stderr)
