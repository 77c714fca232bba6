"""Worker task names and the functions that run them, imported only when a task runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# Task name -> (module in quantlens_bench, function). Each function takes the JSON options as
# keyword arguments and returns a JSON-serializable dict.
TASK_FUNCTIONS = {
    "prepare-artifacts": ("artifacts", "prepare_files"),
    "payload": ("payload", "measure_payload"),
    "open-quantlens": ("cold_open", "open_with_quantlens"),
    "open-baseline": ("cold_open", "open_with_framework"),
    "open-floor": ("cold_open", "open_floor"),
    "capture-eager": ("capture", "time_eager"),
    "capture-onnx": ("capture", "time_onnxruntime"),
    "capture-cold": ("capture", "capture_cold"),
    "memory": ("memory", "run_statistics"),
    "large-stats": ("large_stats", "time_statistics"),
}


def resolve(name: str) -> Callable[..., dict[str, object]]:
    """Import and return the function of task ``name``; raise KeyError for an unknown name."""
    if name not in TASK_FUNCTIONS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASK_FUNCTIONS))}")
    module_name, function_name = TASK_FUNCTIONS[name]
    module = importlib.import_module(f"quantlens_bench.{module_name}")
    return getattr(module, function_name)
