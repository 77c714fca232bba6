"""Keras HDF5 reader: ``model.save("x.h5")`` and ``model.save_weights("x.h5")`` files, read with h5py alone.

Layers come in the order of the ``model_config`` attribute (JSON, Sequential or Functional), and
op_type is the Keras ``class_name``. A layer's weights are the datasets its group in
``model_weights`` lists in the ``weight_names`` attribute, e.g. ``model_weights/conv2d/conv2d/kernel:0``.
Roles come from the weight's own name: ``kernel`` and ``gamma`` are weights, ``bias`` and
``beta`` biases, anything else (``moving_mean``, ``moving_variance``) a parameter. A model nested
as a layer contributes its inner layers, named ``outer/inner``. Values are read on first access.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from quantlens.errors import MissingDependencyError, ModelFormatError
from quantlens.readers.registry import Reader, register
from quantlens.records import InputSpec, Layer, Model, Role, Tensor

logger = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
INSTALL_LINE = 'pip install "quantlens[keras]"'

WEIGHT_ROLES = {
    "kernel": Role.WEIGHT,
    "depthwise_kernel": Role.WEIGHT,
    "pointwise_kernel": Role.WEIGHT,
    "recurrent_kernel": Role.WEIGHT,
    "embeddings": Role.WEIGHT,
    "gamma": Role.WEIGHT,
    "bias": Role.BIAS,
    "beta": Role.BIAS,
}
MODEL_CLASSES = ("Sequential", "Functional", "Model")
UNKNOWN_OP = "unknown"  # op_type of layers in weights-only files, which store no class names


def import_h5py() -> ModuleType:
    try:
        import h5py
    except ImportError as error:
        raise MissingDependencyError(
            f"reading Keras .h5 files needs the h5py package; install it with: {INSTALL_LINE}"
        ) from error
    return h5py


def sniff(head: bytes) -> bool:
    """Return True for the HDF5 signature at byte 0 (files with a user block are matched by extension)."""
    return head.startswith(HDF5_SIGNATURE)


@dataclass(frozen=True)
class ConfigLayer:
    """A layer named in ``model_config``: its qualified name, Keras class and own (inner) name."""

    name: str
    class_name: str
    inner_name: str


def _attribute_list(attrs: Any, name: str) -> list[str]:
    """Read a list-of-strings attribute. Keras splits large ones into ``name0``, ``name1``, ..."""
    if name in attrs:
        chunks = [attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in attrs:
            chunks.append(attrs[f"{name}{len(chunks)}"])
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for chunk in chunks for item in chunk]


def _config_layers(config: dict[str, Any], prefix: str = "") -> list[ConfigLayer]:
    """Flatten the layers of a Sequential or Functional config, nested models included."""
    body = config.get("config", {})
    entries = body if isinstance(body, list) else body.get("layers", [])  # Keras < 2.4 Sequential: a list
    layers: list[ConfigLayer] = []
    for entry in entries:
        inner = entry.get("config", {})
        name = str(inner.get("name", entry.get("name", "")))
        class_name = str(entry.get("class_name", UNKNOWN_OP))
        if class_name in MODEL_CLASSES or (isinstance(inner, dict) and "layers" in inner):
            layers.extend(_config_layers(entry, prefix=f"{prefix}{name}/"))
        else:
            layers.append(ConfigLayer(f"{prefix}{name}", class_name, name))
    return layers


def _role(weight_name: str) -> Role:
    """Return the role of ``conv2d/kernel:0`` (Keras 2) or ``kernel`` (Keras 3) names."""
    base = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
    return WEIGHT_ROLES.get(base, Role.PARAMETER)


class KerasFile:
    """The layer order and weight datasets of an open Keras HDF5 file."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        if "model_weights" in handle:
            self.weights_root = "model_weights"
        elif "layer_names" in handle.attrs or "layer_names0" in handle.attrs:
            self.weights_root = ""  # save_weights() writes the layer groups at the root
        else:
            raise ModelFormatError(
                f"Error loading Keras model {str(path)!r}: it is an HDF5 file but has no "
                "model_weights group and no layer_names attribute, so Keras did not write it"
            )
        self.config = self._model_config(handle)
        self.group = handle[self.weights_root] if self.weights_root else handle

    def _model_config(self, handle: Any) -> dict[str, Any] | None:
        text = handle.attrs.get("model_config")
        if text is None:
            return None
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ModelFormatError(f"Error loading Keras model {str(self.path)!r}: model_config is not valid JSON ({error})") from error
        if not isinstance(config, dict):
            raise ModelFormatError(f"Error loading Keras model {str(self.path)!r}: model_config is {type(config).__name__}, not a JSON object")
        return config

    def weight_names(self) -> dict[str, list[str]]:
        """Map each layer group to its weight names, in the file's layer_names order."""
        names: dict[str, list[str]] = {}
        for layer_name in _attribute_list(self.group.attrs, "layer_names"):
            if layer_name not in self.group:
                raise ModelFormatError(f"{self.path.name}: layer_names lists {layer_name!r}, but there is no group {self._key(layer_name)!r}")
            names[layer_name] = _attribute_list(self.group[layer_name].attrs, "weight_names")
        # Keras 3 writes weights that belong to the model itself, not to a layer, in this group.
        top_level = "top_level_model_weights"
        if top_level in self.group and _attribute_list(self.group[top_level].attrs, "weight_names"):
            names[top_level] = _attribute_list(self.group[top_level].attrs, "weight_names")
        return names

    def _key(self, *parts: str) -> str:
        return "/".join(part for part in (self.weights_root, *parts) if part)

    def tensor(self, group_name: str, weight_name: str) -> Tensor:
        """Build the record of one weight dataset. Its values are read when first accessed."""
        key = self._key(group_name, weight_name)
        if weight_name not in self.group[group_name]:
            raise ModelFormatError(f"{self.path.name}: weight_names of {group_name!r} lists {weight_name!r}, but dataset {key!r} is missing")
        dataset = self.group[group_name][weight_name]
        path = self.path
        return Tensor(
            name=weight_name,
            role=_role(weight_name),
            shape=tuple(int(d) for d in dataset.shape),
            dtype=dataset.dtype.name,
            load_values=lambda: _read_dataset(path, key),
        )


def _read_dataset(path: Path, key: str) -> np.ndarray:
    h5py = import_h5py()
    try:
        with h5py.File(path, "r") as handle:
            return np.asarray(handle[key][()])
    except (OSError, KeyError) as error:
        raise ModelFormatError(f"Error reading dataset {key!r} of Keras model {str(path)!r}: {error}") from error


def _assign_weights(
    config_layers: list[ConfigLayer], weight_names: dict[str, list[str]], keras_file: KerasFile
) -> dict[str, list[Tensor]]:
    """Give each config layer the tensors of its group. A nested model's group is split by weight prefix."""
    qualified = [layer.name for layer in config_layers]
    tensors: dict[str, list[Tensor]] = {}
    for group_name, names in weight_names.items():
        for weight_name in names:
            owner = group_name
            if group_name not in qualified and "/" in weight_name:
                # A nested model's group lists inner weights as "inner_layer/kernel:0".
                inner = weight_name.rsplit("/", 2)[-2]
                nested = [n for n in qualified if n.startswith(f"{group_name}/") and n.rsplit("/", 1)[-1] == inner]
                owner = nested[0] if nested else group_name
            tensors.setdefault(owner, []).append(keras_file.tensor(group_name, weight_name))
    return tensors


def read_layers(keras_file: KerasFile) -> tuple[Layer, ...]:
    """Build the layers in config order. Weight groups that the config does not name come last."""
    weight_names = keras_file.weight_names()
    if keras_file.config is not None:
        config_layers = _config_layers(keras_file.config)
    else:
        config_layers = [ConfigLayer(name, UNKNOWN_OP, name) for name in weight_names]
    tensors = _assign_weights(config_layers, weight_names, keras_file)
    known = {layer.name for layer in config_layers}
    extra = [name for name in tensors if name not in known]
    if extra:
        logger.warning(
            "%s: weight groups %s are not layers of model_config; they are listed last with op_type %r",
            keras_file.path.name, ", ".join(map(repr, extra)), UNKNOWN_OP,
        )
        config_layers += [ConfigLayer(name, UNKNOWN_OP, name) for name in extra]
    return tuple(
        Layer(name=layer.name, op_type=layer.class_name, tensors=tuple(tensors.get(layer.name, ())), index=index)
        for index, layer in enumerate(config_layers)
    )


def _dtype_name(value: object) -> str:
    """Return the dtype of a layer config: a string (Keras 2) or a DTypePolicy object (Keras 3)."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name", "float32")
    name = str(value or "float32")
    return name.rsplit("_", 1)[-1] if name.startswith("mixed_") else name


def read_input_spec(config: dict[str, Any] | None) -> InputSpec | None:
    """Describe the first input from the config: batch shape, dtype, and NHWC unless a layer is channels_first."""
    if config is None:
        return None
    body = config.get("config", {})
    entries = body if isinstance(body, list) else body.get("layers", [])
    for entry in entries:
        layer_config = entry.get("config", {})
        shape = layer_config.get("batch_input_shape", layer_config.get("batch_shape"))
        if shape is None:
            continue
        shape_tuple = tuple(None if d is None else int(d) for d in shape)
        channels_first = any(e.get("config", {}).get("data_format") == "channels_first" for e in entries)
        layout = None
        if len(shape_tuple) == 4:
            layout = "NCHW" if channels_first else "NHWC"
        return InputSpec(
            name=str(layer_config.get("name", "")) or None,
            layout=layout,
            shape=shape_tuple,
            dtype=_dtype_name(layer_config.get("dtype")),
            source="signature",
        )
    return None


def load(path: Path, *, trust: bool = False) -> Model:
    """Open a Keras HDF5 file. ``trust`` is ignored because h5py reads no pickles."""
    h5py = import_h5py()
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ModelFormatError(
            f"Error loading Keras model {str(path)!r}: h5py cannot open it as HDF5 ({error}). "
            "The file may be truncated or not an HDF5 file; save or download it again"
        ) from error
    with handle:
        try:
            keras_file = KerasFile(path, handle)
            layers = read_layers(keras_file)
        except OSError as error:  # h5py raises OSError for a damaged group or attribute
            raise ModelFormatError(f"Error loading Keras model {str(path)!r}: {error}; the file may be damaged") from error
        metadata = {key: _attribute_text(handle.attrs[key]) for key in ("keras_version", "backend") if key in handle.attrs}
        return Model(
            path=path,
            format="keras",
            layers=layers,
            input_spec=read_input_spec(keras_file.config),
            metadata=metadata,
        )


def _attribute_text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


register(Reader(name="keras", extensions=(".h5", ".hdf5"), sniff=sniff, load=load))
