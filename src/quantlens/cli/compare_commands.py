"""``quantlens compare``: rank the layers of a quantized model by their error against the float model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from quantlens.cli._common import format_number, print_table
from quantlens.cli.capture_commands import INPUT_HELP
from quantlens.cli.inspect_commands import TRUST_HELP
from quantlens.cli.run_commands import DATA_DIR_HELP
from quantlens.compare import ComparisonReport, compare_models, load_mapping
from quantlens.compare.activations import DEFAULT_BATCH_SIZE
from quantlens.compare.local import LOCAL_UNAVAILABLE
from quantlens.errors import InputError
from quantlens.records import Layer
from quantlens.zoo.bundled import resolve_model

logger = logging.getLogger(__name__)

DEFAULT_TOP = 20
COMPARE_DESCRIPTION = """\
Match the layers of a float model with those of its quantized version (any pair of formats) and
rank them by quantization error, worst first. SQNR (signal-to-quantization-noise ratio) is
20*log10(||float|| / ||float - dequantized||) in dB: higher is better, +inf means identical.

Weight SQNR compares each matched layer's float weight (with any BatchNorm the quantizer folded
away folded in) against the dequantized weight. RMSE/scale is the weight's root mean squared error
in quantization steps (about 0.289 for ideal rounding). With --input, both models run on the
same inputs: activation SQNR compares each layer's output pooled over all inputs (it includes
upstream error), local SQNR runs the quantized layer alone on the float model's input (quantized
ONNX models only), and the output agreement gives top-1 agreement and the mean KL divergence
(nats) of the softmax outputs. Without --input only weights are compared.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "compare",
        help="rank the layers of a quantized model by error against its float model",
        description=COMPARE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("float_model", metavar="FLOAT", help="float model file, or a bundled model name")
    parser.add_argument("quant_model", metavar="QUANT", help="quantized model file, or a bundled model name")
    parser.add_argument("--input", nargs="+", metavar="SPEC", help=INPUT_HELP + " (default: none, weights only)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument(
        "--mapping", metavar="FILE",
        help="JSON object of float layer name to quantized layer name; overrides the matcher for those layers",
    )
    parser.add_argument("--csv", metavar="OUT", help="write the ranked layer table as CSV")
    parser.add_argument("--json", metavar="OUT", help="write the whole report as JSON (infinite SQNR as \"inf\")")
    parser.add_argument("--html", metavar="OUT", help="write a self-contained HTML report that opens offline")
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, metavar="N",
        help="print the N worst layers, 0 for all (default: %(default)s); files always contain every layer",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help="inputs run through both models at once (default: %(default)s)",
    )
    parser.add_argument("--no-local", action="store_true", help="skip the local SQNR (running each quantized layer alone)")
    parser.add_argument("--trust", action="store_true", help=TRUST_HELP)
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise InputError(f"--top must be 0 (all) or more, got {args.top}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    for path, kind in ((args.csv, "CSV"), (args.json, "JSON"), (args.html, "HTML")):
        # Fail before the comparison runs, not after minutes of work.
        if path and not Path(path).expanduser().parent.is_dir():
            raise InputError(f"cannot write {kind} file {path!r}: its folder does not exist; create it first")
    mapping = load_mapping(args.mapping) if args.mapping else None
    float_path, quant_path = resolve_model(args.float_model), resolve_model(args.quant_model)
    if Path(float_path).resolve() == Path(quant_path).resolve():
        logger.warning("both models are %s: every tensor will compare equal (SQNR inf)", Path(float_path).name)
    report = compare_models(
        float_path,
        quant_path,
        inputs=args.input,
        data_dir=args.data_dir,
        mapping=mapping,
        trust=args.trust,
        batch_size=args.batch_size,
        local=not args.no_local,
        progress=True,
    )
    _print_report(report, top=args.top)
    for path, text, kind in ((args.csv, report.to_csv, "CSV"), (args.json, report.to_json, "JSON"), (args.html, report.to_html, "HTML")):
        if path:
            _write(Path(path), text(), kind)
    return 0


def _print_report(report: ComparisonReport, *, top: int) -> None:
    matching = report.matching
    print(
        f"{report.float_model.path.name} ({report.float_model.format}) vs {report.quant_model.path.name} "
        f"({report.quant_model.format}): {len(matching.matches)} layers matched"
    )
    rows = report.to_rows()
    shown = rows if top == 0 else rows[:top]
    print(f"layers ranked worst first by {report.ranked_by} SQNR (dB, higher is better); {len(shown)} of {len(rows)}:")
    headers = ["#", "float layer", "quantized layer", "match", "weight SQNR", "act SQNR", "local SQNR", "RMSE/scale"]
    print_table(
        headers,
        [
            [
                row.rank, row.float_layer, row.quant_layer, row.method, format_number(row.weight_sqnr_db, 4),
                format_number(row.activation_sqnr_db, 4), format_number(row.local_sqnr_db, 4),
                format_number(row.weight_rmse_over_scale, 3),
            ]
            for row in shown
        ],
    )
    _print_unmatched("float", matching.unmatched_float)
    _print_unmatched("quantized", matching.unmatched_quant)
    _print_outputs(report)
    for note in report.notes:
        print(f"note: {note}")


def _print_unmatched(side: str, layers: tuple[Layer, ...]) -> None:
    names = ", ".join(f"{layer.name or '(unnamed)'} ({layer.op_type})" for layer in layers) or "none"
    print(f"unmatched {side} layers: {names}")


def _print_outputs(report: ComparisonReport) -> None:
    if report.activations is None:
        print("weights only: pass --input to compare activations and outputs")
        return
    local_missing = report.activations is not None and any(
        result.local_note == LOCAL_UNAVAILABLE for result in report.activations.results
    )
    if local_missing:
        print(f"note: no local SQNR: {LOCAL_UNAVAILABLE}")
    outputs = report.outputs
    if outputs is None:
        return
    print(
        f"outputs over {outputs.samples} inputs ({report.inputs}): top-1 agreement {100 * outputs.top1_agreement:.2f}%, "
        f"mean KL divergence {outputs.mean_kl_divergence:.3g} nats, output SQNR {format_number(outputs.logits.sqnr_db, 4)} dB"
    )
    if outputs.labelled:
        print(
            f"top-1 accuracy on {outputs.labelled} labelled inputs: float {outputs.float_accuracy:.2f}%, "
            f"quantized {outputs.quant_accuracy:.2f}%"
        )


def _write(path: Path, text: str, kind: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {kind} file {str(path)!r}: {exc.strerror or exc}") from exc
    print(f"wrote {kind} to {path}")
