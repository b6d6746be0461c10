"""What a generative model's decode path is, as GetModelInfo and the metrics report it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DecodeInfo:
    decode_path: str
    """"kv_pool": the engine's own KV pool and tokenwire attention; "dynamic_cache": the
    fallback through transformers' DynamicCache (left-padded batch), for what the pool cannot
    serve (see `fallback_reason`)."""
    attention_backend: str
    """The attention kernel the pool path calls (e.g. "sdpa"); "transformers:<impl>" on the
    fallback path (the model's own attention implementation)."""
    fallback_reason: str = ""
    """Why the pool is not used; empty on the pool path."""
    kv_capacity_tokens: int = 0
    """Tokens the KV pool holds, all rows together (0 on the fallback path: unbounded)."""
    kv_slots: int = 0
    """Rows the pool holds (each up to `kv_slot_tokens`)."""
    kv_slot_tokens: int = 0
    """Tokens one row may hold: prompt + generated."""
    kv_bytes_per_device: dict[str, int] = field(default_factory=dict)
    """Device label ("cpu", "cuda:0") → bytes the pool allocated there."""
    cuda_graphs: bool = False
    cuda_graph_batch_sizes: tuple[int, ...] = ()
    cuda_graphs_reason: str = ""
    """Why decode steps are not CUDA graphs on a pool path that could have them (logged too)."""
