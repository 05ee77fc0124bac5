"""``ichseg demo``: the whole pipeline on built-in synthetic data."""

from __future__ import annotations

import argparse

from ichseg.cli.common import add_device, add_workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="synthesise, train, predict and evaluate on phantoms",
                                   description=run.__doc__)
    parser.add_argument("--train-cases", type=int, default=10, help="training phantoms (default 10)")
    parser.add_argument("--test-cases", type=int, default=3, help="test phantoms (default 3)")
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="tiny",
                        help="phantom size (default tiny: 16 x 64 x 64, what a 2-core CPU trains in minutes)")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default 25)")
    parser.add_argument("--iterations", type=int, default=10, help="iterations per epoch (default 10)")
    add_device(parser)
    add_workspace(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Synthesise head CTs (with the blood-like tissues of a real head), import, plan, train Li & Chen's
    3D nnU-Net (li2022 group 3d_wce) on a short schedule, predict the test phantoms without and with
    the intracranial rule and print per case Dice, volumes, false-positive volume and voxels marked
    outside the skull. A model trained on phantoms tests the pipeline; it does not read patients."""
    from ichseg.demo import demo, format_table

    result = demo(args.workspace, n_train=args.train_cases, n_test=args.test_cases, size=args.size,
                  epochs=args.epochs, iterations=args.iterations, device=args.device)
    print(format_table(result))
    print(f"\nMasks, measures, previews and reports: {result.output_dir}")
    print(f"Model: {result.model_dir}")
    print(f"Finished in {result.seconds / 60:.1f} min")
    return 0
