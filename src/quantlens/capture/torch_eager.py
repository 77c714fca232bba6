"""Activation capture for eager ``nn.Module`` models, with forward hooks.

Every named submodule (the root excluded) gets a forward hook that keeps its output. Outputs
are flattened into tensors with stable suffixes: a tensor keeps the module name (``stack1.conv1``),
a tuple or list element gets ``:INDEX`` (``block:1``), a dict entry gets ``.KEY`` (``heads.cls``),
and nesting combines them (``block:0.cls``). A module called more than once in one forward pass
gets ``#CALL`` from its second call on (``relu#1``). Only module outputs are captured: functional
calls inside ``forward`` (``torch.add``, ``F.relu``) produce no activation of their own.

Outputs are kept without a copy where possible. An in-place op later in the pass
(``ReLU(inplace=True)`` after a BatchNorm) would change a kept tensor, and its version counter
shows that. The pass then runs again with copies of those modules' outputs, and the backend
remembers them, so later runs copy only those from the start.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from quantlens.capture.records import Activation, CapturedRun, CapturePoint
from quantlens.capture.selection import Selection
from quantlens.capture.torch_values import activation_record, flatten_outputs
from quantlens.errors import CaptureError

logger = logging.getLogger(__name__)


class EagerCapture:
    """Capture backend for a TorchSession whose module is an eager ``nn.Module``."""

    suffixed_names = True

    def __init__(self, session: Any, *, device: str | None = None) -> None:
        import torch

        self.session = session
        self.module: torch.nn.Module = session.module
        self.device = torch.device(device) if device is not None else session.device
        self.points = [
            CapturePoint(name, name, type(module).__name__) for name, module in self.module.named_modules() if name
        ]
        # Modules whose outputs a later in-place op changed in an earlier run.
        self._copied: set[str] = set()

    def run(self, inputs: np.ndarray, *, selection: Selection, reference_outputs: bool = True) -> CapturedRun:
        """Run the module once with hooks on the selected submodules and return what they output.

        The outputs are those of this run, which hooks only observe, so ``reference_outputs`` is
        not needed.
        """
        self.module.eval()
        while True:
            keeper = _Keeper(self._copied)
            records, output = self._forward(inputs, selection, keeper)
            changed = keeper.changed()
            if not changed:
                break
            # Each pass adds at least one module, so this ends.
            logger.debug("outputs of %s are changed in place later; running again with copies", sorted(changed))
            self._copied |= changed
        selected = tuple(record for record in records if selection.keeps(record.name, record.layer))
        selection.check_found(selected, model=self.session.path.name)
        outputs = tuple(_output_array(value) for _, value in flatten_outputs(output, ""))
        return CapturedRun(activations=selected, outputs=outputs)

    def _forward(self, inputs: np.ndarray, selection: Selection, keeper: _Keeper) -> tuple[list[Activation], Any]:
        import torch

        records: list[Activation] = []
        calls: dict[str, int] = {}
        handles = []
        moved = self.device != self.session.device
        try:
            if moved:
                self.module.to(self.device)
            for name, submodule in self._hooked_modules(selection):
                hook = _make_hook(name, type(submodule).__name__, records, calls, keeper)
                handles.append(submodule.register_forward_hook(hook))
            tensor = torch.from_numpy(np.ascontiguousarray(inputs)).to(self.device)
            with torch.no_grad():
                output = self.module(tensor)
        except Exception as exc:  # any error raised inside the user's forward()
            raise _forward_error(self.session, inputs, exc) from exc
        finally:
            for handle in handles:
                handle.remove()
            if moved:
                self.module.to(self.session.device)
        return records, output

    def _hooked_modules(self, selection: Selection) -> Iterator[tuple[str, Any]]:
        for name, submodule in self.module.named_modules():
            if name and selection.may_produce(name):
                yield name, submodule


class _Copies:
    """CPU copies of module outputs in one forward pass, one per tensor object and version.

    A container module (``nn.Sequential``, a residual block) often returns its last child's
    output object unchanged, so its hook gets a tensor that was copied moments before. The copy
    is reused when the object is the same and its version counter shows no in-place change since.
    Entries hold weak references, so a freed tensor whose id is reused never matches.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], int, Any]] = {}

    def copy(self, value: Any) -> Any:
        try:
            version = value._version
        except RuntimeError:  # inference-mode tensors have no version counter
            return value.detach().to("cpu").clone()
        entry = self._entries.get(id(value))
        if entry is not None and entry[0]() is value and entry[1] == version:
            return entry[2]
        copied = value.detach().to("cpu").clone()
        self._entries[id(value)] = (weakref.ref(value), version, copied)
        return copied


class _Keeper:
    """Module outputs of one forward pass: CPU tensors kept as they are, or copied when needed.

    Outputs of the modules in ``copied`` are copied at once. Every other CPU tensor is kept as it
    is, with its version counter, so that ``changed`` can name the modules whose kept outputs an
    in-place op modified afterwards.
    """

    def __init__(self, copied: set[str]) -> None:
        self.copied = copied
        self.copies = _Copies()
        self.watched: list[tuple[str, Any, int]] = []

    def keep(self, name: str, value: Any) -> Any:
        if value.device.type != "cpu":
            return value.detach().to("cpu")  # the transfer is a copy
        if name in self.copied:
            return self.copies.copy(value)
        try:
            version = value._version
        except RuntimeError:  # inference-mode tensors have no version counter
            return value.detach().clone()
        self.watched.append((name, value, version))
        return value.detach()

    def changed(self) -> set[str]:
        return {name for name, value, version in self.watched if value._version != version}


def _make_hook(name: str, op_type: str, records: list[Activation], calls: dict[str, int], keeper: _Keeper) -> Any:
    def hook(module: Any, args: Any, output: Any) -> None:
        call = calls.get(name, 0)
        calls[name] = call + 1
        base = name if call == 0 else f"{name}#{call}"
        for index, (suffix, value) in enumerate(flatten_outputs(output, base)):
            records.append(Activation(name, op_type, index, activation_record(suffix, keeper.keep(name, value))))

    return hook


def _output_array(value: Any) -> np.ndarray:
    value = value.detach().cpu()
    return (value.dequantize() if value.is_quantized else value).numpy()


def _forward_error(session: Any, inputs: np.ndarray, exc: Exception) -> CaptureError:
    first_line = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return CaptureError(
        f"{session.path.name} failed on input of shape {tuple(inputs.shape)} "
        f"({session.adapter.describe()}): {type(exc).__name__}: {first_line}. "
        "Set the input with --layout/--scaling if the layout is wrong."
    )
