"""Forward passes of a causal LM over transformers' DynamicCache (the fallback path,
kv_backend.DynamicBackend): batched left-padded prefill and one-token decode. `HostLogits` is
shared with the pool path.

Logits leave here as float32 [rows, vocab] on the host, ready for the C++ core: on CUDA they are
copied into a reusable pinned buffer (one async copy, one sync), never row by row.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from .kv_cache import BatchKV

MIN_PINNED_ROWS = 8
"""The pinned logits buffer starts this large, so a batch growing row by row does not
reallocate it at every join."""


def execution_device(model: torch.nn.Module) -> torch.device:
    """Where inputs go: accelerate's execution device when the model is dispatched (its first
    parameters may sit on "meta" when offloaded to disk), else the first parameter's device."""
    hook = getattr(model, "_hf_hook", None)
    if hook is not None and getattr(hook, "execution_device", None) is not None:
        return torch.device(hook.execution_device)
    for device in (getattr(model, "hf_device_map", None) or {}).values():
        if device not in ("disk", "meta"):
            return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    for parameter in model.parameters():
        if parameter.device.type != "meta":
            return parameter.device
    return torch.device("cpu")


class CausalLMRunner:
    def __init__(self, model: torch.nn.Module, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.device = execution_device(model)
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed the keyword; the GPU machine still has 5.17.
        self._cache_kw = "cache" if "cache" in params and "past_key_values" not in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self._accepts_positions = "position_ids" in params
        self._host = HostLogits()

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], extra: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, BatchKV]:
        """Left-padded batched prompts → last-position logits [len(prompts), vocab] and their KV.
        `extra`: further forward inputs of these prompts (e.g. `pixel_values`), moved to the
        model's device."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": True}
        if self._accepts_positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        for key, value in (extra or {}).items():
            kwargs[key] = value.to(self.device) if isinstance(value, torch.Tensor) else value
        out = self.model(**kwargs)
        return self._host(out.logits[:, -1, :]), BatchKV(out.past_key_values, mask)

    @torch.inference_mode()
    def prefill_chunk(self, chunk: list[int], cache: Any, start: int, last: bool) -> tuple[torch.Tensor | None, Any]:
        """One chunk of one long prompt: tokens [start, start + len(chunk)) on top of `cache`
        (None for the first chunk). Returns the cache, and the last position's logits when
        `last` (earlier chunks need none). One row, never padded: no attention mask."""
        ids = torch.tensor([chunk], dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": True}
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if self._accepts_positions:
            kwargs["position_ids"] = torch.arange(start, start + len(chunk), device=self.device).unsqueeze(0)
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return (self._host(out.logits[:, -1, :]) if last else None), out.past_key_values

    @torch.inference_mode()
    def decode(self, batch: BatchKV, tokens: torch.Tensor) -> torch.Tensor:
        """One token per row → next logits [rows, vocab]."""
        mask, positions = batch.advance()
        kwargs: dict[str, Any] = {
            "input_ids": tokens.view(-1, 1).to(self.device),
            # No padding anywhere (always so for one row): no mask, which spares the model
            # building one per step and lets attention use its mask-free kernels.
            "attention_mask": mask,
            self._cache_kw: batch.cache,
            "use_cache": True,
        }
        if self._accepts_positions:
            kwargs["position_ids"] = positions
        out = self.model(**kwargs)
        batch.cache = out.past_key_values
        return self._host(out.logits[:, -1, :])


class HostLogits:
    """Logits → float32 on the host for the C++ core: on CUDA one async copy into a reusable
    pinned buffer and one sync, never row by row. On CUDA the result is a view of that buffer:
    valid until the next call (the scheduler consumes each step's logits before the next
    forward; anything keeping them longer must clone them)."""

    def __init__(self) -> None:
        self._pinned: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.device.type != "cuda":
            return logits.float()
        rows, vocab = logits.shape
        if self._pinned is None or self._pinned.shape[0] < rows or self._pinned.shape[1] != vocab:
            self._pinned = torch.empty((max(rows, MIN_PINNED_ROWS), vocab), dtype=torch.float32, pin_memory=True)
        host = self._pinned[:rows]
        host.copy_(logits.float(), non_blocking=True)
        torch.cuda.current_stream(logits.device).synchronize()
        return host
