"""tokenwire: a gRPC model server for transformer models.

Importing the package is cheap: torch, transformers and gRPC load only where they are used
(`tokenwire.app`, `tokenwire.models`), so `tokenwire --help` and the client stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
