"""tokenwire attention: transformers' attention modules reading and writing the KV pool.

Registered with transformers' `AttentionInterface` under the name "tokenwire" and selected with
`model.set_attn_implementation("tokenwire")` (transformers' own continuous batching and TGI's
transformers backend plug in the same way). For an implementation name transformers does not
know, it builds no attention mask, and a keyword given to `model(...)` reaches the attention
function: the step's batch metadata travels as `tokenwire_batch=StepBatch(...)`. The model runs
with `use_cache=False`: the pool is the only cache.

Three kinds of step, each with its own metadata (per-row positions, never left padding):

  prefill  prompts packed into one row [1, T] (no padding tokens through the linear layers);
           attention unpacks them to a right-padded [prompts, width] batch and runs causal
           SDPA on it (a real token never sees a pad to its right), and writes each token's
           K/V to (its row's slot, its position);
  chunk    one long prompt's next chunk, on top of what earlier chunks wrote to its slot;
  decode   one token per row: write at each row's length, then attend over the first `rows`
           slots of the pool in place, with a mask only when the rows' lengths differ.

Grouped-query attention at decode views the query heads of one KV head as that head's query
positions ([rows, kv_heads, group, head_dim] against [rows, kv_heads, length, head_dim]), so no
K/V is repeated and every SDPA kernel (masked or not) applies.

Modules that are not a pooled decoder self-attention (a vision tower's, say) get transformers'
own SDPA attention. Features the pool does not implement (sliding windows, logit soft-capping,
attention sinks) raise `PoolUnsupported`; the load-time probe (pool_probe.py) then sends the
model down the fallback path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .kv_pool import KVPool

NAME = "tokenwire"
BATCH_KEYWORD = "tokenwire_batch"
# Keyword arguments that change what attention computes; the pool path does not implement them.
_UNSUPPORTED = ("sliding_window", "softcap", "s_aux", "sinks")


class PoolUnsupported(RuntimeError):
    """The model's attention needs something the pool path does not do."""


@dataclass
class StepBatch:
    """One forward's metadata. Built on the host once per step; per-device copies on demand."""

    pool: KVPool
    layer_of: dict[int, int]
    """id(attention module) → pool layer."""
    kind: str
    """"prefill", "chunk" or "decode"."""
    rows: int = 0
    positions: list[int] = field(default_factory=list)
    """decode: each row's write position (= its length before this token)."""
    lengths: list[int] = field(default_factory=list)
    """prefill: each prompt's length; chunk: [chunk length]."""
    slots: list[int] = field(default_factory=list)
    """prefill / chunk: each prompt's slot."""
    start: int = 0
    """chunk: the position of its first token."""
    _on: dict[torch.device, dict[str, Any]] = field(default_factory=dict)

    def on(self, device: torch.device) -> dict[str, Any]:
        cached = self._on.get(device)
        if cached is None:
            cached = self._on[device] = _BUILDERS[self.kind](self, device)
        return cached


def _decode_meta(b: StepBatch, device: torch.device) -> dict[str, Any]:
    positions = torch.tensor(b.positions, dtype=torch.long, device=device)
    length = max(b.positions) + 1
    mask = None
    if min(b.positions) != max(b.positions):
        mask = (torch.arange(length, device=device) <= positions[:, None])[:, None, None, :]
    return {"rows": torch.arange(b.rows, device=device), "positions": positions, "length": length, "mask": mask}


def _prefill_meta(b: StepBatch, device: torch.device) -> dict[str, Any]:
    width = max(b.lengths)
    token_slots: list[int] = []
    token_pos: list[int] = []
    unpack: list[int] = []  # right-padded [prompts × width] ← packed token index
    pack: list[int] = []  # packed token ← right-padded index
    offset = 0
    for p, (slot, n) in enumerate(zip(b.slots, b.lengths, strict=True)):
        token_slots += [slot] * n
        token_pos += range(n)
        unpack += range(offset, offset + n)
        unpack += [offset] * (width - n)  # pads repeat a real token: causal attention never reads them
        pack += range(p * width, p * width + n)
        offset += n

    def t(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return {
        "slots": t(token_slots),
        "positions": t(token_pos),
        "unpack": t(unpack),
        "pack": t(pack),
        "prompts": len(b.lengths),
        "width": width,
    }


def _chunk_meta(b: StepBatch, device: torch.device) -> dict[str, Any]:
    n, end = b.lengths[0], b.start + b.lengths[0]
    # Query i (position start + i) sees keys 0 .. start + i.
    mask = torch.arange(end, device=device)[None, :] <= torch.arange(b.start, end, device=device)[:, None]
    return {"slot": b.slots[0], "start": b.start, "end": end, "mask": mask[None, None], "tokens": n}


_BUILDERS: dict[str, Callable[[StepBatch, torch.device], dict[str, Any]]] = {
    "decode": _decode_meta,
    "prefill": _prefill_meta,
    "chunk": _chunk_meta,
}


def _check(kwargs: dict[str, Any]) -> None:
    for name in _UNSUPPORTED:
        if kwargs.get(name) is not None:
            raise PoolUnsupported(f"attention with {name}={kwargs[name]!r}")


def tokenwire_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query [B, heads, q_len, D] (after rotary), key/value [B, kv_heads, q_len, D] → output
    [B, q_len, heads, D], as transformers' attention functions return it."""
    batch: StepBatch | None = kwargs.get(BATCH_KEYWORD)
    layer = batch.layer_of.get(id(module)) if batch is not None else None
    if batch is None or layer is None:
        out: tuple[torch.Tensor, None] = _transformers_sdpa(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
        return out
    _check(kwargs)
    meta = batch.on(query.device)
    k_pool, v_pool = batch.pool.keys[layer], batch.pool.values[layer]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    return _STEPS[batch.kind](meta, query, key, value, k_pool, v_pool, scaling), None


def _decode(
    meta: dict[str, Any],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    rows, positions = meta["rows"], meta["positions"]
    k_pool[rows, positions] = key[:, :, 0].to(k_pool.dtype)
    v_pool[rows, positions] = value[:, :, 0].to(v_pool.dtype)
    b, heads, _, d = query.shape
    kv_heads = k_pool.shape[2]
    keys = k_pool[:b, : meta["length"]].transpose(1, 2)  # [B, kv_heads, L, D], a view
    values = v_pool[:b, : meta["length"]].transpose(1, 2)
    grouped = query.reshape(b, kv_heads, heads // kv_heads, d)  # a group's heads as query positions
    out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=meta["mask"], scale=scaling)
    return out.reshape(b, 1, heads, d)


def _prefill(
    meta: dict[str, Any],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    # query [1, heads, T, D]: every prompt's tokens, packed.
    k_tokens, v_tokens = key[0].transpose(0, 1), value[0].transpose(0, 1)  # [T, kv_heads, D]
    k_pool[meta["slots"], meta["positions"]] = k_tokens.to(k_pool.dtype)
    v_pool[meta["slots"], meta["positions"]] = v_tokens.to(v_pool.dtype)
    heads, d = query.shape[1], query.shape[3]
    if meta["prompts"] == 1:
        out = _causal(query, key, value, scaling)
        return out.transpose(1, 2)
    p, w = meta["prompts"], meta["width"]

    def unpack(x: torch.Tensor) -> torch.Tensor:  # [1, h, T, D] → [prompts, h, width, D]
        h = x.shape[1]
        return x[0].index_select(1, meta["unpack"]).view(h, p, w, d).transpose(0, 1)

    out = _causal(unpack(query), unpack(key), unpack(value), scaling)  # [prompts, heads, width, D]
    out = out.transpose(1, 2).reshape(p * w, heads, d).index_select(0, meta["pack"])
    return out.unsqueeze(0)


def _chunk(
    meta: dict[str, Any],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    slot, start, end = meta["slot"], meta["start"], meta["end"]
    k_pool[slot, start:end] = key[0].transpose(0, 1).to(k_pool.dtype)
    v_pool[slot, start:end] = value[0].transpose(0, 1).to(v_pool.dtype)
    keys = k_pool[slot : slot + 1, :end].transpose(1, 2)
    values = v_pool[slot : slot + 1, :end].transpose(1, 2)
    group = query.shape[1] // keys.shape[1]
    if group > 1:  # a mask rules out the fused GQA kernels: repeat K/V (chunks are rare)
        keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=meta["mask"], scale=scaling)
    return out.transpose(1, 2)


def _causal(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
    group = query.shape[1] // key.shape[1]
    return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling, enable_gqa=group > 1)


_STEPS = {"decode": _decode, "prefill": _prefill, "chunk": _chunk}


def _transformers_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop(BATCH_KEYWORD, None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register() -> None:
    """Make "tokenwire" an attention implementation transformers can select (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, tokenwire_attention)


def kernel_name() -> str:
    """What GetModelInfo reports as the attention backend of the pool path."""
    return "sdpa"
