"""Format readers. ``open_model`` picks one by file content, then by extension."""

from quantlens.readers.registry import Reader, choose_reader, open_model, readers, register

__all__ = ["Reader", "choose_reader", "open_model", "readers", "register"]
