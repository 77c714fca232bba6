"""Turn PyTorch tensors, state_dict keys and stored metadata into quantlens records.

Shared by the state_dict, safetensors and TorchScript readers. torch is imported lazily, so this
module is cheap to import.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from quantlens.errors import UnsupportedModelError
from quantlens.records import INTEGER_RANGES, InputSpec, Layer, Quantization, Role, Tensor

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Last key part -> role. Any other name (running_mean, num_batches_tracked, scale, ...) is a PARAMETER.
_ROLES = {"weight": Role.WEIGHT, "bias": Role.BIAS}

# Weight rank -> op type guessed for a state_dict layer whose module type is not recorded.
_OP_TYPE_BY_WEIGHT_RANK = {2: "Linear", 3: "Conv1d", 4: "Conv2d", 5: "Conv3d"}

# Op type of the previous layer -> BatchNorm variant guessed for a layer with running statistics.
_BATCH_NORM_AFTER = {
    "Linear": "BatchNorm1d",
    "Conv1d": "BatchNorm1d",
    "Conv2d": "BatchNorm2d",
    "Conv3d": "BatchNorm3d",
}

# Model.metadata key and value that mark op types guessed from tensor names and shapes.
OP_TYPES_KEY = "op_types"
GUESSED_OP_TYPES = "guessed from tensor names and shapes"

# Tensor dtypes that numpy has no type for. Their values are converted to float32.
_WIDENED_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")


def role_for_key(key: str) -> Role:
    """Return the role of a state_dict key from its last part: weight, bias, else parameter."""
    return _ROLES.get(key.rpartition(".")[2], Role.PARAMETER)


def layer_name_for_key(key: str) -> str:
    """Return the layer a state_dict key belongs to: the part before the last dot.

    A key without a dot belongs to the root module, which torch names ``""``.
    """
    return key.rpartition(".")[0]


def group_keys_by_layer(keys: Iterable[str]) -> dict[str, list[str]]:
    """Group keys by layer name, keeping the first-seen order of layers and of keys."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(layer_name_for_key(key), []).append(key)
    return groups


def guess_op_types(shapes_by_layer: Mapping[str, Mapping[str, tuple[int, ...]]]) -> dict[str, str]:
    """Guess each layer's op type from its tensor names and shapes, for files that omit module types.

    ``shapes_by_layer`` maps layer name -> last key part -> shape, in file order. The guesses:
    running statistics (``running_mean`` or ``running_var``) mean BatchNorm, whose 1d/2d/3d
    variant follows the previous Linear or Conv layer ("BatchNorm" with no such layer before it).
    Otherwise the weight rank decides: 2-d is "Linear", 3-d "Conv1d", 4-d "Conv2d", 5-d "Conv3d".
    Anything else is "unknown". The guess is wrong for some modules: an Embedding weight is 2-d
    and guessed "Linear", a ConvTranspose2d weight is 4-d and guessed "Conv2d".
    """
    guesses: dict[str, str] = {}
    previous: str | None = None
    for layer, shapes in shapes_by_layer.items():
        if "running_mean" in shapes or "running_var" in shapes:
            guess = _BATCH_NORM_AFTER.get(previous or "", "BatchNorm")
        elif "weight" in shapes:
            guess = _OP_TYPE_BY_WEIGHT_RANK.get(len(shapes["weight"]), "unknown")
        else:
            guess = "unknown"
        if guess in _BATCH_NORM_AFTER:
            previous = guess
        guesses[layer] = guess
    return guesses


def dtype_name(dtype: torch.dtype) -> str:
    """Return the torch dtype without its ``torch.`` prefix, e.g. ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Return a float tensor's values as numpy, widening dtypes numpy lacks (bfloat16, float8) to float32."""
    tensor = tensor.detach().cpu()
    if dtype_name(tensor.dtype) in _WIDENED_DTYPES:
        import torch

        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def _codes(qtensor: torch.Tensor) -> np.ndarray:
    return qtensor.int_repr().numpy()


def _dequantized(qtensor: torch.Tensor) -> np.ndarray:
    return qtensor.dequantize().numpy()


def storage_dtype_name(dtype: torch.dtype) -> str:
    """Return the integer storage type of a torch quantized dtype, e.g. qint8 -> ``"int8"``."""
    import torch

    storage = {torch.qint8: "int8", torch.quint8: "uint8", torch.qint32: "int32"}.get(dtype)
    if storage is None:
        raise UnsupportedModelError(
            f"quantized dtype {dtype_name(dtype)!r} is not supported. quantlens reads qint8, "
            "quint8 and qint32 tensors."
        )
    return storage


def quantization_record(name: str, qtensor: torch.Tensor) -> Quantization:
    """Translate a torch quantized tensor's parameters into a Quantization record.

    qmin and qmax are the full range of the storage type. A narrower observer range (such as
    ``reduce_range``) is not stored in torch tensors, so it cannot be recovered from the file.
    """
    import torch

    storage = storage_dtype_name(qtensor.dtype)
    qmin, qmax = INTEGER_RANGES[storage]
    scheme = qtensor.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return Quantization(
            scale=np.float32(qtensor.q_scale()),
            zero_point=np.int64(qtensor.q_zero_point()),
            axis=None,
            qmin=qmin,
            qmax=qmax,
            storage_dtype=storage,
        )
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        return Quantization(
            scale=qtensor.q_per_channel_scales().numpy(),
            zero_point=qtensor.q_per_channel_zero_points().numpy(),
            axis=int(qtensor.q_per_channel_axis()),
            qmin=qmin,
            qmax=qmax,
            storage_dtype=storage,
        )
    raise UnsupportedModelError(
        f"tensor {name!r} uses quantization scheme {scheme}, which quantlens does not read. "
        "Supported schemes are per-tensor and per-channel affine with integer zero points."
    )


def tensor_record(name: str, tensor: torch.Tensor, *, role: Role | None = None) -> Tensor:
    """Wrap a torch tensor as a Tensor record whose values load on first access.

    A quantized tensor gets both loaders: its codes are ``int_repr()`` and its values are
    torch's own ``dequantize()``, so they match what torch computes exactly.
    """
    role = role if role is not None else role_for_key(name)
    shape = tuple(int(d) for d in tensor.shape)
    if tensor.is_quantized:
        quantization = quantization_record(name, tensor)
        return Tensor(
            name=name,
            role=role,
            shape=shape,
            dtype=quantization.storage_dtype,
            quantization=quantization,
            load_values=functools.partial(_dequantized, tensor),
            load_codes=functools.partial(_codes, tensor),
        )
    return Tensor(
        name=name,
        role=role,
        shape=shape,
        dtype=dtype_name(tensor.dtype),
        load_values=functools.partial(to_numpy, tensor),
    )


def scalar_record(name: str, value: float | int) -> Tensor:
    """Wrap a Python number (a quantized module's output scale or zero_point) as a 0-d tensor."""
    array = np.asarray(value, dtype=np.float32 if isinstance(value, float) else np.int64)
    return Tensor(
        name=name,
        role=role_for_key(name),
        shape=(),
        dtype=str(array.dtype),
        load_values=functools.partial(array.copy),
    )


def _role_rank(tensor: Tensor) -> int:
    return {Role.WEIGHT: 0, Role.BIAS: 1}.get(tensor.role, 2)


def build_layers(grouped: Mapping[str, list[Tensor]], op_types: Mapping[str, str]) -> tuple[Layer, ...]:
    """Build layers in the order of ``grouped``, each with its weight first, then bias, then the rest."""
    layers = []
    for index, (name, tensors) in enumerate(grouped.items()):
        ordered = tuple(sorted(tensors, key=_role_rank))
        layers.append(Layer(name=name, op_type=op_types.get(name, "unknown"), tensors=ordered, index=index))
    return tuple(layers)


def input_spec_from_metadata(raw: object, *, path: Path, where: str) -> InputSpec | None:
    """Build the input spec from a stored quantlens input description: a dict or its JSON text.

    Returns None when ``raw`` is None or empty. An invalid description is logged as a warning and
    also gives None, so that the weights stay readable.
    """
    if raw is None or raw in ("", b""):
        return None
    data = raw
    if isinstance(raw, (str, bytes)):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            logger.warning(
                "ignoring the input description in %s of %s: invalid JSON (%s)", where, path, error
            )
            return None
    if not isinstance(data, Mapping):
        logger.warning(
            "ignoring the input description in %s of %s: expected a JSON object, got %s",
            where,
            path,
            type(data).__name__,
        )
        return None
    try:
        return InputSpec.from_metadata(data, source="metadata")
    except (TypeError, ValueError) as error:
        logger.warning("ignoring the input description in %s of %s: %s", where, path, error)
        return None


def architecture_module_types(name: object) -> Mapping[str, str] | None:
    """Return module name -> type name of a bundled architecture, in module order.

    Returns None when ``name`` is not an architecture in ``quantlens.zoo.architectures()``.
    """
    if not isinstance(name, str) or not name:
        return None
    return _bundled_module_types(name)


@functools.lru_cache(maxsize=8)
def _bundled_module_types(name: str) -> Mapping[str, str] | None:
    from quantlens.zoo import architectures

    factory = architectures().get(name)
    if factory is None:
        logger.info("architecture %r is not bundled with quantlens; guessing op types instead", name)
        return None
    module_types = {module_name: type(module).__name__ for module_name, module in factory().named_modules()}
    return MappingProxyType(module_types)


def _op_types_for_layers(
    shapes_by_layer: Mapping[str, Mapping[str, tuple[int, ...]]], *, architecture: object
) -> tuple[dict[str, str], bool]:
    """Return each layer's op type and whether any of them is a guess.

    Layers that a bundled ``architecture`` names get their module type from it. The rest get the
    guess of ``guess_op_types``.
    """
    known = architecture_module_types(architecture) or {}
    guesses = guess_op_types(shapes_by_layer)
    op_types = {layer: known.get(layer, guesses[layer]) for layer in shapes_by_layer}
    guessed = any(layer not in known for layer in shapes_by_layer)
    return op_types, guessed


def build_layers_by_key(
    grouped: Mapping[str, list[Tensor]], *, architecture: object
) -> tuple[tuple[Layer, ...], bool]:
    """Build layers from tensors grouped by state_dict key prefix, and return whether op types are guessed.

    Op types come from the bundled ``architecture`` where it names the layer, else from
    ``guess_op_types``.
    """
    shapes = {layer: {t.name.rpartition(".")[2]: t.shape for t in group} for layer, group in grouped.items()}
    op_types, guessed = _op_types_for_layers(shapes, architecture=architecture)
    return build_layers(grouped, op_types), guessed
