"""`serve --demo`: build the tiny demo models into a cache directory and register them all."""

from __future__ import annotations

import os
from pathlib import Path

from .config import Config, ModelSpec, ServerSpec


def default_cache_dir() -> Path:
    """$TOKENWIRE_CACHE, else $XDG_CACHE_HOME/tokenwire, else ~/.cache/tokenwire."""
    if env := os.environ.get("TOKENWIRE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tokenwire"


def demo_config(models_dir: Path | None = None, server: ServerSpec | None = None) -> Config:
    """A Config serving every demo model, building missing ones first (seconds, once)."""
    from .models.demo import DEMO_MODEL_NAMES, build_demo_models

    root = models_dir or default_cache_dir() / "demo-models"
    paths = build_demo_models(root, DEMO_MODEL_NAMES)
    # The demo models are tiny and fast: let a request use their whole context window.
    specs = tuple(
        ModelSpec(name=name, path=str(paths[name].resolve()), max_new_tokens=2048) for name in DEMO_MODEL_NAMES
    )
    return Config(server=server or ServerSpec(), models=specs)
