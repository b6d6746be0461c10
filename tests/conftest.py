"""Shared fixtures: the demo models (built once per session) and an in-process server on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.demo_config import demo_config


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenwire.models.demo import DEMO_MODEL_NAMES, build_demo_models

    root = tmp_path_factory.mktemp("demo-models")
    build_demo_models(root, DEMO_MODEL_NAMES)
    return root


@pytest.fixture(scope="session")
def demo_server(demo_models_dir: Path) -> Iterator[InProcessServer]:
    with InProcessServer(demo_config(demo_models_dir)) as server:
        yield server


@pytest.fixture()
def client(demo_server: InProcessServer) -> Iterator[Client]:
    with Client(demo_server.target) as c:
        yield c
