"""``quantlens zoo train`` and ``quantlens zoo build``: the scripts behind the bundled models."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``zoo`` and its steps to ``subparsers``."""
    from quantlens.zoo import build, report, train

    zoo = subparsers.add_parser(
        "zoo",
        help="train and rebuild the bundled ResNet8 models",
        description="Train ResNet8 on CIFAR-10 (train), then export and quantize every bundled file (build).",
    )
    steps = zoo.add_subparsers(dest="zoo_command", metavar="STEP", required=True)
    for name, module, summary in (
        ("train", train, "train ResNet8 on CIFAR-10"),
        ("build", build, "export and quantize the bundled files from trained weights"),
        ("report", report, "evaluate every bundled model and print the docs' accuracy table"),
    ):
        step = steps.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.build_parser(step)
        step.set_defaults(handler=module.run)
