"""The overview table of every tensor of a model, and its CSV export."""

from __future__ import annotations

import csv
import functools
import io

from quantlens import inspect
from quantlens.records import Model

COLUMNS = (
    "layer", "op_type", "tensor", "role", "shape", "dtype", "elements",
    "min", "max", "mean", "std", "zeros_percent", "quantization",
)


@functools.lru_cache(maxsize=8)
def overview_rows(model: Model) -> tuple[dict[str, object], ...]:
    """Return one row per tensor in graph order, with statistics of its dequantized values.

    Numbers stay numbers (None when a tensor has no finite value), so the table sorts them
    numerically. Cached per model record.
    """
    rows = []
    for row in inspect.overview(model):
        summary = row.summary
        zero_fraction = summary.zero_fraction
        rows.append(
            {
                "layer": row.layer,
                "op_type": row.op_type,
                "tensor": row.tensor,
                "role": row.role,
                "shape": "x".join(map(str, row.shape)) or "scalar",
                "dtype": row.dtype,
                "elements": summary.count,
                "min": summary.min,
                "max": summary.max,
                "mean": summary.mean,
                "std": summary.std,
                "zeros_percent": None if zero_fraction is None else 100.0 * zero_fraction,
                "quantization": row.quantization,
            }
        )
    return tuple(rows)


def overview_csv(rows: tuple[dict[str, object], ...] | list[dict[str, object]]) -> str:
    """Return the rows as CSV text with a header line; None becomes an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in COLUMNS})
    return buffer.getvalue()
