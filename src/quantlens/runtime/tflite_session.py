"""LiteRT (TFLite) interpreter session with the input adapter read from the model.

By default the interpreter uses the reference kernels (``OpResolverType.BUILTIN_REF``) and keeps
every intermediate tensor (``experimental_preserve_all_tensors``), so activation capture reads the
values the reference implementation computes. ``xnnpack=True`` uses the default resolver, which
applies the XNNPACK delegate: faster, and its results can differ from the reference kernels in
the last bits of float outputs and by one code in quantized ones. On the test models of
``tests/fixtures/tflite_models.py`` (x86-64, ai-edge-litert 2.3.0) the largest differences were
4.8e-7 on float32 conv outputs near 1 and one code on int8 outputs.

With ``preserve_all_tensors`` the XNNPACK delegate still applies, one delegate kernel per op, so
intermediate tensors hold the values XNNPACK computed. Without it, ``get_tensor`` on an
intermediate tensor of a delegated op raises ValueError.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.adapter import InputAdapter, adapter_from_spec
from quantlens.errors import CaptureError, InputError, MissingDependencyError, UnsupportedModelError
from quantlens.readers.tflite_reader import INSTALL_LINE, TfliteFile, read_input_spec
from quantlens.runtime.session import Session

logger = logging.getLogger(__name__)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


class TfliteSession(Session):
    """A TFLite model run by the LiteRT interpreter on the CPU.

    ``tflite`` is the parsed file, whose operators and tensor indices are the interpreter's own,
    so capture can read each operator's outputs with ``interpreter.get_tensor``.
    """

    format = "tflite"

    def __init__(
        self,
        path: Path,
        *,
        xnnpack: bool = False,
        preserve_all_tensors: bool = True,
        num_threads: int | None = None,
    ) -> None:
        self.path = path
        self.xnnpack = xnnpack
        self.preserve_all_tensors = preserve_all_tensors
        self.tflite = TfliteFile(path)
        self.interpreter = self._load_interpreter(
            xnnpack=xnnpack, preserve_all_tensors=preserve_all_tensors, num_threads=num_threads
        )
        self.adapter = self._adapter()

    def _load_interpreter(self, *, xnnpack: bool, preserve_all_tensors: bool, num_threads: int | None) -> Any:
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError as error:
            raise MissingDependencyError(
                f"running TFLite models needs the ai-edge-litert package (LiteRT); install it with: {INSTALL_LINE}"
            ) from error
        # AUTO is the default resolver, which applies the XNNPACK delegate to the ops it supports.
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_REF
        try:
            with warnings.catch_warnings():
                # LiteRT warns that preserving tensors with XNNPACK costs memory; capture needs them.
                warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
                interpreter = Interpreter(
                    model_path=str(self.path),
                    num_threads=num_threads,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve_all_tensors,
                )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise UnsupportedModelError(
                f"the LiteRT interpreter cannot load {str(self.path)!r}: {_first_line(error)}. "
                "The weights can still be inspected with `quantlens layers`/`stats`."
            ) from error
        return interpreter

    def _adapter(self) -> InputAdapter:
        details = self.interpreter.get_input_details()
        if len(details) != 1:
            raise UnsupportedModelError(
                f"{self.path.name} has {len(details)} inputs ({', '.join(d['name'] for d in details)}); "
                "quantlens feeds models with exactly one input"
            )
        spec = read_input_spec(self.tflite)
        if spec is None:
            raise UnsupportedModelError(f"{self.path.name} records no subgraph input")
        return adapter_from_spec(spec)

    @property
    def input_index(self) -> int:
        return int(self.interpreter.get_input_details()[0]["index"])

    @property
    def output_indices(self) -> list[int]:
        return [int(detail["index"]) for detail in self.interpreter.get_output_details()]

    def runs_per_sample(self, inputs: np.ndarray) -> bool:
        """Return True when ``inputs`` is fed one sample per invoke (the model's batch is fixed at 1)."""
        detail = self.interpreter.get_input_details()[0]
        shape = tuple(int(d) for d in detail["shape"])
        signature = tuple(int(d) for d in detail["shape_signature"])
        if inputs.shape == shape:
            return False
        same_sample = inputs.ndim == len(shape) and inputs.shape[1:] == shape[1:]
        if same_sample and signature and signature[0] == -1:
            return False
        if same_sample and shape[0] == 1:
            return True
        raise InputError(
            f"{self.path.name} takes input of shape {shape} (dynamic: {signature}), "
            f"but the input has shape {inputs.shape}"
        )

    def invocations(self, inputs: np.ndarray) -> Iterator[int]:
        """Feed ``inputs`` and invoke, once for the batch or once per sample, yielding the batch offset.

        After each yield the interpreter contains the tensors of that invocation, which the caller
        reads with ``interpreter.get_tensor`` before the next one overwrites them.
        """
        detail = self.interpreter.get_input_details()[0]
        if inputs.dtype != detail["dtype"]:
            raise InputError(
                f"{self.path.name} takes {np.dtype(detail['dtype']).name} input, but the input is {inputs.dtype}"
            )
        if self.runs_per_sample(inputs):
            chunks = [inputs[i : i + 1] for i in range(inputs.shape[0])]
        else:
            chunks = [inputs]
            if tuple(detail["shape"]) != inputs.shape:
                self.interpreter.resize_tensor_input(self.input_index, list(inputs.shape), strict=True)
                self.interpreter.allocate_tensors()
        offset = 0
        for chunk in chunks:
            self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(chunk))
            try:
                self.interpreter.invoke()
            except (RuntimeError, ValueError) as error:
                raise CaptureError(
                    f"the LiteRT interpreter failed to run {self.path.name} on input of shape {chunk.shape} "
                    f"and dtype {chunk.dtype}: {_first_line(error)}"
                ) from error
            yield offset
            offset += chunk.shape[0]

    def output_values(self) -> list[np.ndarray]:
        """Return the model outputs of the last invocation, quantized ones dequantized to float32.

        An int8 output with scale 0.1 and zero_point -2 and codes ``[-2, 8]`` gives ``[0.0, 1.0]``,
        so the first output can be read as logits whatever the output dtype.
        """
        values = []
        for index in self.output_indices:
            array = self.interpreter.get_tensor(index)
            quantization = self.tflite.quantization(index)
            values.append(array if quantization is None else quantization.dequantize(array))
        return values

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Run the model and return every output, quantized outputs dequantized (see ``output_values``)."""
        parts: list[list[np.ndarray]] = [[] for _ in self.output_indices]
        for _ in self.invocations(inputs):
            for part, value in zip(parts, self.output_values()):
                part.append(value)
        return [join_samples(part) for part in parts]


def join_samples(arrays: list[np.ndarray]) -> np.ndarray:
    """Join the results of per-sample invocations along the batch axis (axis 0).

    One result is returned as it is. Results of shape ``(1, ...)`` are concatenated, and results
    without a batch axis are stacked on a new leading axis.
    """
    if len(arrays) == 1:
        return arrays[0]
    if all(array.ndim >= 1 and array.shape[0] == 1 for array in arrays):
        return np.concatenate(arrays, axis=0)
    return np.stack(arrays, axis=0)
