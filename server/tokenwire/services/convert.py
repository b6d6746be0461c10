"""Domain ↔ protobuf conversions shared by the servicers (tables, not branches)."""

from __future__ import annotations

from ..engine.decode_info import DecodeInfo
from ..models.registry import ModelEntry, ModelState
from ..tasks import Task
from ..v1 import models_pb2

TASK_TO_PB: dict[Task, models_pb2.Task] = {
    Task.GENERATE: models_pb2.TASK_GENERATE,
    Task.FILL_MASK: models_pb2.TASK_FILL_MASK,
    Task.NEXT_SENTENCE: models_pb2.TASK_NEXT_SENTENCE,
    Task.ANSWER_QUESTION: models_pb2.TASK_ANSWER_QUESTION,
    Task.MULTIMODAL_CHAT: models_pb2.TASK_MULTIMODAL_CHAT,
    Task.CLASSIFY_IMAGE: models_pb2.TASK_CLASSIFY_IMAGE,
    Task.EMBED: models_pb2.TASK_EMBED,
    Task.CLASSIFY_TEXT: models_pb2.TASK_CLASSIFY_TEXT,
    Task.CLASSIFY_TOKENS: models_pb2.TASK_CLASSIFY_TOKENS,
    Task.EMBED_TEXT: models_pb2.TASK_EMBED_TEXT,
    Task.RERANK: models_pb2.TASK_RERANK,
}
PB_TO_TASK: dict[int, Task] = {v: k for k, v in TASK_TO_PB.items()}
STATE_TO_PB: dict[ModelState, models_pb2.ModelState] = {
    ModelState.LOADING: models_pb2.MODEL_STATE_LOADING,
    ModelState.READY: models_pb2.MODEL_STATE_READY,
    ModelState.FAILED: models_pb2.MODEL_STATE_FAILED,
}
# ModelInfo's optional single-id fields, by the loader's special-token name.
_SPECIAL_ID_FIELDS = {
    "bos": "bos_token_id",
    "pad": "pad_token_id",
    "unk": "unk_token_id",
    "mask": "mask_token_id",
    "sep": "sep_token_id",
    "cls": "cls_token_id",
}


def model_info(entry: ModelEntry, decode: DecodeInfo | None = None) -> models_pb2.ModelInfo:
    """Everything GetModelInfo reports; load-time facts only once the model is READY, the
    decode path (`decode`, from Engines.decode_info) only for a READY generative model."""
    spec = entry.spec
    info = models_pb2.ModelInfo(
        name=spec.name,
        tasks=[TASK_TO_PB[t] for t in entry.tasks],
        architecture=entry.architecture,
        source=spec.path,
        quantization=spec.quantization,
        state=STATE_TO_PB[entry.state],
        error=entry.error,
        max_new_tokens=spec.max_new_tokens,
        max_batch_size=spec.max_batch_size,
    )
    loaded = entry.loaded
    if loaded is None:
        return info
    info.dtype = loaded.dtype
    info.device_map.update(loaded.device_map)
    info.max_input_tokens = loaded.max_input_tokens
    info.max_total_tokens = loaded.max_total_tokens
    info.vocab_size = loaded.vocab_size
    info.memory_footprint_bytes = loaded.memory_bytes
    info.quantization = loaded.quantization
    info.placement = loaded.placement
    info.memory_per_device.update(loaded.memory_per_device)
    info.reserved_memory_per_device.update(loaded.reserved_per_device)
    info.unquantized_modules.extend(loaded.unquantized_modules)
    if loaded.reservation is not None and loaded.reservation.kv_layers:
        info.kv_cache_reserved_bytes = loaded.reservation.kv_total
        info.kv_cache_context_tokens = loaded.reservation.context
    info.embedding_dimensions = (
        int(getattr(loaded.config, "projection_dim", 0) or 0)
        if {Task.EMBED, Task.CLASSIFY_IMAGE} & set(loaded.tasks)
        else loaded.encoder.embedding_dimensions
    )
    info.labels.extend(loaded.encoder.labels)
    info.pooling = loaded.encoder.pooling
    ids = loaded.special_token_ids
    for name, field in _SPECIAL_ID_FIELDS.items():
        if name in ids:
            setattr(info, field, ids[name][0])
    info.eos_token_ids.extend(ids.get("eos", []))
    info.special_tokens.update(loaded.special_tokens)
    if decode is not None and entry.state is ModelState.READY:
        fill_decode_info(info, decode)
    return info


def fill_decode_info(info: models_pb2.ModelInfo, decode: DecodeInfo) -> None:
    """ModelInfo's decode-path fields from a generative model's DecodeInfo."""
    info.decode_path = decode.decode_path
    info.decode_path_reason = decode.fallback_reason
    info.attention_backend = decode.attention_backend
    info.cuda_graphs.enabled = decode.cuda_graphs
    info.cuda_graphs.batch_sizes.extend(decode.cuda_graph_batch_sizes)
    info.kv_cache_capacity_tokens = decode.kv_capacity_tokens
    info.kv_cache_slots = decode.kv_slots
    info.kv_cache_slot_tokens = decode.kv_slot_tokens
    info.kv_cache_bytes_per_device.update(decode.kv_bytes_per_device)
