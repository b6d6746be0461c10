"""The server switches cuDNN attention off on CUDA (per-shape plans stall decoding), unless told not to."""

from __future__ import annotations

import pytest
import torch

from tokenwire.models import cuda_attention


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", seen.append, raising=False)
    monkeypatch.delenv("TOKENWIRE_CUDNN_SDPA", raising=False)
    return seen


def test_switched_off_on_cuda(calls: list[bool]) -> None:
    assert cuda_attention.configure_cuda_attention() is True
    assert calls == [False]


def test_env_keeps_pytorch_choice(calls: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWIRE_CUDNN_SDPA", "1")
    assert cuda_attention.configure_cuda_attention() is False
    assert calls == []


def test_nothing_without_cuda(calls: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_attention.configure_cuda_attention() is False
    assert calls == []
