"""Markdown rendering of the result rows and of the machine they were measured on."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from quantlens_bench.measure import Row

HEADER = ("case", "quantlens", "compared with", "compared", "ratio", "target", "result", "notes")


def result_text(row: Row) -> str:
    if row.met is None:
        return "reported" if row.quantlens is not None and row.compared is not None else "skipped"
    return "met" if row.met else "**missed**"


def markdown(rows: list[Row]) -> str:
    """Return the rows as a markdown table; ratio is quantlens divided by the compared number."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        ratio = row.ratio
        cells = (
            row.case,
            str(row.quantlens) if row.quantlens is not None else "-",
            row.compared_label or "-",
            str(row.compared) if row.compared is not None else "-",
            f"{ratio:.3g}x" if ratio is not None else "-",
            row.target,
            result_text(row),
            row.notes,
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def machine_description() -> str:
    """Describe the CPU, memory and package versions in a few markdown list lines."""
    versions = []
    for package in ("quantlens", "numpy", "torch", "onnx", "onnxruntime", "plotly", "marimo"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores; memory: {_memory_text()}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- {', '.join(versions)}",
    ]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_text() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"
