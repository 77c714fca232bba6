"""PyTorch reader: state_dict checkpoints, TorchScript archives and, with trust, pickled modules.

``torch.save`` files are loaded with ``weights_only=True``, whose restricted unpickler builds only
tensors and plain containers. A file that references any other class or function (a pickled
nn.Module, or a malicious payload) needs full unpickling, which can run arbitrary code, so it
raises UntrustedPickleError unless the caller passes ``trust=True``.

Importing this module registers two readers: "torch" (zip archives and legacy pickles) and
"safetensors". torch itself is imported on first load.
"""

from __future__ import annotations

import logging
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantlens.errors import ModelFormatError, UnsupportedModelError, UntrustedPickleError
from quantlens.readers.registry import Reader, register
from quantlens.readers.safetensors_reader import load_safetensors, sniff_safetensors
from quantlens.readers.torch_archive import NotPlainArchive, StoredTensor, load_plain_archive
from quantlens.readers.torch_modules import PACKED_PARAMS, layers_from_module, read_torchscript
from quantlens.readers.torch_tensors import (
    GUESSED_OP_TYPES,
    OP_TYPES_KEY,
    build_layers_by_key,
    group_keys_by_layer,
    input_spec_from_metadata,
    role_for_key,
    tensor_record,
)
from quantlens.readers.torchscript_archive import NotReadable, read_torchscript_archive
from quantlens.records import INPUT_METADATA_KEY, InputSpec, Model, Tensor

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"
# Pickles of protocol 2 and later start with the PROTO opcode 0x80. Legacy torch.save files use
# protocol 2.
PICKLE_PROTO = b"\x80"

# Checkpoint keys under which a state_dict or an nn.Module is commonly nested, in lookup order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
MODULE_KEYS = ("model", "module", "net")

# A quantized Linear's state_dict stores (weight, bias) under this key suffix.
PACKED_LINEAR_SUFFIX = f"{PACKED_PARAMS}.{PACKED_PARAMS}"

# Restricted-unpickler messages that mean the file references a class or function beyond tensors.
_NEEDS_FULL_UNPICKLING = re.compile(r"GLOBAL|call reduce|Can only (build|create)|must be imported")
_GLOBAL_NAME = re.compile(r"GLOBAL (\S+)")

TRUST_HINT = "pass trust=True in the API or --trust on the CLI"


def sniff_torch(head: bytes) -> bool:
    """Return True for a zip archive (torch.save, TorchScript) or a pickle (legacy torch.save)."""
    return head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO)


def load_torch(path: Path, *, trust: bool = False) -> Model:
    """Read a ``torch.save`` file or a TorchScript archive into a Model.

    Raises ModelFormatError for a corrupt or truncated file, UntrustedPickleError for a pickle
    that needs full unpickling without ``trust``, and UnsupportedModelError for a valid file
    that contains no state_dict or module.
    """
    head = _checked_head(path)
    if head.startswith(ZIP_MAGIC):
        names = _zip_names(path)
        if _is_torchscript(names):
            try:
                return read_torchscript_archive(path, extra_file_names=_extra_file_names(names))
            except NotReadable as reason:
                logger.debug("%s: reading with torch.jit.load because %s", path, reason)
            return read_torchscript(path, extra_file_names=_extra_file_names(names))
        if not any(name.rpartition("/")[2] == "data.pkl" for name in names):
            raise ModelFormatError(
                f"{str(path)!r} is a zip archive but neither a torch.save file nor a TorchScript "
                "archive, because it has no data.pkl and no code/ folder"
            )
        try:
            plain = load_plain_archive(path)
        except NotPlainArchive as reason:
            logger.debug("%s: reading with torch.load because %s", path, reason)
        else:
            if isinstance(plain, Mapping):
                return _state_dict_model(path, plain)
        loaded = load_checkpoint(path, trust=trust, mmap=True)
    else:
        # mmap needs the zip format that torch.save writes since PyTorch 1.6.
        loaded = load_checkpoint(path, trust=trust, mmap=False)
    return _read_loaded(path, loaded)


def _checked_head(path: Path) -> bytes:
    """Return the file's first bytes; raise ModelFormatError unless they start a zip or a pickle."""
    with path.open("rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO):
        return head
    described = f"starts with bytes {head.hex(' ')}" if head else "is empty (0 bytes)"
    raise ModelFormatError(
        f"{str(path)!r} is not a PyTorch file: it {described}, but torch.save writes a zip "
        "archive (PK) or a pickle (0x80). The file may be truncated or in another format."
    )


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelFormatError(
            f"{str(path)!r} starts like a zip archive but cannot be read as one ({error}). "
            "The file may be truncated, so copy or save it again."
        ) from error


def _is_torchscript(names: list[str]) -> bool:
    """Return True when the archive has a ``<archive>/code/`` folder, which only TorchScript writes."""
    return any(name.split("/")[1:2] == ["code"] for name in names)


def _extra_file_names(names: list[str]) -> list[str]:
    """Return the names of the TorchScript extra files, stored as ``<archive>/extra/<name>``."""
    extra = []
    for name in names:
        parts = name.split("/", 2)
        if len(parts) == 3 and parts[1] == "extra" and parts[2]:
            extra.append(parts[2])
    return extra


def _rejection_reason(error: pickle.UnpicklingError) -> str:
    """Return the short reason inside torch's long weights_only error message."""
    message = str(error)
    found = _GLOBAL_NAME.search(message)
    if found:
        return f"it references {found.group(1)}"
    detail = message.rpartition("WeightsUnpickler error:")[2].strip()
    return detail.splitlines()[0] if detail else message.strip().splitlines()[0]


def load_checkpoint(path: Path, *, trust: bool, mmap: bool) -> object:
    """Load with ``weights_only=True``, and fall back to full unpickling only when ``trust`` is set."""
    _checked_head(path)
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        reason = _rejection_reason(error)
        if trust:
            logger.warning("unpickling %s fully because trust=True (%s)", path, reason)
            return _load_unrestricted(path, mmap=mmap)
        if _NEEDS_FULL_UNPICKLING.search(str(error)) or _pickle_imports_code(path):
            raise UntrustedPickleError(
                f"{str(path)!r} can only be loaded by full unpickling ({reason}), and unpickling "
                f"can run arbitrary code. If you trust the source of this file, {TRUST_HINT}"
            ) from error
        # Other rejections (an unknown opcode, a string too long) come from damaged data or from
        # pickle protocols above 2, which the restricted unpickler does not read.
        raise ModelFormatError(
            f"{str(path)!r} could not be read as a PyTorch pickle: the restricted unpickler "
            f"stopped at {reason!r}. The file may be corrupt or truncated. If it is a checkpoint "
            f"from a trusted source saved with pickle protocol 3 or later, {TRUST_HINT}"
        ) from error
    except (EOFError, RuntimeError, OSError, KeyError, IndexError, ValueError) as error:
        # A damaged pickle fails inside the unpickler with any of these.
        raise ModelFormatError(
            f"{str(path)!r} is not a readable torch.save file ({type(error).__name__}: "
            f"{str(error).strip() or 'unexpected end of data'}). The file may be truncated or corrupt."
        ) from error


# Opcodes that import a global or call one: a pickle without them cannot run code.
_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})


def _pickle_imports_code(path: Path) -> bool:
    """Return True when a plain (non-zip) file is a well-formed pickle that imports or calls code.

    pickletools only decodes opcodes and never executes them, so this is safe on any file. It
    tells a pickle written with protocol 3 or later that needs full unpickling (which torch's
    restricted unpickler rejects by opcode) apart from a damaged file.
    """
    import pickletools

    if zipfile.is_zipfile(path):
        return False
    found = False
    try:
        with path.open("rb") as handle:
            for opcode, _argument, _position in pickletools.genops(handle):
                found = found or opcode.name in _CODE_OPCODES
    except Exception:  # noqa: BLE001  (any decoding failure means the pickle is damaged)
        return False
    return found


def _load_unrestricted(path: Path, *, mmap: bool) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except ModuleNotFoundError as error:
        raise UnsupportedModelError(
            f"{str(path)!r} pickles objects from a module that is not installed ({error}). Install "
            "the package that defines the model class, then open the file again."
        ) from error
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ModelFormatError(
            f"full unpickling of {str(path)!r} failed ({type(error).__name__}: {error}). The file "
            "may be truncated or corrupt."
        ) from error
    except (AttributeError, TypeError, ValueError) as error:
        # AttributeError also covers a class that its module no longer defines ("Can't get attribute").
        raise UnsupportedModelError(
            f"full unpickling of {str(path)!r} failed: torch {torch.__version__} could not rebuild "
            f"the pickled objects ({type(error).__name__}: {error}). Save the model as a state_dict "
            "or with torch.jit.save instead."
        ) from error


def _checkpoint_details(path: Path, checkpoint: Mapping[Any, Any]) -> tuple[dict[str, str], InputSpec | None]:
    """Return a checkpoint's scalar entries (architecture, epoch, ...) as text, and its input spec."""
    metadata = {
        str(key): str(value)
        for key, value in checkpoint.items()
        if isinstance(value, (str, int, float, bool))
    }
    input_spec = input_spec_from_metadata(
        checkpoint.get(INPUT_METADATA_KEY), path=path, where=f"checkpoint key {INPUT_METADATA_KEY!r}"
    )
    return metadata, input_spec


def _read_loaded(path: Path, loaded: object) -> Model:
    import torch

    if isinstance(loaded, torch.nn.Module):
        return _module_model(path, loaded, checkpoint={})
    if not isinstance(loaded, Mapping):
        raise UnsupportedModelError(
            f"{str(path)!r} contains a {type(loaded).__name__}, but quantlens reads a state_dict "
            "(a dict of tensors), a checkpoint dict that contains one, or a pickled nn.Module"
        )
    for key in MODULE_KEYS:
        if isinstance(loaded.get(key), torch.nn.Module):
            return _module_model(path, loaded[key], checkpoint=loaded)
    return _state_dict_model(path, loaded)


def _module_model(path: Path, module: torch.nn.Module, *, checkpoint: Mapping[Any, Any]) -> Model:
    metadata, input_spec = _checkpoint_details(path, checkpoint)
    try:
        layers = layers_from_module(module, op_type_of=lambda m: type(m).__name__)
    except AttributeError as error:
        # torch 2.13 unpickles quantized conv modules without their submodule table (_modules),
        # so walking them fails.
        raise UnsupportedModelError(
            f"the module unpickled from {str(path)!r} is incomplete ({error}), because torch does "
            "not fully restore pickled quantized conv modules. Save the model with torch.jit.save "
            "or save its state_dict instead."
        ) from error
    return Model(path=path, format="torch-module", layers=layers, input_spec=input_spec, metadata=metadata)


def _is_tensor(value: object) -> bool:
    """Return True for a torch.Tensor or a StoredTensor, without importing torch."""
    if isinstance(value, StoredTensor):
        return True
    # A torch.Tensor can only exist once torch is imported, so an unimported torch means False.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_record(name: str, value: object) -> Tensor:
    if isinstance(value, StoredTensor):
        return Tensor(name=name, role=role_for_key(name), shape=value.shape, dtype=value.dtype, load_values=value.load)
    return tensor_record(name, value)  # type: ignore[arg-type]


def _has_tensors(value: object) -> bool:
    return isinstance(value, Mapping) and any(_is_tensor(v) for v in value.values())


def _find_state_dict(path: Path, checkpoint: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """Return the state_dict nested under a known key, else the checkpoint itself."""
    for key in STATE_DICT_KEYS:
        if _has_tensors(checkpoint.get(key)):
            ignored = [str(k) for k in checkpoint if k != key]
            logger.debug("%s: reading the state_dict under %r, ignoring keys %s", path, key, ignored)
            return checkpoint[key]
    return checkpoint


def _packed_layer_name(key: str) -> str | None:
    """Return the layer of a quantized Linear's packed (weight, bias) key, or None for other keys."""
    if key == PACKED_LINEAR_SUFFIX:
        return ""
    if key.endswith("." + PACKED_LINEAR_SUFFIX):
        return key.removesuffix("." + PACKED_LINEAR_SUFFIX)
    return None


def _packed_entries(path: Path, key: str, layer: str, value: object) -> list[tuple[str, torch.Tensor]]:
    import torch

    prefix = f"{layer}." if layer else ""
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], torch.Tensor)):
        raise UnsupportedModelError(
            f"{str(path)!r}: key {key!r} should contain a quantized Linear's (weight, bias) tuple, "
            f"but contains a {type(value).__name__}"
        )
    weight, bias = value
    entries = [(prefix + "weight", weight)]
    if isinstance(bias, torch.Tensor):
        entries.append((prefix + "bias", bias))
    return entries


def _state_dict_entries(path: Path, state: Mapping[Any, Any]) -> list[tuple[str, torch.Tensor | StoredTensor]]:
    """Return (name, tensor) pairs in file order, with packed Linear params split into weight and bias."""
    entries: list[tuple[str, torch.Tensor | StoredTensor]] = []
    for key, value in state.items():
        packed_layer = _packed_layer_name(key) if isinstance(key, str) else None
        if isinstance(key, str) and _is_tensor(value):
            entries.append((key, value))
        elif packed_layer is not None:
            entries.extend(_packed_entries(path, key, packed_layer, value))
        else:
            logger.debug(
                "%s: skipping key %r: its value is a %s, not a tensor", path, key, type(value).__name__
            )
    return entries


def _state_dict_model(path: Path, checkpoint: Mapping[Any, Any]) -> Model:
    state = _find_state_dict(path, checkpoint)
    entries = _state_dict_entries(path, state)
    if not entries:
        keys = ", ".join(repr(k) for k in list(checkpoint)[:10]) or "none"
        raise UnsupportedModelError(
            f"{str(path)!r} contains no tensors at the top level or under "
            f"{', '.join(STATE_DICT_KEYS)}. Its top-level keys: {keys}"
        )

    metadata, input_spec = _checkpoint_details(path, checkpoint)
    tensors = {name: _tensor_record(name, tensor) for name, tensor in entries}
    grouped = {
        layer: [tensors[name] for name in names] for layer, names in group_keys_by_layer(tensors).items()
    }
    layers, guessed = build_layers_by_key(grouped, architecture=checkpoint.get("architecture"))
    if guessed:
        metadata[OP_TYPES_KEY] = GUESSED_OP_TYPES
    return Model(
        path=path, format="torch-state-dict", layers=layers, input_spec=input_spec, metadata=metadata
    )


register(
    Reader(name="torch", extensions=(".pt", ".pth", ".bin", ".ckpt"), sniff=sniff_torch, load=load_torch)
)
register(
    Reader(name="safetensors", extensions=(".safetensors",), sniff=sniff_safetensors, load=load_safetensors)
)
