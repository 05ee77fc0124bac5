"""``ichseg predict``: segment CT scans with a trained model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ichseg.cli.common import (
    add_accept_intensities,
    add_device,
    add_folds,
    add_overwrite,
    add_ray,
    add_workspace,
    print_warnings,
)
from ichseg.ensemble.rules import READINGS, STRATEGIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="segment NIfTI files or DICOM series", description=run.__doc__)
    parser.add_argument("-i", "--input", required=True, type=Path, help="a NIfTI file, a folder of them, "
                        "a DICOM series or study folder (or DICOMDIR), or a folder of such folders")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--model", type=Path, help="trained model folder (WORKSPACE/models/DATASET/RECIPE)")
    parser.add_argument("--dataset", help="use the workspace's model of this data set instead of --model")
    parser.add_argument("--recipe", help="with --dataset: the recipe's model (default: nnunet)")
    parser.add_argument("--ensemble", choices=STRATEGIES,
                        help="how to combine several models (default: the recipe's)")
    parser.add_argument("--th", type=float, help="uncertainty ensemble: half-ratio threshold (default 0.5)")
    parser.add_argument("--n1", type=int, help="uncertainty ensemble: votes needed when HR > th (default 1)")
    parser.add_argument("--n2", type=int, help="uncertainty ensemble: votes needed when HR < th (default C/2)")
    parser.add_argument("--reading", choices=READINGS,
                        help="uncertainty ensemble: HR as printed (n = floor(C/2)) or majority (n >= ceil(C/2))")
    parser.add_argument("--group", action="append", help="use only this model group (repeatable)")
    add_folds(parser, None, "use only these models (default: every trained model)")
    parser.add_argument("--no-postprocess", action="store_true", help="skip the model folder's postprocessing rules")
    parser.add_argument("--no-mirroring", action="store_true", help="faster, slightly less accurate")
    parser.add_argument("--step-size", type=float, default=0.5, help="sliding-window step (default 0.5)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--series", metavar="UID",
                       help="the DICOM SeriesInstanceUID to segment when a folder holds a study (instead of the "
                            "series rules' choice)")
    which.add_argument("--all-series", action="store_true",
                       help="segment every series of a study that fits the series rules, each as its own case "
                            "(FOLDER_s<SeriesNumber>)")
    parser.add_argument("--series-rules", type=Path, metavar="FILE",
                        help="JSON rules that choose a study's series, replacing ichseg's default (see the README)")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="interpolate across missing slices of a DICOM series instead of refusing it")
    parser.add_argument("--write-ct", action="store_true",
                        help="write the CT as segmented (NAME_ct.nii.gz) for every case, not only for "
                             "DICOM series whose gantry tilt or uneven slices were corrected")
    parser.add_argument("--keep-identifiers", action="store_true",
                        help="include patient identifiers from DICOM headers in the outputs")
    parser.add_argument("--no-report", action="store_true", help="skip the PNG previews and HTML reports")
    parser.add_argument("--show-intracranial", action="store_true",
                        help="draw in each preview the intracranial space (the skull's inside) that the "
                             "intracranial rule used, or would use")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted batch in OUT: skip the cases whose outputs are "
                             "complete (same model and options only)")
    add_accept_intensities(parser)
    add_device(parser)
    add_ray(parser, "run the batch as a pipeline: reading and writing on CPU workers, the models once per GPU,")
    parser.add_argument("--ray-workers", type=int, metavar="N",
                        help="with --ray: model copies at work (default: one per GPU, else the CPUs less one)")
    add_workspace(parser)
    add_overwrite(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="print how each network tiles each case (input shape, tiles, mirrors)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write per case the mask (in the input's geometry), the vote map, JSON measures, a preview PNG,
    an HTML report and, for DICOM input, a DICOM-SEG; exit 2 if any case failed (nothing is written
    when none succeeded). In a DICOM study, the series rules choose the series to segment (the soft-tissue
    axial series whose slice thickness is closest to the model's); one line per series on stderr says
    which was segmented and why each other was skipped."""
    import sys

    from ichseg.commands import predict
    from ichseg.report.options import OutputOptions

    params = {"th": args.th, "n1": args.n1, "n2": args.n2, "reading": args.reading}
    options = OutputOptions(keep_identifiers=args.keep_identifiers, preview=not args.no_report,
                            html=not args.no_report, overwrite=args.overwrite,
                            show_intracranial=args.show_intracranial, write_ct=args.write_ct)
    result = predict(args.input, args.output, args.model, dataset=args.dataset, recipe=args.recipe,
                     workspace=args.workspace, ensemble=args.ensemble, ensemble_params=params,
                     groups=args.group, folds=args.fold, postprocess=not args.no_postprocess,
                     options=options, device=args.device, mirroring=not args.no_mirroring,
                     step_size=args.step_size, series=args.series, all_series=args.all_series,
                     series_rules=args.series_rules, verbose=args.verbose,
                     resume=args.resume, accept_intensities=args.accept_intensities, ray=args.ray,
                     ray_workers=args.ray_workers, allow_gaps=args.allow_gaps)
    print_warnings(result.warnings)
    if result.cases or result.skipped:
        skipped = f" ({len(result.skipped)} complete already)" if result.skipped else ""
        print(f"{len(result.cases)} case(s) written to {result.output_dir}{skipped}")
    for name, message in result.failures:
        print(f"ichseg: error: {message if name in message else f'{name}: {message}'}", file=sys.stderr)
    return 2 if result.failures or not (result.cases or result.skipped) else 0
