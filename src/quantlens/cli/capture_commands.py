"""``quantlens activations`` and ``quantlens data cifar10``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from quantlens.capture import (
    ActivationStatistics,
    CaptureResult,
    StatisticsResult,
    capture_statistics,
    list_capture_points,
    split_batch,
)
from quantlens.capture.api import capture_selected, selection_for
from quantlens.capture.records import CapturePoint
from quantlens.cli._common import format_number, print_table
from quantlens.cli.inspect_commands import MODEL_HELP
from quantlens.cli.run_commands import add_input_options
from quantlens.datasets.cifar10 import CLASS_NAMES
from quantlens.datasets.download import (
    ARCHIVE_FOLDER,
    OFFICIAL_MD5,
    OFFICIAL_URL,
    default_destination,
    download_cifar10,
)
from quantlens.errors import InputError
from quantlens.inputs import parse_input
from quantlens.runtime import open_session
from quantlens.runtime.session import Session
from quantlens.stats import summarize
from quantlens.streaming import DEFAULT_BINS
from quantlens.zoo.bundled import resolve_model

INPUT_HELP = (
    "what to feed the model: cifar10:INDEX (test image 0-9999), cifar10:A-B (range, both ends "
    "included), cifar10:1,5,9, random or random:SEED (uniform random pixels, or standard normal "
    "values for inputs that are not images), or one or more "
    "PNG/JPEG paths (converted to RGB and resized to the model's input size)"
)
ACTIVATIONS_DESCRIPTION = """\
Run a model on one input batch and print every intermediate value (activation): its name, the
op that produced it, shape, dtype, min, max, mean and std over the whole batch, and its first
values. Quantized activations (int8/uint8) are shown dequantized, r = scale * (q - zero_point),
with their scale and zero_point and first integer codes. Then each input's label (CIFAR-10) and
the model's top-3 classes with softmax probabilities in percent.

With --stats, the batch is run in slices of --batch-size and per-activation statistics are
merged over all inputs, in memory independent of the number of inputs.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``activations`` and ``data`` to ``subparsers``."""
    _register_activations(subparsers)
    _register_data(subparsers)


def _register_activations(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "activations",
        help="capture and print intermediate activations",
        description=ACTIVATIONS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--input", nargs="+", metavar="SPEC", help=INPUT_HELP)
    add_input_options(parser)
    _add_selection_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_activations)


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--layer", action="append", metavar="NAME",
        help="capture only this activation or layer name, as --list-layers prints it (repeatable)",
    )
    which.add_argument(
        "--layer-index", action="append", type=int, metavar="I",
        help="capture only the capture point with this 0-based index from --list-layers (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="capture every activation (the default)")
    parser.add_argument("--list-layers", action="store_true", help="list the capture points without running the model")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--values", type=int, default=5, metavar="N", help="first values to print per activation (default: %(default)s)"
    )
    parser.add_argument(
        "--save", metavar="OUT.npz",
        help="write an NPZ with one array per activation (dequantized values), '<name>__codes' for "
        "quantized ones, '__input__' (the model input) and '__output__' (the first model output)",
    )

    parser.add_argument("--stats", action="store_true", help="print statistics merged over all inputs instead of one capture")
    parser.add_argument(
        "--bins", type=int, default=DEFAULT_BINS, help="float histogram bins for --stats, an even number: when values fall outside the range, "
        "pairs of bins merge so that the range doubles (default: %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="inputs per run for --stats (default: %(default)s)")


def _register_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="download datasets", description="Download the datasets quantlens uses.")
    datasets = data.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    cifar = datasets.add_parser(
        "cifar10",
        help="download the CIFAR-10 python archive (about 170 MB)",
        description="Download the CIFAR-10 python-pickle archive, check its MD5 and unpack it into "
        "DEST/cifar-10-batches-py, where quantlens finds it by default.",
    )
    cifar.add_argument("--dest", help=f"folder to unpack into (default: {default_destination()})")
    cifar.add_argument("--url", default=OFFICIAL_URL, help="archive URL, http(s) or file (default: %(default)s)")
    cifar.add_argument("--md5", default=OFFICIAL_MD5, help="expected MD5 hex digest of the archive (default: %(default)s)")
    cifar.add_argument("--force", action="store_true", help="download again even if the data is already there")
    cifar.set_defaults(handler=run_data_cifar10)


def run_activations(args: argparse.Namespace) -> int:
    session = open_session(resolve_model(args.model), trust=args.trust, layout=args.layout, scaling=args.scaling)
    if args.list_layers:
        _print_points(list_capture_points(session))
        return 0
    if not args.input:
        raise InputError("--input is required: pass cifar10:INDEX, random[:SEED] or image paths (or use --list-layers)")
    if args.values < 0:
        raise InputError(f"--values must be 0 or more, got {args.values}")
    if args.stats and (args.bins < 2 or args.bins % 2):
        raise InputError(f"--bins must be an even number >= 2, got {args.bins}")
    selection = selection_for(session, layers=args.layer, indices=args.layer_index)
    batch = parse_input(args.input, data_dir=args.data_dir, size=session.adapter.image_size)
    print(f"{session.path.name}: {session.format}; input {session.adapter.describe()}")
    if args.stats:
        layers = sorted(selection.names) if selection.names is not None else None
        batches = split_batch(batch, args.batch_size)
        result = capture_statistics(
            session, batches, layers=layers, bins=args.bins, total=math.ceil(len(batch) / args.batch_size),
            progress=True,
        )
        _print_statistics(result)
        return 0
    capture = capture_selected(session, batch, selection=selection)
    _print_notices(capture.notices)
    _print_activations(capture, list_capture_points(session), count=args.values)
    _print_predictions(capture)
    if args.save:
        _save(capture, session, Path(args.save))
    return 0


def _print_points(points: list[CapturePoint]) -> None:
    print_table(["#", "name", "layer", "op"], [[i, p.name, p.layer, p.op_type] for i, p in enumerate(points)])


def _print_notices(notices: tuple[str, ...]) -> None:
    for notice in notices:
        print(f"note: {notice}")


def _point_index(points: list[CapturePoint]) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, point in enumerate(points):
        index.setdefault(point.name, position)
        index.setdefault(point.layer, position)
    return index


def _print_activations(capture: CaptureResult, points: list[CapturePoint], *, count: int) -> None:
    positions = _point_index(points)
    quantized = any(a.tensor.is_quantized for a in capture.activations)
    headers = ["#", "name", "op", "shape", "dtype", "min", "max", "mean", "std"]
    headers += ["scale / zero_point"] if quantized else []
    headers += [f"first {count} values"] if count else []
    headers += [f"first {count} codes"] if count and quantized else []
    rows = []
    for activation in capture.activations:
        tensor = activation.tensor
        summary = summarize(tensor.values)
        row = [
            positions.get(activation.name, positions.get(activation.layer, "-")),
            activation.name, activation.op_type, "x".join(map(str, tensor.shape)) or "scalar", tensor.dtype,
            format_number(summary.min), format_number(summary.max),
            format_number(summary.mean), format_number(summary.std),
        ]
        if quantized:
            row.append(tensor.quantization.summary() if tensor.quantization else "")
        if count:
            row.append(_first_values(tensor.values, count))
        if count and quantized:
            row.append(_first_values(tensor.codes, count) if tensor.codes is not None else "")
        rows.append(row)
    print(f"{_count(len(rows), 'activation')}, statistics over all {_count(len(capture.inputs), 'input')}:")
    print_table(headers, rows)


def _first_values(array: np.ndarray, count: int) -> str:
    flat = np.asarray(array).reshape(-1)[:count]
    if flat.dtype.kind in "iub":
        return " ".join(str(int(v)) for v in flat)
    return " ".join(format_number(float(v), 4) for v in flat)


def _print_predictions(capture: CaptureResult) -> None:
    if not capture.outputs:
        return
    classes = int(np.asarray(capture.outputs[0]).size // max(len(capture.inputs), 1))
    names = CLASS_NAMES if classes == len(CLASS_NAMES) else None
    print("predictions (top-3 of the first output, softmax probability in %):")
    for sample, description in enumerate(capture.inputs.descriptions):
        top = ", ".join(
            f"{_class_name(index, names)} {100 * probability:.1f}%" for index, probability in capture.top_k(3, sample)
        )
        label = capture.inputs.labels[sample]
        label_text = f"label {_class_name(label, names)}; " if label is not None else ""
        print(f"  {description}: {label_text}top-3 {top}")


def _class_name(index: int, names: tuple[str, ...] | None) -> str:
    return names[index] if names is not None and 0 <= index < len(names) else f"class {index}"


def _save(capture: CaptureResult, session: Session, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    for activation in capture.activations:
        arrays[activation.name] = activation.tensor.values
        if activation.tensor.codes is not None:
            arrays[f"{activation.name}__codes"] = activation.tensor.codes
    arrays["__input__"] = session.adapter.prepare(capture.inputs)
    for index, output in enumerate(capture.outputs):
        arrays["__output__" if index == 0 else f"__output__{index}"] = output
    try:
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
    except OSError as exc:
        raise InputError(f"cannot write --save file {str(path)!r}: {exc.strerror or exc}") from exc
    print(f"saved {len(arrays)} arrays to {path}")


def _print_statistics(result: StatisticsResult) -> None:
    _print_notices(result.notices)
    print(f"{_count(len(result.activations), 'activation')} over {_count(result.samples, 'input')}:")
    rows = []
    for item in result.activations:
        summary = item.summary
        zeros = None if summary.zero_fraction is None else 100 * summary.zero_fraction
        saturation = item.saturation
        rows.append([
            item.name, item.op_type, "x".join(map(str, item.shape)) or "scalar", item.dtype,
            format_number(summary.min), format_number(summary.max), format_number(summary.mean),
            format_number(summary.std), format_number(zeros, 3),
            "" if saturation is None else f"{saturation.percent_at_qmin:.3g} / {saturation.percent_at_qmax:.3g}",
        ])
    print_table(["name", "op", "shape per input", "dtype", "min", "max", "mean", "std", "zeros %", "at qmin / qmax %"], rows)
    if result.accuracy is not None:
        print(f"top-1 accuracy {result.accuracy:.2f}% ({result.correct}/{result.labelled} labelled inputs)")
    if len(result.activations) == 1:
        _print_histogram(result.activations[0])


def _print_histogram(item: ActivationStatistics) -> None:
    histogram = item.histogram
    print(f"histogram of {item.name}: {histogram.bins} bins, {histogram.excluded} NaN/Inf excluded")
    percent = histogram.percent
    for index, count in enumerate(histogram.counts.tolist()):
        if count:
            low, high = histogram.edges[index], histogram.edges[index + 1]
            print(f"  [{low:.6g}, {high:.6g})  {count:10d}  {percent[index]:6.2f}%")


def run_data_cifar10(args: argparse.Namespace) -> int:
    destination = Path(args.dest).expanduser() if args.dest else default_destination()
    existing = destination / ARCHIVE_FOLDER
    if (existing / "test_batch").is_file() and not args.force:
        print(f"CIFAR-10 is already in {existing}; pass --force to download it again")
        return 0
    print(f"downloading {args.url} into {destination}")
    folder = download_cifar10(destination, url=args.url, md5=args.md5, force=args.force, progress=sys.stderr.isatty())
    print(f"CIFAR-10 is in {folder}")
    if destination.resolve() != default_destination().resolve():
        print(f"pass --data-dir {folder} or set QUANTLENS_CIFAR10_DIR={folder} so that quantlens finds it")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
