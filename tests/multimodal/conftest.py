"""Fixtures for the Multimodal tests (helpers live in mm_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm_helpers import ClipReference, LlavaReference


@pytest.fixture(scope="session")
def llava_ref(demo_models_dir: Path) -> LlavaReference:
    return LlavaReference(demo_models_dir / "tiny-llava")


@pytest.fixture(scope="session")
def clip_ref(demo_models_dir: Path) -> ClipReference:
    return ClipReference(demo_models_dir / "tiny-clip")
