"""The ``quantlens`` command: one subcommand per task, errors as one line and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from quantlens.errors import QuantlensError

logger = logging.getLogger("quantlens")

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, the status of a process killed by a closed pipe


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    from quantlens.cli import (
        app_commands,
        capture_commands,
        compare_commands,
        inspect_commands,
        run_commands,
        zoo_commands,
    )

    parser = argparse.ArgumentParser(
        prog="quantlens",
        description="Inspect weights and activations of float and quantized models "
        "(ONNX, PyTorch state_dict, safetensors, TorchScript, TFLite, Keras HDF5).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (inspect_commands, run_commands, capture_commands, compare_commands, zoo_commands, app_commands):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in arguments:
        # Accept --debug after the subcommand too, where users tend to add it.
        arguments = ["--debug", *(a for a in arguments if a != "--debug")]
    if "--debug" not in arguments:
        # Before build_parser, which imports torch through the zoo commands.
        _quiet_framework_warnings()
    parser = build_parser()
    args = parser.parse_args(arguments)
    level = logging.WARNING
    if args.debug:
        level = logging.DEBUG
    elif args.verbose:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (QuantlensError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"quantlens: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("quantlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of a pipe stopped early (`quantlens layers ... | head`). Point stdout at
        # /dev/null so that flushing it at exit raises nothing, and exit as a process killed by
        # SIGPIPE would, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _quiet_framework_warnings() -> None:
    # torch 2.13 warns on every quantized tensor it creates and on each torch.jit call that these
    # APIs are deprecated; a user inspecting a file cannot act on that, so hide it unless --debug.
    # The C++ warnings are read from TORCH_CPP_LOG_LEVEL when torch is first imported.
    import warnings

    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    for category in (DeprecationWarning, UserWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=category, module=r"onnxruntime(\.|$)")


if __name__ == "__main__":
    sys.exit(main())
