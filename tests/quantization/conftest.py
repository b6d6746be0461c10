"""Fixtures for the quantization and placement tests: every demo model loaded quantized with each
scheme, and an in-process server serving them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import InProcessServer
from quant_support import SCHEMES, quantized_name
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.models.demo import DEMO_MODEL_NAMES


@pytest.fixture(scope="session")
def quantized_server(demo_models_dir: Path) -> Iterator[InProcessServer]:
    specs = tuple(
        ModelSpec(
            name=quantized_name(m, s),
            path=str(demo_models_dir / m),
            quantization=s,
            max_new_tokens=64,
            max_batch_size=8,
        )
        for m in DEMO_MODEL_NAMES
        for s in SCHEMES
    )
    with InProcessServer(Config(models=specs)) as server:
        yield server


@pytest.fixture()
def qclient(quantized_server: InProcessServer) -> Iterator[Client]:
    with Client(quantized_server.target) as c:
        yield c
