"""EmbedText: one vector per text, as sentence-transformers' ``SentenceTransformer.encode``.

The encoder's last hidden states of the text's own tokens (padding excluded, special tokens
included) are pooled on the model thread — "cls" the first token, "mean" their mean, "max"
the element-wise maximum, "last" the last token — in float32. Then, off the event loop and in
the order sentence-transformers applies them: the checkpoint's Normalize module (when its
modules.json has one), the cut to `dimensions` (``truncate_dim``), and the request's
`normalize` (``normalize_embeddings``: L2, after the cut).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidArgument
from ..models.encoder_profile import POOLINGS
from ..models.loaded_model import LoadedModel
from .heads import Needs, RowOutputs
from .inputs import Encoded, as_row, check_texts, encode

NEEDS = Needs(token_states=True)
# Pooling name → [tokens, hidden] float32 states → [hidden].
POOL: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cls": lambda states: states[0],
    "mean": lambda states: states.mean(dim=0),
    "max": lambda states: states.max(dim=0).values,
    "last": lambda states: states[-1],
}
assert set(POOL) == set(POOLINGS)


@dataclass(frozen=True)
class EmbedTextParams:
    """An EmbedText request, unvalidated: `pooling` "" is the model's, `dimensions` 0 all."""

    texts: tuple[str, ...]
    pooling: str = ""
    normalize: bool = False
    dimensions: int = 0
    truncate: bool = False


@dataclass(frozen=True)
class EmbedTextJob:
    rows: tuple[Encoded, ...]
    pooling: str
    model_normalizes: bool
    dimensions: int
    normalize: bool


def prepare(params: EmbedTextParams, model: LoadedModel) -> EmbedTextJob:
    """Validate and tokenize every text (off the event loop)."""
    check_texts("texts", params.texts, model)
    width = model.encoder.embedding_dimensions
    if params.dimensions > width:
        raise InvalidArgument(
            "dimensions", f"must be at most {width} (the model's embedding_dimensions), got {params.dimensions}"
        )
    rows = tuple(as_row(encode(model, f"texts[{i}]", t, truncate=params.truncate)) for i, t in enumerate(params.texts))
    return EmbedTextJob(
        rows,
        params.pooling or model.encoder.pooling,
        model.encoder.normalize,
        params.dimensions or width,
        params.normalize,
    )


def pooled(pooling: str, outputs: RowOutputs) -> np.ndarray:
    """On the model thread: the row's pooled vector, float32."""
    assert outputs.states is not None
    result: np.ndarray = POOL[pooling](outputs.states.float()).cpu().numpy()
    return result


def _unit(vector: np.ndarray) -> np.ndarray:
    # torch.nn.functional.normalize's rule: divide by max(norm, 1e-12).
    result: np.ndarray = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return result


def finish(job: EmbedTextJob, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Normalize module, cut, requested normalization (off the event loop)."""
    out = []
    for vector in vectors:
        if job.model_normalizes:
            vector = _unit(vector)
        vector = vector[: job.dimensions]
        if job.normalize:
            vector = _unit(vector)
        out.append(vector.astype(np.float32, copy=False))
    return out
