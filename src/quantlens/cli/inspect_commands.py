"""``quantlens layers``, ``quantlens stats`` and ``quantlens models``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from quantlens import inspect as inspect_model
from quantlens.cli._common import format_number, print_table
from quantlens.readers import open_model
from quantlens.zoo.bundled import bundled_models, resolve_model

# Table label for the layer called "", the root module of a PyTorch model.
ROOT_LABEL = "(root)"
MODEL_HELP = "model file, or the name of a bundled model (see `quantlens models`)"
TRUST_HELP = (
    "allow full unpickling of PyTorch files that need it; unpickling can run arbitrary code, "
    "so use this only for files from a source you trust (default: refuse)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module to ``subparsers``."""
    layers = subparsers.add_parser(
        "layers", help="list layers and their tensors", description="List every layer's tensors in graph order."
    )
    layers.add_argument("model", help=MODEL_HELP)
    layers.add_argument("--trust", action="store_true", help=TRUST_HELP)
    layers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    layers.set_defaults(handler=run_layers)

    stats = subparsers.add_parser(
        "stats",
        help="statistics and histogram of tensors",
        description="Without --layer: summary statistics of every tensor (dequantized values; the "
        "zeros % column is the share of elements equal to 0). With --layer: one tensor's statistics, "
        "quantization parameters and histogram, each non-empty bin with its count and its percent "
        "of the elements.",
    )
    stats.add_argument("model", help=MODEL_HELP)
    stats.add_argument("--layer", help="layer name, verbatim as `quantlens layers` prints it")
    stats.add_argument(
        "--tensor", default="weight", help="tensor role (weight, bias) or tensor name (default: %(default)s)"
    )
    stats.add_argument(
        "--int", action="store_true", dest="integer", help="use the integer codes of a quantized tensor"
    )
    stats.add_argument(
        "--bins", type=int, default=50,
        help="histogram bins for float values (default: %(default)s); with --int, 8- and 16-bit codes get "
        "one row per non-empty code instead"
    )
    stats.add_argument("--trust", action="store_true", help=TRUST_HELP)
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(handler=run_stats)

    models = subparsers.add_parser(
        "models", help="list the bundled models", description="List the models shipped with quantlens."
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=run_models)


def run_layers(args: argparse.Namespace) -> int:
    model = open_model(resolve_model(args.model), trust=args.trust)
    rows = []
    for layer, tensor in model.tensors():
        quant = tensor.quantization
        rows.append(
            {
                "layer": layer.name,
                "op_type": layer.op_type,
                "role": str(tensor.role),
                "tensor": tensor.name,
                "shape": list(tensor.shape),
                "dtype": tensor.dtype,
                "quantized": quant.granularity if quant else "no",
                "quantization": quant.summary() if quant else "",
            }
        )
    if args.json:
        print(json.dumps({"model": str(model.path), "format": model.format, "tensors": rows}, indent=2))
        return 0
    print(f"{model.path.name}: {model.format}, {len(model.layers)} layers, {model.parameter_count} values")
    headers = ["layer", "op", "role", "shape", "dtype", "quantized", "scale / zero_point"]
    print_table(
        headers,
        [
            [r["layer"] or ROOT_LABEL, r["op_type"], r["role"], "x".join(map(str, r["shape"])) or "scalar",
             r["dtype"], r["quantized"], r["quantization"]]
            for r in rows
        ],
    )
    return 0


def run_stats(args: argparse.Namespace) -> int:
    model = open_model(resolve_model(args.model), trust=args.trust)
    if args.layer is None:
        rows = inspect_model.overview(model)
        if args.json:
            print(json.dumps([row.to_dict() for row in rows], indent=2))
            return 0
        headers = ["layer", "role", "shape", "min", "max", "mean", "std", "zeros %"]
        print_table(
            headers,
            [
                [r.layer or ROOT_LABEL, r.role, "x".join(map(str, r.shape)) or "scalar",
                 format_number(r.summary.min), format_number(r.summary.max),
                 format_number(r.summary.mean), format_number(r.summary.std),
                 format_number(None if r.summary.zero_fraction is None else 100 * r.summary.zero_fraction, 3)]
                for r in rows
            ],
        )
        return 0
    report = inspect_model.report_tensor(
        model, args.layer, args.tensor, integer=args.integer, bins=args.bins
    )
    for warning in report.warnings:
        print(f"quantlens: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    _print_report(report)
    return 0


def _print_report(report: inspect_model.TensorReport) -> None:
    tensor = report.tensor
    view = "integer codes" if report.integer else "values"
    print(f"{report.layer.name} / {tensor.name} ({tensor.role}, {report.layer.op_type}), {view}")
    dequantized = ", dequantized below" if tensor.is_quantized and not report.integer else ""
    print(f"shape {tuple(tensor.shape)}, dtype {tensor.dtype}{dequantized}, {report.summary.count} elements")
    summary = report.summary
    for label, value in (("min", summary.min), ("max", summary.max), ("mean", summary.mean), ("std", summary.std)):
        print(f"  {label:5} {format_number(value)}")
    if summary.nan_count or summary.inf_count:
        print(f"  NaN {summary.nan_count}, Inf {summary.inf_count}")
    if tensor.quantization is not None:
        print(f"quantization: {tensor.quantization.storage_dtype} {tensor.quantization.granularity}, "
              f"{tensor.quantization.summary()}, qmin {tensor.quantization.qmin}, qmax {tensor.quantization.qmax}")
    if report.saturation is not None:
        print(f"saturation: {report.saturation.percent_at_qmin:.3g}% at qmin, "
              f"{report.saturation.percent_at_qmax:.3g}% at qmax")
    histogram = report.histogram
    nonzero = [(i, c) for i, c in enumerate(histogram.counts.tolist()) if c]
    print(f"histogram: {histogram.bins} bins, {len(nonzero)} non-empty")
    percent = histogram.percent
    per_code = report.integer and bool(np.all(np.diff(histogram.edges) == 1.0))
    for index, count in nonzero:
        low, high = histogram.edges[index], histogram.edges[index + 1]
        label = f"code {low + 0.5:.0f}" if per_code else f"[{low:.6g}, {high:.6g})"
        print(f"  {label:>24}  {count:8d}  {percent[index]:6.2f}%")


def run_models(args: argparse.Namespace) -> int:
    models = bundled_models()
    if args.json:
        print(json.dumps(
            [{"name": m.name, "path": str(m.path), "bytes": m.size_bytes, "description": m.description}
             for m in models], indent=2))
        return 0
    if not models:
        print("no bundled models are installed")
        return 0
    print_table(
        ["name", "size (KB)", "description"],
        [[m.name, f"{m.size_bytes / 1024:.0f}", m.description] for m in models],
    )
    return 0
