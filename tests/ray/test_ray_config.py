"""The registry's Ray keys: validated like every key (errors name model and key), and turned
into Serve deployment options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.config import ModelSpec, parse_config
from tokenwire.errors import ConfigError
from tokenwire.ray.app import deployment_options


def _parse(tmp_path: Path, **keys: object) -> list[str]:
    (tmp_path / "m").mkdir(exist_ok=True)
    try:
        parse_config({"models": [{"name": "m", "path": "m", **keys}]}, tmp_path)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"ray_replicas": 0}, "key 'ray_replicas': must be a positive integer, got 0"),
        ({"ray_num_cpus": 0}, "key 'ray_num_cpus': must be a number > 0, got 0"),
        ({"ray_num_gpus": -1}, "key 'ray_num_gpus': must be a number >= 0, got -1"),
        ({"ray_replicas": 2, "ray_min_replicas": 1, "ray_max_replicas": 3}, "key 'ray_replicas' excludes"),
        ({"ray_min_replicas": 1}, "key 'ray_min_replicas' needs 'ray_max_replicas'"),
        ({"ray_min_replicas": 4, "ray_max_replicas": 2}, "key 'ray_min_replicas' must be <= 'ray_max_replicas'"),
        ({"ray_replica": 2}, "did you mean 'ray_replicas'?"),
    ],
)
def test_bad_ray_keys_name_model_and_key(tmp_path: Path, keys: dict[str, object], expected: str) -> None:
    problems = _parse(tmp_path, **keys)
    assert any(expected in p and "model 'm'" in p for p in problems), problems


def test_deployment_options(tmp_path: Path) -> None:
    fixed = deployment_options(ModelSpec("m", "/x", ray_num_cpus=0.5, ray_num_gpus=1), replicas=3, grace_s=4)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 1}
    assert fixed["graceful_shutdown_timeout_s"] == 4
    own = deployment_options(ModelSpec("m", "/x", ray_replicas=2), replicas=3)
    assert own["num_replicas"] == 2  # the registry's count beats --replicas
    auto = deployment_options(ModelSpec("m", "/x", ray_min_replicas=1, ray_max_replicas=4))
    assert auto["autoscaling_config"]["min_replicas"] == 1 and auto["autoscaling_config"]["max_replicas"] == 4
    assert "num_replicas" not in auto
