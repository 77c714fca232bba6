"""The format-neutral model every reader returns: Model -> Layer -> Tensor (+ Quantization).

Readers translate their native fields into these records exactly once. Values are materialized
lazily: a Tensor holds a loader and converts on first access, so opening a model is cheap.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np

from quantlens.errors import LayerNotFoundError, QuantizationError

# Integer ranges of the storage types quantized tensors use.
INTEGER_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "int4": (-8, 7),
        "uint4": (0, 15),
        "int8": (-128, 127),
        "uint8": (0, 255),
        "int16": (-32768, 32767),
        "uint16": (0, 65535),
        "int32": (-(2**31), 2**31 - 1),
    }
)


class Role(str, enum.Enum):
    """The part a tensor plays in its layer."""

    WEIGHT = "weight"
    BIAS = "bias"
    PARAMETER = "parameter"  # any other constant, e.g. BatchNorm running_mean or a Mul constant
    ACTIVATION = "activation"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, repr=False, eq=False)
class Quantization:
    """Affine quantization parameters: ``r = scale * (q - zero_point)``.

    Per-tensor parameters are 0-d arrays and ``axis`` is None. Per-channel (per-axis) parameters
    are 1-d arrays of length ``shape[axis]``: a conv weight of shape ``(64, 32, 3, 3)`` quantized
    per output channel has ``axis=0`` and 64 scales and zero points.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    qmin: int
    qmax: int
    storage_dtype: str

    def __post_init__(self) -> None:
        scale = np.asarray(self.scale, dtype=np.float32)
        zero_point = np.asarray(self.zero_point, dtype=np.int64)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)
        if self.axis is None and scale.size != 1:
            raise QuantizationError(
                f"per-tensor quantization needs one scale, got {scale.size}; pass the channel axis"
            )
        if self.axis is None:
            object.__setattr__(self, "scale", scale.reshape(()))
            object.__setattr__(self, "zero_point", zero_point.reshape(()))
        elif scale.ndim != 1 or zero_point.shape not in (scale.shape, ()):
            raise QuantizationError(
                f"per-channel scale and zero_point must be 1-d of one length, got shapes "
                f"{scale.shape} and {zero_point.shape}"
            )
        if self.qmin > self.qmax:
            raise QuantizationError(f"qmin {self.qmin} is greater than qmax {self.qmax}")

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per slice along ``axis``."""
        return self.axis is not None

    @property
    def granularity(self) -> str:
        """``"per-tensor"`` or ``"per-channel(axis=K)"``."""
        return "per-tensor" if self.axis is None else f"per-channel(axis={self.axis})"

    def invalid_scales(self) -> np.ndarray:
        """Return the indices of scales that are zero, negative, NaN or infinite."""
        bad = ~np.isfinite(self.scale) | (self.scale <= 0)
        return np.flatnonzero(bad.reshape(-1))

    def broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Return scale and zero_point shaped to broadcast against a tensor of ``ndim`` dims."""
        if self.axis is None:
            return self.scale, self.zero_point
        shape = [1] * ndim
        shape[self.axis] = -1
        return self.scale.reshape(shape), self.zero_point.reshape(shape)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Return ``scale * (codes - zero_point)`` in float32, as ONNX DequantizeLinear computes it.

        Example: codes ``[-128, 0, 127]`` with scale 0.5 and zero_point 0 give
        ``[-64.0, 0.0, 63.5]``.
        """
        scale, zero_point = self.broadcast(codes.ndim)
        difference = codes.astype(np.int64) - zero_point
        return difference.astype(np.float32) * scale

    def summary(self) -> str:
        """Short text for tables: one scale and zero_point, or their ranges when per-channel."""
        if self.axis is None:
            return f"scale={float(self.scale):.6g} zero_point={int(self.zero_point)}"
        return (
            f"axis={self.axis} scale=[{float(self.scale.min()):.4g}..{float(self.scale.max()):.4g}] "
            f"zero_point=[{int(self.zero_point.min())}..{int(self.zero_point.max())}]"
        )

    def __repr__(self) -> str:
        return f"Quantization({self.storage_dtype}, {self.granularity}, {self.summary()})"


ArrayLoader = Callable[[], np.ndarray]


@dataclass(frozen=True, repr=False, eq=False)
class Tensor:
    """A named tensor with shape, storage dtype and lazily loaded values.

    For a float tensor ``values`` is the array itself and ``codes`` is None. For a quantized
    tensor ``codes`` contains the integer codes as stored and ``values`` the dequantized floats,
    computed the way the tensor's own framework computes them.
    """

    name: str
    role: Role
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None = None
    load_values: ArrayLoader | None = field(default=None, compare=False)
    load_codes: ArrayLoader | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.quantization is None and self.load_values is None:
            raise ValueError(f"tensor {self.name!r} needs a value loader")
        if self.quantization is not None and self.load_codes is None:
            raise ValueError(f"quantized tensor {self.name!r} needs a code loader")

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @cached_property
    def codes(self) -> np.ndarray | None:
        """Integer codes of a quantized tensor; None for a float tensor."""
        if self.load_codes is None:
            return None
        return self.load_codes()

    @cached_property
    def values(self) -> np.ndarray:
        """Float values: the tensor itself, or the dequantized codes."""
        if self.load_values is not None:
            return self.load_values()
        assert self.quantization is not None and self.codes is not None
        return self.quantization.dequantize(self.codes)

    def view(self, *, integer: bool = False) -> np.ndarray:
        """Return the integer codes when ``integer`` and the tensor is quantized, else values."""
        if integer and self.codes is not None:
            return self.codes
        return self.values

    def __repr__(self) -> str:
        quant = f", {self.quantization!r}" if self.quantization else ""
        return f"Tensor({self.name!r}, {self.role}, shape={self.shape}, dtype={self.dtype}{quant})"


@dataclass(frozen=True, repr=False, eq=False)
class Layer:
    """One node or module of the model, with the constant tensors it consumes."""

    name: str
    op_type: str
    tensors: tuple[Tensor, ...]
    index: int

    def tensor(self, role_or_name: str | Role) -> Tensor:
        """Return the first tensor with this role (``"weight"``, ``"bias"``) or this name."""
        for tensor in self.tensors:
            if tensor.role == role_or_name or tensor.name == role_or_name:
                return tensor
        available = ", ".join(f"{t.role}:{t.name}" for t in self.tensors) or "none"
        raise LayerNotFoundError(
            f"layer {self.name!r} has no tensor {str(role_or_name)!r}; its tensors: {available}"
        )

    @property
    def weight(self) -> Tensor | None:
        return next((t for t in self.tensors if t.role is Role.WEIGHT), None)

    @property
    def bias(self) -> Tensor | None:
        return next((t for t in self.tensors if t.role is Role.BIAS), None)

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, {self.op_type}, {len(self.tensors)} tensors)"


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model: layout, shape, dtype and pixel scaling of its first input.

    ``shape`` uses None for dynamic dimensions, e.g. ``(None, 32, 32, 3)`` for NHWC CIFAR-10.
    ``scaling`` is ``"raw"`` (0-255), ``"unit"`` (0-1) or ``"standardize"`` (``(x/255 - mean) / std``
    with ``mean`` and ``std`` per channel in 0-1 units).
    """

    name: str | None
    layout: str | None
    shape: tuple[int | None, ...] | None
    dtype: str
    scaling: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = "signature"
    # Quantization of an integer input tensor (TFLite int8/uint8 inputs): q = x / scale + zero_point.
    input_scale: float | None = None
    input_zero_point: int | None = None

    @classmethod
    def from_metadata(cls, data: Mapping[str, object], *, source: str) -> InputSpec:
        """Build a spec from the JSON object quantlens writes as model metadata.

        Keys: ``layout`` ("NHWC" or "NCHW"), ``shape`` (list, null for dynamic), ``dtype``,
        ``scaling``, optional ``mean``/``std`` and ``name``. Unknown keys are ignored.
        """
        shape = data.get("shape")
        mean = data.get("mean")
        std = data.get("std")
        return cls(
            name=data.get("name") if isinstance(data.get("name"), str) else None,  # type: ignore[arg-type]
            layout=str(data["layout"]) if data.get("layout") else None,
            shape=tuple(None if d is None else int(d) for d in shape) if isinstance(shape, list) else None,
            dtype=str(data.get("dtype", "float32")),
            scaling=str(data["scaling"]) if data.get("scaling") else None,
            mean=tuple(float(v) for v in mean) if isinstance(mean, list) else None,
            std=tuple(float(v) for v in std) if isinstance(std, list) else None,
            source=source,
        )


@dataclass(frozen=True, repr=False, eq=False)
class Model:
    """A model file read into layers in graph order."""

    path: Path
    format: str
    layers: tuple[Layer, ...]
    input_spec: InputSpec | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def _by_name(self) -> dict[str, Layer]:
        return {layer.name: layer for layer in self.layers}

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name``; the error suggests close names."""
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.layer_names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise LayerNotFoundError(
                f"no layer {name!r} in {self.path.name} ({len(self.layers)} layers){hint} "
                "List them with `quantlens layers MODEL`."
            ) from None

    def tensors(self) -> Iterator[tuple[Layer, Tensor]]:
        """Yield every (layer, tensor) pair in graph order."""
        for layer in self.layers:
            for tensor in layer.tensors:
                yield layer, tensor

    @property
    def parameter_count(self) -> int:
        return sum(t.size for _, t in self.tensors())

    def __repr__(self) -> str:
        return f"Model({self.path.name!r}, {self.format}, {len(self.layers)} layers)"


# Key of the JSON input description in ONNX metadata_props, in TorchScript extra files
# (as "<key>.json") and in quantlens state_dict checkpoints.
INPUT_METADATA_KEY = "quantlens.input"
