"""Timing helpers, worker processes and the result row every case returns."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "worker.py"
# How many characters of a failed worker's stderr are quoted in the error.
STDERR_TAIL = 2000


class BenchError(RuntimeError):
    """A measurement could not be taken (a worker failed, a file is missing)."""


@dataclass(frozen=True)
class Quantity:
    """A measured number with its unit: ``"s"``, ``"bytes"`` or ``"x"`` (a plain ratio)."""

    value: float
    unit: str

    def __str__(self) -> str:
        return format_quantity(self.value, self.unit)


def format_quantity(value: float, unit: str) -> str:
    """Format seconds as ms or s, bytes as B, KB, MB or GB (powers of 1024)."""
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "bytes":
        for name, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}".strip()


def format_count(count: int) -> str:
    """Write a power of ten as ``1e7`` and any other count with thousands separators."""
    exponent = len(str(count)) - 1
    return f"1e{exponent}" if count == 10**exponent else f"{count:,}"


@dataclass(frozen=True)
class Row:
    """One line of the result table.

    ``met`` is None for rows that are reported without a target, or when a side was skipped.
    """

    case: str
    quantlens: Quantity | None
    compared: Quantity | None
    target: str
    met: bool | None
    notes: str = ""
    compared_label: str = ""

    @property
    def ratio(self) -> float | None:
        if self.quantlens is None or self.compared is None or self.compared.value == 0:
            return None
        return self.quantlens.value / self.compared.value


@dataclass(frozen=True)
class WorkerResult:
    """The JSON object a worker process printed, and the process's wall time measured from outside."""

    wall: float
    data: dict[str, object] = field(default_factory=dict)

    def number(self, key: str) -> float:
        value = self.data[key]
        if not isinstance(value, (int, float)):
            raise BenchError(f"worker result {key!r} is {value!r}, not a number")
        return float(value)


def run_worker(
    task: str, options: dict[str, object], *, timeout: float = 900, env: dict[str, str] | None = None
) -> WorkerResult:
    """Run ``worker.py TASK OPTIONS`` in a fresh interpreter and parse its last stdout line as JSON.

    ``env`` adds or replaces environment variables of the worker process.
    """
    command = [sys.executable, str(WORKER), task, json.dumps(options)]
    environment = {**os.environ, **env} if env else None
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=environment
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"worker {task} timed out after {timeout:.0f} s with options {options}") from error
    wall = time.perf_counter() - start
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise BenchError(
            f"worker {task} failed with exit status {completed.returncode} (options {options}):\n"
            f"{completed.stderr[-STDERR_TAIL:]}"
        )
    return WorkerResult(wall=wall, data=json.loads(lines[-1]))


def repeat_worker(task: str, options: dict[str, object], repeats: int) -> list[WorkerResult]:
    """Run the same worker ``repeats`` times, one after another."""
    return [run_worker(task, options) for _ in range(repeats)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Return the fastest of ``repeats`` calls of ``function``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best
