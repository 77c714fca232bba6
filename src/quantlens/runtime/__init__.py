"""Inference sessions: run any supported model file on adapted input."""

from quantlens.runtime.session import Session, open_session

__all__ = ["Session", "open_session"]
