"""The one error loading raises (its own module so that loader, quantization and placement can
all raise it without importing each other)."""

from __future__ import annotations


class ModelLoadError(Exception):
    """Loading failed for a reason the operator can fix; the message names the model, the
    registry key and what to change. The registry marks the model FAILED with it."""
