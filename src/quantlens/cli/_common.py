"""Helpers shared by the subcommands: table printing and number formatting."""

from __future__ import annotations

from collections.abc import Sequence


def format_number(value: float | int | None, digits: int = 6) -> str:
    """Format a statistic for a table: ``-`` for None, integers as-is, floats with 6 digits."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
