"""Which attention kernels PyTorch may pick when tokenwire serves on CUDA.

PyTorch prefers cuDNN's scaled-dot-product attention on Hopper GPUs. cuDNN builds an execution
plan for each exact shape, on the host, and a server never repeats a shape for long: every decode
step grows the key length by one, and every batch of one-shot requests pads to its own length.
So each step pays a plan build. On an H100 (torch 2.11, bf16 1B Llama) py-spy found the scheduler
thread inside `scaled_dot_product_attention` for 60-65 % of its time, at 60-80 ms per decode step
where the model needs about 16 (docs/benchmarks.md, "GPU"). The flash and memory-efficient
kernels have no per-shape plan; vLLM switches cuDNN attention off process-wide for the same
reason, and so does tokenwire. `TOKENWIRE_CUDNN_SDPA=1` leaves PyTorch's choice alone.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def configure_cuda_attention() -> bool:
    """Switch cuDNN SDPA off unless TOKENWIRE_CUDNN_SDPA=1; True when it was switched off."""
    if os.environ.get("TOKENWIRE_CUDNN_SDPA", "") == "1" or not torch.cuda.is_available():
        return False
    switch = getattr(torch.backends.cuda, "enable_cudnn_sdp", None)
    if switch is None:  # a torch without cuDNN attention: nothing to do
        return False
    switch(False)
    log.info("cuDNN attention off (per-shape plans stall decoding); TOKENWIRE_CUDNN_SDPA=1 keeps it")
    return True
