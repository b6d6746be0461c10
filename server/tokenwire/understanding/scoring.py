"""The functions that turn classifier logits into scores, by the names the protocol and the
checkpoints use ("softmax", "sigmoid", "none", and a cross-encoder's "tanh"). Float32, on the
model thread, as transformers' pipelines and sentence-transformers compute them."""

from __future__ import annotations

from collections.abc import Callable

import torch

SCORE_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda logits: logits.float().softmax(dim=-1),
    "sigmoid": lambda logits: logits.float().sigmoid(),
    "none": lambda logits: logits.float(),
    "tanh": lambda logits: logits.float().tanh(),
}
