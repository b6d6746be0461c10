"""tokenwire_gpu_memory_bytes reports allocated, reserved and peak memory per CUDA device
(read from torch at scrape time; faked here, the suite runs without a GPU)."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import generate_latest

from tokenwire.observability.metrics import REGISTRY


def test_every_device_reports_allocated_reserved_and_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 100 + i)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 200 + i)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: 300 + i)
    text = generate_latest(REGISTRY).decode()
    for device in (0, 1):
        for kind, base in (("allocated", 100), ("reserved", 200), ("peak_allocated", 300)):
            line = f'tokenwire_gpu_memory_bytes{{device="cuda:{device}",kind="{kind}"}} {float(base + device)}'
            assert line in text
