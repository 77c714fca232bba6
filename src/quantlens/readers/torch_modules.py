"""Read layers from an nn.Module or a TorchScript module, and load TorchScript archives.

Layers follow ``named_modules()``, which lists modules in registration order: usually, but not
always, the order ``forward`` calls them. Functional calls (``torch.flatten``, ``F.relu``) are not
modules, so they do not appear as layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlens.errors import ModelFormatError, UnsupportedModelError
from quantlens.readers.torch_tensors import (
    build_layers,
    input_spec_from_metadata,
    scalar_record,
    tensor_record,
)
from quantlens.records import INPUT_METADATA_KEY, Layer, Model, Role, Tensor

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# TorchScript extra file that contains the quantlens input description as JSON.
INPUT_EXTRA_FILE = f"{INPUT_METADATA_KEY}.json"

# Name of the attribute in which torch.ao quantized modules keep their packed weight and bias.
PACKED_PARAMS = "_packed_params"

# TorchScript class of packed params -> torch.ops.quantized unpack op, by convolution
# dimensionality. Conv1d packs into the 2-d class, so the module's op type picks 1-d or 2-d.
_CONV_UNPACK_OPS = {
    ("Conv2dPackedParamsBase", False): {"1d": "conv1d_unpack", "2d": "conv2d_unpack"},
    ("Conv2dPackedParamsBase", True): {"1d": "conv_transpose1d_unpack", "2d": "conv_transpose2d_unpack"},
    ("Conv3dPackedParamsBase", False): {"3d": "conv3d_unpack"},
    ("Conv3dPackedParamsBase", True): {"3d": "conv_transpose3d_unpack"},
}


def state_dict_key(prefix: str, attribute: str) -> str:
    """Join a module name and an attribute the way ``state_dict()`` keys do (the root module is ``""``)."""
    return f"{prefix}.{attribute}" if prefix else attribute


def _unpack_op_name(module_name: str, op_type: str, packed: torch.ScriptObject) -> str:
    class_name = packed._type().qualified_name().rpartition(".")[2]
    if class_name == "LinearPackedParamsBase":
        return "linear_unpack"
    ops = _CONV_UNPACK_OPS.get((class_name, bool(packed.transpose()))) if "Conv" in class_name else None
    if ops is None:
        raise UnsupportedModelError(
            f"module {module_name!r} ({op_type}) stores its weights in packed params of class "
            f"{class_name!r}, which quantlens cannot unpack. Supported: quantized Linear, "
            "Conv1d/2d/3d and ConvTranspose1d/2d/3d"
        )
    if len(ops) == 1:
        return next(iter(ops.values()))
    return ops["1d"] if op_type.endswith("1d") else ops["2d"]


def unpack_params(
    module_name: str, op_type: str, packed: torch.ScriptObject
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the (weight, bias) in a quantized module's packed params, via torch.ops.quantized.

    The weight is a quantized tensor (a float32 one for fp16 dynamic Linear, which
    ``linear_unpack`` widens) and the bias is float or None.
    """
    import torch

    op_name = _unpack_op_name(module_name, op_type, packed)
    weight, bias = getattr(torch.ops.quantized, op_name)(packed)
    return weight, bias


def _packed_params_of(module: Any) -> torch.ScriptObject | None:
    """Return the packed params object of a quantized module, or None for any other module.

    Quantized convolutions store it directly in ``_packed_params``. Quantized Linear stores a
    LinearPackedParams submodule there, whose own ``_packed_params`` is the object.
    """
    import torch

    packed = getattr(module, PACKED_PARAMS, None)
    if packed is not None and not isinstance(packed, torch.ScriptObject):
        packed = getattr(packed, PACKED_PARAMS, None)
    return packed if isinstance(packed, torch.ScriptObject) else None


def _packed_tensors(name: str, op_type: str, module: Any, packed: torch.ScriptObject) -> Iterator[Tensor]:
    weight, bias = unpack_params(name, op_type, packed)
    yield tensor_record(state_dict_key(name, "weight"), weight, role=Role.WEIGHT)
    if bias is not None:
        yield tensor_record(state_dict_key(name, "bias"), bias, role=Role.BIAS)
    # The output scale and zero_point are plain Python numbers on quantized modules.
    for attribute in ("scale", "zero_point"):
        value = getattr(module, attribute, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield scalar_record(state_dict_key(name, attribute), value)


def module_tensors(name: str, op_type: str, module: Any) -> list[Tensor]:
    """Return the tensors a module owns directly: packed weight and bias, parameters, buffers.

    Tensor names are the module name plus the attribute, as in ``state_dict()``. The weight and
    bias of a quantized Linear are named ``<module>.weight`` and ``<module>.bias``, though its
    state_dict stores them under ``<module>._packed_params._packed_params``.
    """
    tensors: list[Tensor] = []
    packed = _packed_params_of(module)
    if packed is not None:
        tensors.extend(_packed_tensors(name, op_type, module, packed))
    for attribute, parameter in module.named_parameters(recurse=False):
        tensors.append(tensor_record(state_dict_key(name, attribute), parameter))
    for attribute, buffer in module.named_buffers(recurse=False):
        tensors.append(tensor_record(state_dict_key(name, attribute), buffer))
    return tensors


def layers_from_module(root: Any, *, op_type_of: Callable[[Any], str]) -> tuple[Layer, ...]:
    """Build one layer per leaf module and per container module that owns tensors directly.

    Works on nn.Module and TorchScript modules alike. ``op_type_of`` returns a module's type name.
    The LinearPackedParams submodule of a quantized Linear is folded into its parent.
    """
    grouped: dict[str, list[Tensor]] = {}
    op_types: dict[str, str] = {}
    for name, module in root.named_modules():
        if name.rpartition(".")[2] == PACKED_PARAMS:
            continue
        op_type = op_type_of(module)
        tensors = module_tensors(name, op_type, module)
        is_leaf = next(iter(module.children()), None) is None
        if tensors or is_leaf:
            grouped[name] = tensors
            op_types[name] = op_type
    return build_layers(grouped, op_types)


def _torchscript_error(path: Path, error: RuntimeError) -> Exception:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "PytorchStreamReader" in str(error) or "zip archive" in str(error):
        return ModelFormatError(
            f"{str(path)!r} is a damaged TorchScript archive ({first_line}). The file may be "
            "truncated, so copy or export it again."
        )
    return UnsupportedModelError(
        f"torch.jit.load could not load the TorchScript archive {str(path)!r}: {first_line}. "
        "If it uses custom ops, import the library that registers them before opening it."
    )


def read_torchscript(path: Path, *, extra_file_names: list[str]) -> Model:
    """Load a TorchScript archive with ``torch.jit.load`` and read its modules into layers.

    Loading a TorchScript archive unpickles only TorchScript types, so it needs no trust. Every
    extra file named in ``extra_file_names`` goes into ``Model.metadata`` as text, and the
    ``quantlens.input.json`` extra file becomes the input spec.
    """
    import torch

    # NOTE: torch 2.13 marks torch.jit.load as deprecated in favour of torch.export, so a later
    # torch release may no longer load TorchScript archives.
    extra_files = dict.fromkeys(extra_file_names, "")
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
    except RuntimeError as error:
        raise _torchscript_error(path, error) from error

    metadata = {
        name: content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
        for name, content in extra_files.items()
    }
    input_spec = input_spec_from_metadata(
        metadata.get(INPUT_EXTRA_FILE), path=path, where=f"extra file {INPUT_EXTRA_FILE}"
    )
    layers = layers_from_module(module, op_type_of=lambda m: str(m.original_name))
    return Model(path=path, format="torchscript", layers=layers, input_spec=input_spec, metadata=metadata)
