"""The application as an import path, for Serve config files and KubeRay's RayService
(`import_path: tokenwire.ray.serve_config:app`): the registry file is `$TOKENWIRE_CONFIG`.

The gRPC options of that config must be `tokenwire.ray.app.grpc_options()`'s (docs/ray.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import load_config
from .app import build_app

app: Any = build_app(load_config(Path(os.environ.get("TOKENWIRE_CONFIG", "models.toml"))))
