"""PyTorch inference sessions: TorchScript archives, quantlens checkpoints and trusted modules."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from quantlens.adapter import PROBE_SHAPES, InputAdapter, adapter_from_spec, guess_layout
from quantlens.errors import CaptureError, InputError, ModelFormatError
from quantlens.readers.torch_reader import load_checkpoint
from quantlens.records import INPUT_METADATA_KEY, InputSpec
from quantlens.runtime.session import Session

logger = logging.getLogger(__name__)


class TorchSession(Session):
    """An ``nn.Module`` or TorchScript module run in eval mode under ``no_grad`` on one device."""

    def __init__(
        self,
        path: Path,
        module: object,
        *,
        format: str,
        spec: InputSpec | None,
        device: str = "cpu",
        layout: str | None = None,
    ) -> None:
        import torch

        self.path = path
        self.format = format
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()  # type: ignore[attr-defined]
        self.adapter = adapter_from_spec(spec) if spec is not None else self._probe(layout)

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(inputs)).to(self.device)
        try:
            with torch.no_grad():
                output = self.module(tensor)  # type: ignore[operator]
        except Exception as exc:  # any error raised inside the user's forward()
            raise CaptureError(
                f"{self.path.name} failed on input of shape {tuple(inputs.shape)} ({self.adapter.describe()}): "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}. "
                "Set the input with --layout/--scaling if the layout is wrong."
            ) from exc
        outputs = []
        for value in _flatten_tensors(output):
            value = value.dequantize() if value.is_quantized else value
            outputs.append(value.detach().cpu().numpy())
        return outputs

    def _probe(self, layout: str | None) -> InputAdapter:
        """Try the usual image shapes and keep the first the model accepts."""
        import torch

        candidates = [s for s in PROBE_SHAPES if layout is None or guess_layout(s) == layout.upper()]
        for shape in candidates:
            try:
                with torch.no_grad():
                    self.module(torch.zeros(shape, device=self.device))  # type: ignore[operator]
            except Exception:  # noqa: BLE001  (a rejected shape raises anything from the forward)
                continue
            spec = InputSpec(name=None, layout=guess_layout(shape), shape=(None, *shape[1:]),
                             dtype="float32", source="probe")
            adapter = adapter_from_spec(spec)
            logger.warning("%s records no input shape; probing chose %s", self.path.name, adapter.describe())
            return adapter
        tried = ", ".join("x".join(map(str, s)) for s in candidates)
        raise InputError(
            f"{self.path.name} records no input shape and accepted none of the probed shapes ({tried}); "
            "pass --layout and an input of the right size"
        )


def _flatten_tensors(output: object) -> list:
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flatten_tensors(item)]
    if isinstance(output, dict):
        return [t for key in output for t in _flatten_tensors(output[key])]
    return []


def is_torchscript(path: Path) -> bool:
    """True when ``path`` is a zip archive with TorchScript code entries."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_torch_session(path: Path, *, trust: bool, layout: str | None = None, device: str = "cpu") -> TorchSession:
    """Load a runnable PyTorch file: TorchScript, a quantlens checkpoint, or (trusted) a module."""
    import torch

    if is_torchscript(path):
        extra = {f"{INPUT_METADATA_KEY}.json": ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as exc:
            raise ModelFormatError(f"cannot load TorchScript archive {str(path)!r}: {exc}") from exc
        text = extra[f"{INPUT_METADATA_KEY}.json"]
        spec = InputSpec.from_metadata(json.loads(text), source="metadata") if text else None
        return TorchSession(path, module, format="torchscript", spec=spec, device=device, layout=layout)
    checkpoint = load_checkpoint(path, trust=trust, mmap=False)
    if isinstance(checkpoint, torch.nn.Module):
        return TorchSession(path, checkpoint, format="torch-module", spec=None, device=device, layout=layout)
    if isinstance(checkpoint, dict):
        for key in ("model", "module", "net"):
            if isinstance(checkpoint.get(key), torch.nn.Module):
                return TorchSession(path, checkpoint[key], format="torch-module", spec=None, device=device, layout=layout)
        architecture = checkpoint.get("architecture")
        if isinstance(architecture, str):
            return _session_from_architecture(path, checkpoint, architecture, device=device, layout=layout)
    raise CaptureError(
        f"{str(path)!r} contains only weights (a state_dict with no architecture), so quantlens cannot "
        "run it; its weights can still be inspected. Save the model with torch.jit.save, or as a "
        "full module (then pass --trust)."
    )


def _session_from_architecture(
    path: Path, checkpoint: dict, architecture: str, *, device: str, layout: str | None
) -> TorchSession:
    from quantlens.zoo import architectures

    known = architectures()
    if architecture not in known:
        raise CaptureError(
            f"{str(path)!r} names architecture {architecture!r}, which quantlens does not know "
            f"(known: {', '.join(known)})"
        )
    module = known[architecture]()
    module.load_state_dict(checkpoint["state_dict"])
    metadata = checkpoint.get(INPUT_METADATA_KEY)
    spec = InputSpec.from_metadata(metadata, source="metadata") if isinstance(metadata, dict) else None
    return TorchSession(path, module, format="torch-state-dict", spec=spec, device=device, layout=layout)
