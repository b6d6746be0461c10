"""EmbedText against sentence-transformers' SentenceTransformer.encode (1e-4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from tokenwire.client import Client
from tokenwire.v1 import models_pb2
from tokenwire.v1 import understanding_pb2 as pb

TEXTS = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Ein Mann fährt Fahrrad — naïve café",
    "x",
    " ".join(["long text"] * 60),
]


def _served(client: Client, model: str, texts: list[str], **fields: Any) -> np.ndarray:
    """With truncate: the last text is over max_seq_length, where sentence-transformers cuts."""
    reply = client.understanding.EmbedText(pb.EmbedTextRequest(model=model, texts=texts, truncate=True, **fields))
    vectors = np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)
    assert vectors.shape == (len(texts), reply.dimensions)
    return vectors


def _encode(path: Path, texts: list[str], **kwargs: Any) -> np.ndarray:
    model = SentenceTransformer(str(path), device="cpu")
    result: np.ndarray = model.encode(texts, convert_to_numpy=True, **kwargs)
    return result


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("model", ["tiny-bert-embed", "embed-cls"])
def test_equals_sentence_transformers(
    et: Client, demo_models_dir: Path, extra_models: dict[str, Path], model: str, normalize: bool
) -> None:
    path = extra_models.get(model, demo_models_dir / model)
    got = _served(et, model, TEXTS, normalize=normalize)
    np.testing.assert_allclose(got, _encode(path, TEXTS, normalize_embeddings=normalize), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_dimensions_equal_truncate_dim(et: Client, demo_models_dir: Path, normalize: bool) -> None:
    got = _served(et, "tiny-bert-embed", TEXTS, dimensions=16, normalize=normalize)
    expected = _encode(demo_models_dir / "tiny-bert-embed", TEXTS, truncate_dim=16, normalize_embeddings=normalize)
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_the_checkpoint_decides_pooling_and_normalization(et: Client) -> None:
    normalized = _served(et, "tiny-bert-embed", TEXTS)  # modules.json ends with Normalize
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, rtol=1e-5)
    raw = _served(et, "embed-cls", TEXTS)  # no Normalize module
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, rtol=1e-3)
    info = et.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="embed-cls"))
    assert (info.pooling, info.embedding_dimensions) == ("cls", 64)
    assert list(info.tasks) == [models_pb2.TASK_EMBED_TEXT]
    info = et.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="tiny-bert-embed"))
    assert info.pooling == "mean"
    assert info.max_input_tokens == 256  # sentence_bert_config.json's max_seq_length


def test_pooling_override_equals_the_other_checkpoint(et: Client) -> None:
    """The mean-pooled model asked for CLS pooling equals the CLS-pooled copy of it, normalized."""
    as_cls = _served(et, "tiny-bert-embed", TEXTS, pooling=pb.POOLING_CLS, normalize=True)
    np.testing.assert_allclose(as_cls, _served(et, "embed-cls", TEXTS, normalize=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", [pb.POOLING_MAX, pb.POOLING_LAST])
def test_max_and_last_pooling(et: Client, demo_models_dir: Path, pooling: int) -> None:
    from sentence_transformers.models import Normalize, Pooling, Transformer

    path = str(demo_models_dir / "tiny-bert-embed")
    transformer = Transformer(path, max_seq_length=256)  # as sentence_bert_config.json says
    mode = {pb.POOLING_MAX: "max", pb.POOLING_LAST: "lasttoken"}[pooling]
    reference = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), mode), Normalize()], device="cpu"
    )
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(_served(et, "tiny-bert-embed", TEXTS, pooling=pooling), expected, rtol=1e-4, atol=1e-5)


def test_batched_equals_unbatched(et: Client) -> None:
    together = _served(et, "tiny-bert-embed-batch", TEXTS)
    alone = np.concatenate([_served(et, "tiny-bert-embed-batch", [t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
