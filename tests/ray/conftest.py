"""A real two-node Ray cluster (head + one worker, `ray.cluster_utils.Cluster`) and
`tokenwire ray serve --address …` deployed on it, once per session; a plain in-process server
on the same registry to compare with.

Ray is an optional extra, but `make` installs it: these tests fail (never skip) without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import InProcessServer, ServeProcess, wait_serving
from ray_cluster import REGISTRY, RayDeployment, free_port, ray_processes
from tokenwire.client import Client
from tokenwire.config import load_config
from tokenwire.ray.cli import SERVE_ENV

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError:  # pragma: no cover - the message is the point
    ray = None


@pytest.fixture(scope="session")
def ray_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenwire.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("ray-models")
    paths = build_demo_models(root / "models", ["tiny-llama", "tiny-bert"])
    registry = root / "registry.toml"
    registry.write_text(REGISTRY.format(llama=paths["tiny-llama"], bert=paths["tiny-bert"]))
    return registry


@pytest.fixture(scope="session")
def ray_app(ray_models: Path) -> Iterator[RayDeployment]:
    if ray is None:
        pytest.fail(
            "tests/ray need Ray Serve, which `make install` installs (requirements/dev.txt: ray[serve]==2.60.0); "
            "or pip install '.[ray]'",
            pytrace=False,
        )
    preexisting = ray_processes()
    for key, value in SERVE_ENV.items():  # as docs/ray.md says to start a cluster
        os.environ.setdefault(key, value)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    port = free_port()
    process = ServeProcess(
        "--config", str(ray_models), "--address", cluster.address,
        "--http-port", str(free_port()), "--proxy-location", "HeadOnly",
    )  # fmt: skip
    process.args[1:4] = ["ray", "serve", "--port", str(port)]  # `tokenwire ray serve`, not `serve`
    deployment = RayDeployment(cluster, process, port, preexisting)
    try:
        process.start(timeout=240)
        with Client(deployment.target) as c:
            wait_serving(c, "", timeout=60)
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def plain_server(ray_models: Path) -> Iterator[InProcessServer]:
    """The same registry served by one plain `TokenwireServer`."""
    with InProcessServer(load_config(ray_models)) as server:
        yield server


@pytest.fixture()
def ray_client(ray_app: RayDeployment) -> Iterator[Client]:
    with Client(ray_app.target) as c:
        yield c


@pytest.fixture()
def plain_client(plain_server: InProcessServer) -> Iterator[Client]:
    with Client(plain_server.target) as c:
        yield c
