"""The exceptions quantlens raises. Each message names the file, tensor or value and the fix."""

from __future__ import annotations


class QuantlensError(Exception):
    """Base class of every error quantlens raises on purpose."""


class ModelNotFoundError(QuantlensError, FileNotFoundError):
    """A model path that does not exist and is not a bundled model name."""


class ModelFormatError(QuantlensError, ValueError):
    """A model file that no reader recognizes, or that is corrupt or truncated."""


class UnsupportedModelError(QuantlensError, ValueError):
    """A model file that is valid but contains something quantlens cannot read yet."""


class UntrustedPickleError(QuantlensError, PermissionError):
    """A file that can only be loaded by full unpickling, which was not allowed."""


class MissingDependencyError(QuantlensError, ImportError):
    """An optional package needed for this file or feature is not installed."""


class LayerNotFoundError(QuantlensError, KeyError):
    """A layer or tensor name that the model does not contain."""

    def __str__(self) -> str:
        # KeyError would otherwise print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


class QuantizationError(QuantlensError, ValueError):
    """Quantization parameters that cannot be valid (zero or negative scale, shape mismatch)."""


class DatasetError(QuantlensError, ValueError):
    """A dataset folder or file that exists but is corrupt or has the wrong layout."""


class DatasetNotFoundError(QuantlensError, FileNotFoundError):
    """A dataset folder that does not exist or contains no known layout."""


class InputError(QuantlensError, ValueError):
    """An input specification or input file that cannot be fed to the model."""


class CaptureError(QuantlensError, RuntimeError):
    """Running the model to capture activations failed."""


class DownloadError(QuantlensError, ConnectionError):
    """A download that failed: network error, HTTP error or a checksum mismatch."""


class ComparisonError(QuantlensError, ValueError):
    """Two models or tensors that cannot be compared: shape mismatch, bad layer mapping."""
