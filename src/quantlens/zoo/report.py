"""Evaluate every bundled model on CIFAR-10 and print the markdown table the docs record.

With ``--metrics``, also draw the training curve (test accuracy per epoch, raw and EMA weights)
from the ``metrics.jsonl`` that ``quantlens zoo train`` writes, as a standalone SVG file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quantlens.evaluate import EvalResult, evaluate
from quantlens.runtime import open_session
from quantlens.zoo.bundled import bundled_models

SVG_WIDTH, SVG_HEIGHT, MARGIN = 640, 360, 48


def accuracy_table(*, data_dir: str | None, limit: int | None = None) -> str:
    """Evaluate each bundled model and return a markdown table of top-1 accuracy and file size.

    The difference column is in percentage points against ``resnet8.pt``, the float reference.
    """
    results: list[tuple[str, int, EvalResult]] = []
    for model in bundled_models():
        session = open_session(model.path)
        results.append((model.name, model.size_bytes, evaluate(session, data_dir=data_dir, limit=limit)))
    reference = next((r.accuracy for name, _, r in results if name == "resnet8.pt"), None)
    lines = [
        "| file | top-1 % | vs float (points) | correct | size (KB) |",
        "|---|---|---|---|---|",
    ]
    for name, size, result in results:
        delta = "" if reference is None or name == "resnet8.pt" else f"{result.accuracy - reference:+.2f}"
        lines.append(
            f"| `{name}` | {result.accuracy:.2f} | {delta} | {result.correct}/{result.count} | {size / 1024:.0f} |"
        )
    return "\n".join(lines)


def accuracy_curve_svg(metrics_path: str | Path) -> str:
    """Return an SVG line chart of test accuracy per epoch (raw weights and EMA weights)."""
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in records]
    series = {
        "raw weights": ([r["test_accuracy"] for r in records], "#9aa5b1"),
        "EMA weights": ([r["ema_test_accuracy"] for r in records], "#1f77b4"),
    }
    low, high = 40.0, 90.0

    def point(epoch: float, accuracy: float) -> str:
        x = MARGIN + (epoch - 1) / max(len(epochs) - 1, 1) * (SVG_WIDTH - 2 * MARGIN)
        clipped = min(max(accuracy, low), high)
        y = SVG_HEIGHT - MARGIN - (clipped - low) / (high - low) * (SVG_HEIGHT - 2 * MARGIN)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{SVG_WIDTH}" height="{SVG_HEIGHT}" fill="white"/>',
    ]
    for accuracy in range(int(low), int(high) + 1, 10):
        y = point(1, accuracy).split(",")[1]
        parts.append(f'<line x1="{MARGIN}" x2="{SVG_WIDTH - MARGIN}" y1="{y}" y2="{y}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{MARGIN - 8}" y="{y}" text-anchor="end" dy="4">{accuracy}%</text>')
    for epoch in range(0, len(epochs) + 1, 20):
        x = point(max(epoch, 1), low).split(",")[0]
        parts.append(f'<text x="{x}" y="{SVG_HEIGHT - MARGIN + 18}" text-anchor="middle">{epoch}</text>')
    parts.append(f'<text x="{SVG_WIDTH / 2}" y="{SVG_HEIGHT - 8}" text-anchor="middle">epoch</text>')
    for row, (label, (values, colour)) in enumerate(series.items()):
        path = " ".join(point(e, a) for e, a in zip(epochs, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.append(
            f'<text x="{SVG_WIDTH - MARGIN}" y="{MARGIN + 16 * row}" text-anchor="end" fill="{colour}">'
            f"{label}: {values[-1]:.2f}% at epoch {epochs[-1]}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the report options to ``parser`` (a new one when None)."""
    parser = parser or argparse.ArgumentParser(prog="quantlens zoo report", description=__doc__)
    parser.add_argument("--data-dir", help="CIFAR-10 folder with the test split")
    parser.add_argument("--limit", type=int, help="evaluate only the first N test images (default: all)")
    parser.add_argument("--metrics", help="metrics.jsonl of a training run, to draw the curve")
    parser.add_argument("--curve", default="accuracy_curve.svg", help="SVG file for the curve (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the table (and write the curve) from parsed command-line options."""
    if args.metrics:
        Path(args.curve).write_text(accuracy_curve_svg(args.metrics))
        # stderr, so that the table on stdout can be redirected into docs/models.md alone.
        print(f"training curve written to {args.curve}", file=sys.stderr)
    print(accuracy_table(data_dir=args.data_dir, limit=args.limit))
    return 0
