"""The input adapter: uint8 RGB images to the tensor a model expects.

It applies, in order: channel count (RGB, or the mean of RGB for one-channel models), pixel
scaling, layout (NHWC or NCHW) and dtype. Scaling is one of

- ``raw``: float pixels 0-255;
- ``unit``: pixels / 255, so 0-1;
- ``standardize``: ``(pixels / 255 - mean) / std`` per channel, ``mean`` and ``std`` in 0-1 units.

Integer-input models (int8/uint8 input tensors) get quantized input: ``q = round(x / scale) +
zero_point`` clipped to the dtype's range, where ``x`` is the scaled float input. Without
recorded input quantization, uint8 inputs take the raw pixels and int8 inputs pixels - 128.
When such a model records no scaling, the float range its input quantization represents
chooses one (see :func:`infer_scaling`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from quantlens.errors import InputError
from quantlens.inputs import InputBatch
from quantlens.records import INTEGER_RANGES, InputSpec

logger = logging.getLogger(__name__)

SCALINGS = ("raw", "unit", "standardize")
CIFAR10_MEAN_UNIT = (0.4914, 0.4822, 0.4465)
CIFAR10_STD_UNIT = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN_UNIT = (0.485, 0.456, 0.406)
IMAGENET_STD_UNIT = (0.229, 0.224, 0.225)
# Each end of an input quantization's float range may differ from a scaling's range by this
# fraction of that range's width. A calibrated range spans only the pixel values of the
# calibration images, and its zero_point is rounded to an integer.
RANGE_TOLERANCE = 0.15


@dataclass(frozen=True)
class InputAdapter:
    """How to turn images into one model's input tensor.

    ``layout`` is ``"NHWC"`` or ``"NCHW"`` for image models and None when the model input is not
    image-shaped (then only random input can be fed). ``shape`` is the full input shape with
    dynamic dimensions as None.
    """

    name: str | None
    shape: tuple[int | None, ...]
    dtype: str
    layout: str | None
    scaling: str
    mean: tuple[float, ...] = CIFAR10_MEAN_UNIT
    std: tuple[float, ...] = CIFAR10_STD_UNIT
    input_scale: float | None = None
    input_zero_point: int | None = None
    source: str = "signature"

    @property
    def is_image(self) -> bool:
        return self.layout is not None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of image inputs, or None when not image-shaped or dynamic."""
        if self.layout is None:
            return None
        height, width = (self.shape[1], self.shape[2]) if self.layout == "NHWC" else (self.shape[2], self.shape[3])
        if height is None or width is None:
            return None
        return int(height), int(width)

    @property
    def channels(self) -> int:
        if self.layout is None:
            return 0
        value = self.shape[3] if self.layout == "NHWC" else self.shape[1]
        return int(value) if value is not None else 3

    def describe(self) -> str:
        """Describe the input in one line, e.g. ``NHWC 32x32x3 float32, raw pixels 0-255 (from metadata)``."""
        if not self.is_image:
            return f"{self.shape} {self.dtype}, not image-shaped (from {self.source})"
        size = self.image_size or ("?", "?")
        scaling = {
            "raw": "raw pixels 0-255",
            "unit": "pixels scaled to 0-1",
            "standardize": f"standardized with mean {self.mean} and std {self.std}",
        }[self.scaling]
        return f"{self.layout} {size[0]}x{size[1]}x{self.channels} {self.dtype}, {scaling} (from {self.source})"

    def prepare(self, batch: InputBatch) -> np.ndarray:
        """Return the model input for ``batch``; random input is drawn in this adapter's shape."""
        if batch.random_seed is not None:
            return self.random(batch.random_seed)
        if batch.images is None:
            raise InputError("input batch has neither images nor a random seed")
        if not self.is_image:
            raise InputError(
                f"model input {self.name or ''} has shape {self.shape}, which is not image-shaped; "
                "only random input (random[:SEED]) can be fed to it"
            )
        images = batch.images
        size = self.image_size
        if size is not None and images.shape[1:3] != size:
            raise InputError(
                f"images are {images.shape[2]}x{images.shape[1]} but the model expects "
                f"{size[1]}x{size[0]}; image files are resized automatically, pass files instead"
            )
        return self.from_pixels(images)

    def from_pixels(self, images: np.ndarray) -> np.ndarray:
        """Scale, lay out and cast uint8 RGB ``(N, H, W, 3)`` pixels for the model."""
        pixels = images.astype(np.float32)
        if self.channels == 1:
            pixels = pixels.mean(axis=3, keepdims=True)
        scaled = self._scale(pixels)
        if self.layout == "NCHW":
            scaled = scaled.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(self._cast(scaled, images))

    def _scale(self, pixels: np.ndarray) -> np.ndarray:
        if self.scaling == "raw":
            return pixels
        unit = pixels / np.float32(255.0)
        if self.scaling == "unit":
            return unit
        channels = pixels.shape[3]
        mean = np.asarray(self.mean[:channels], dtype=np.float32)
        std = np.asarray(self.std[:channels], dtype=np.float32)
        return (unit - mean) / std

    def _cast(self, values: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        if self.dtype not in INTEGER_RANGES:
            return values.astype(self.dtype)
        low, high = INTEGER_RANGES[self.dtype]
        if self.input_scale is not None:
            zero_point = self.input_zero_point or 0
            codes = np.rint(values / np.float32(self.input_scale)) + zero_point
            return np.clip(codes, low, high).astype(self.dtype)
        raw = pixels.astype(np.int16) if self.layout == "NHWC" else pixels.transpose(0, 3, 1, 2).astype(np.int16)
        if self.channels == 1:
            raw = np.rint(values).astype(np.int16)
        shifted = raw - 128 if self.dtype == "int8" else raw
        return np.clip(shifted, low, high).astype(self.dtype)

    def random(self, seed: int) -> np.ndarray:
        """Draw one random input: uniform pixels for image models, else standard normal floats
        (or uniform integers over the dtype's range)."""
        rng = np.random.default_rng(seed)
        if self.is_image:
            height, width = self.image_size or (32, 32)
            return self.from_pixels(rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8))
        shape = tuple(1 if d is None else d for d in self.shape)
        if self.dtype in INTEGER_RANGES:
            low, high = INTEGER_RANGES[self.dtype]
            return rng.integers(low, high, size=shape, endpoint=True).astype(self.dtype)
        if self.dtype == "bool":
            return rng.integers(0, 2, size=shape).astype(bool)
        return rng.standard_normal(shape).astype(self.dtype)

    def with_options(self, *, layout: str | None = None, scaling: str | None = None) -> InputAdapter:
        """Return a copy with a user-chosen layout and/or scaling (None keeps the current one)."""
        adapter = self
        if layout is not None:
            adapter = replace(adapter, layout=_check_layout(layout), shape=_relayout(adapter, layout), source="option")
        if scaling is not None:
            if scaling not in SCALINGS:
                raise InputError(f"invalid scaling {scaling!r}: use one of {', '.join(SCALINGS)}")
            adapter = replace(adapter, scaling=scaling, source="option")
        return adapter


def _check_layout(layout: str) -> str:
    upper = layout.upper()
    if upper not in ("NHWC", "NCHW"):
        raise InputError(f"invalid layout {layout!r}: use NHWC or NCHW")
    return upper


def _relayout(adapter: InputAdapter, layout: str) -> tuple[int | None, ...]:
    target = _check_layout(layout)
    if adapter.layout is None or adapter.layout == target:
        if adapter.layout is None and len(adapter.shape) != 4:
            raise InputError(f"cannot set layout {target} on a model input of shape {adapter.shape}")
        return adapter.shape
    n, a, b, c = adapter.shape
    return (n, c, a, b) if target == "NCHW" else (n, b, c, a)


def guess_layout(shape: tuple[int | None, ...] | None) -> str | None:
    """Return NHWC or NCHW for a rank-4 image shape with 1, 3 or 4 channels, else None."""
    if shape is None or len(shape) != 4:
        return None
    if shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4):
        return "NCHW"
    if shape[3] in (1, 3, 4):
        return "NHWC"
    if shape[1] in (1, 3, 4):
        return "NCHW"
    return None


@dataclass(frozen=True)
class ScalingRange:
    """A pixel scaling and the float range ``low`` to ``high`` it maps pixels 0-255 to.

    ``mean`` and ``std`` (0-1 units, per channel) apply to ``"standardize"`` only.
    """

    scaling: str
    low: float
    high: float
    mean: tuple[float, ...] = CIFAR10_MEAN_UNIT
    std: tuple[float, ...] = CIFAR10_STD_UNIT

    @classmethod
    def standardized(cls, mean: tuple[float, ...], std: tuple[float, ...]) -> ScalingRange:
        """Build the range of ``(pixels / 255 - mean) / std`` over all channels.

        Example: mean 0.5 and std 0.5 give -1 to 1.
        """
        low = min(-m / s for m, s in zip(mean, std))
        high = max((1 - m) / s for m, s in zip(mean, std))
        return cls("standardize", low, high, mean, std)


SCALING_RANGES = (
    ScalingRange("raw", 0.0, 255.0),
    ScalingRange("unit", 0.0, 1.0),
    ScalingRange.standardized((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ScalingRange.standardized(CIFAR10_MEAN_UNIT, CIFAR10_STD_UNIT),
    ScalingRange.standardized(IMAGENET_MEAN_UNIT, IMAGENET_STD_UNIT),
)


@dataclass(frozen=True)
class InferredScaling:
    """The scaling chosen for an integer input, and the float range ``low`` to ``high`` its quantization covers."""

    match: ScalingRange
    low: float
    high: float

    @property
    def scaling(self) -> str:
        return self.match.scaling

    @property
    def mean(self) -> tuple[float, ...]:
        return self.match.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.match.std


def infer_scaling(dtype: str, scale: float, zero_point: int) -> InferredScaling | None:
    """Choose the pixel scaling whose float range the input quantization covers.

    An integer input covers ``scale * (qmin - zero_point)`` to ``scale * (qmax - zero_point)``.
    Of ``SCALING_RANGES`` (raw 0-255, unit 0-1, standardize to -1..1 with mean = std = 0.5, or
    with CIFAR-10 statistics to -1.99..2.13 or ImageNet statistics to -2.12..2.64), the closest
    wins if both of its ends are within ``RANGE_TOLERANCE`` of that range's width. Example: int8
    with scale 1/255 and zero_point -128 covers 0 to 1, so "unit". Scale 1 and zero_point -128
    cover 0 to 255, so "raw". Returns None when no range fits or the scale is not finite and
    positive.
    """
    if dtype not in INTEGER_RANGES or not np.isfinite(scale) or scale <= 0:
        return None
    qmin, qmax = INTEGER_RANGES[dtype]
    low, high = scale * (qmin - zero_point), scale * (qmax - zero_point)
    best: InferredScaling | None = None
    best_distance = RANGE_TOLERANCE
    for candidate in SCALING_RANGES:
        distance = max(abs(low - candidate.low), abs(high - candidate.high)) / (candidate.high - candidate.low)
        if distance <= best_distance:
            best, best_distance = InferredScaling(candidate, low, high), distance
    return best


def adapter_from_spec(spec: InputSpec) -> InputAdapter:
    """Build the adapter for a recorded input spec, choosing defaults for what it leaves open.

    Without recorded scaling, an integer input with recorded quantization gets the scaling its
    quantization's float range matches (:func:`infer_scaling`), and ``source`` names that
    quantization. Otherwise image models up to 64x64 are assumed to be standardized with
    CIFAR-10 statistics and larger ones with ImageNet statistics, as most PyTorch training
    scripts do.
    """
    shape = spec.shape if spec.shape is not None else (None, None, None, None)
    layout = spec.layout.upper() if spec.layout else guess_layout(shape)
    if layout is not None and len(shape) != 4:
        layout = None
    scaling = spec.scaling
    mean, std = spec.mean, spec.std
    source = spec.source
    inferred = _scaling_from_input_quantization(spec) if scaling is None else None
    if inferred is not None:
        scaling, mean, std = inferred.scaling, inferred.mean, inferred.std
        source = (
            f"input quantization: scale {spec.input_scale:.6g} and zero_point {spec.input_zero_point or 0} "
            f"cover {inferred.low:.4g} to {inferred.high:.4g}"
        )
    if scaling is None or (scaling == "standardize" and (mean is None or std is None)):
        adapter = InputAdapter(name=spec.name, shape=shape, dtype=spec.dtype, layout=layout, scaling="raw")
        small = adapter.image_size is not None and max(adapter.image_size) <= 64
        scaling = "standardize"
        mean = mean or (CIFAR10_MEAN_UNIT if small else IMAGENET_MEAN_UNIT)
        std = std or (CIFAR10_STD_UNIT if small else IMAGENET_STD_UNIT)
    if scaling not in SCALINGS:
        raise InputError(f"model metadata names unknown input scaling {scaling!r}; pass --scaling")
    return InputAdapter(
        name=spec.name,
        shape=shape,
        dtype=spec.dtype,
        layout=layout,
        scaling=scaling,
        mean=tuple(mean or CIFAR10_MEAN_UNIT),
        std=tuple(std or CIFAR10_STD_UNIT),
        input_scale=spec.input_scale,
        input_zero_point=spec.input_zero_point,
        source=source,
    )


def _scaling_from_input_quantization(spec: InputSpec) -> InferredScaling | None:
    if spec.input_scale is None:
        return None
    zero_point = spec.input_zero_point or 0
    inferred = infer_scaling(spec.dtype, spec.input_scale, zero_point)
    if inferred is None:
        logger.warning(
            "input %s: quantization scale %g and zero_point %d match no known pixel scaling, so the "
            "input is assumed to be standardized. Pass --scaling to choose another scaling",
            spec.name or "", spec.input_scale, zero_point,
        )
    return inferred


# Shapes tried, in order, when a model records no input signature (TorchScript, pickles).
PROBE_SHAPES: tuple[tuple[int, ...], ...] = (
    (1, 3, 32, 32),
    (1, 32, 32, 3),
    (1, 3, 224, 224),
    (1, 224, 224, 3),
    (1, 1, 28, 28),
    (1, 28, 28, 1),
)
