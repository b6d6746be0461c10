"""When two runs of a model's forward agree: the KV pool's probe against the model's own
forward, a captured CUDA graph against its eager step. Different kernels round differently, so
the check is relative to the largest |logit|, with a tolerance set by the arithmetic's dtype."""

from __future__ import annotations

import torch


def tolerance(dtype: torch.dtype) -> float:
    """float32 agrees to ~1e-6 of the scale; bf16/fp16 keep 8-11 mantissa bits."""
    return 1e-4 if dtype == torch.float32 else 3e-2


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.float().cpu(), want.float().cpu()
    return float((got - want).abs().max()) / (float(want.abs().max()) + 1e-6)
