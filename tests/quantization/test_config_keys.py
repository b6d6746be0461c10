"""The registry keys placement adds: kv_cache_reserve and offload_folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.config import parse_config
from tokenwire.errors import ConfigError


def _model(tmp_path: Path, **keys: object) -> dict[str, object]:
    return {"models": [{"name": "m", "path": str(tmp_path), **keys}]}


def test_kv_cache_reserve(tmp_path: Path) -> None:
    assert parse_config(_model(tmp_path), tmp_path).models[0].kv_cache_reserve is None
    assert parse_config(_model(tmp_path, kv_cache_reserve="auto"), tmp_path).models[0].kv_cache_reserve is None
    assert parse_config(_model(tmp_path, kv_cache_reserve="8GiB"), tmp_path).models[0].kv_cache_reserve == 8 * 2**30
    assert parse_config(_model(tmp_path, kv_cache_reserve=0), tmp_path).models[0].kv_cache_reserve == 0
    for bad in ("lots", -1, True):
        with pytest.raises(
            ConfigError, match=r"model 'm' \(models\[0\]\), key 'kv_cache_reserve': must be \"auto\", 0 or a size"
        ):
            parse_config(_model(tmp_path, kv_cache_reserve=bad), tmp_path)


def test_offload_folder_is_relative_to_the_registry_file(tmp_path: Path) -> None:
    spec = parse_config(_model(tmp_path, offload_folder="offload"), tmp_path).models[0]
    assert spec.offload_folder == str((tmp_path / "offload").resolve())
    assert parse_config(_model(tmp_path, offload_folder="/abs/dir"), tmp_path).models[0].offload_folder == "/abs/dir"
    with pytest.raises(ConfigError, match="key 'offload_folder': must be a directory path"):
        parse_config(_model(tmp_path, offload_folder=3), tmp_path)
