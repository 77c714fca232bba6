"""``quantlens eval``: run models on CIFAR-10."""

from __future__ import annotations

import argparse
import json

from quantlens.cli._common import print_table
from quantlens.cli.inspect_commands import MODEL_HELP, TRUST_HELP
from quantlens.evaluate import evaluate
from quantlens.runtime import open_session
from quantlens.zoo.bundled import resolve_model

DATA_DIR_HELP = (
    "CIFAR-10 folder: python-pickle layout (test_batch) or class folders of images "
    "(default: $QUANTLENS_CIFAR10_DIR, then ~/.cache/quantlens/cifar-10-batches-py)"
)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that control how a model is loaded and fed."""
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--trust", action="store_true", help=TRUST_HELP)
    parser.add_argument("--layout", choices=["NHWC", "NCHW"], help="override the input layout the model records or probing finds")
    parser.add_argument(
        "--scaling",
        choices=["raw", "unit", "standardize"],
        help="override pixel scaling: raw 0-255, unit 0-1, or standardize with mean/std "
        "(default: the model's metadata, else the float range an int8/uint8 input's quantization "
        "covers, else standardize)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module to ``subparsers``."""
    parser = subparsers.add_parser(
        "eval",
        help="top-1 accuracy on the CIFAR-10 test split",
        description="Run a model on the CIFAR-10 test images and report top-1 accuracy in percent, "
        "overall and per class.",
    )
    parser.add_argument("model", help=MODEL_HELP)
    add_input_options(parser)
    parser.add_argument("--limit", type=int, help="evaluate only the first N test images (default: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=250, help="images per run (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    session = open_session(
        resolve_model(args.model), trust=args.trust, layout=args.layout, scaling=args.scaling
    )
    result = evaluate(session, data_dir=args.data_dir, limit=args.limit, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{result.model}: top-1 {result.accuracy:.2f}% ({result.correct}/{result.count})")
    print_table(
        ["class", "top-1 %"],
        [[name, "-" if value is None else f"{value:.1f}"] for name, value in result.per_class_accuracy.items()],
    )
    return 0
