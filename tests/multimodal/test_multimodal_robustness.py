"""LLaVA whose output layer is wider than its tokenizer; image limits from the server config."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from harness import InProcessServer
from mm_helpers import LlavaReference, noise_image, user
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.multimodal.images import ImageLimits
from tokenwire.services.multimodal import image_limits_from
from tokenwire.v1 import common_pb2, multimodal_pb2

PADDING = 64


@pytest.fixture(scope="module")
def padded_llava(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llava with 64 extra output ids (as checkpoints padded to a multiple of 64 have),
    made the most likely ones."""
    src, dst = demo_models_dir / "tiny-llava", tmp_path_factory.mktemp("padded-llava")
    processor = AutoProcessor.from_pretrained(src)
    model = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    n = len(processor.tokenizer)
    model.resize_token_embeddings(n + PADDING, mean_resizing=False)
    torch.manual_seed(0)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[n:] = torch.randn(PADDING, head.shape[1]) * 5
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def padded_client(padded_llava: Path) -> Iterator[Client]:
    server = InProcessServer(Config(models=(ModelSpec(name="padded-llava", path=str(padded_llava)),))).start()
    try:
        with Client(server.target) as c:
            yield c
    finally:
        server.stop()


def test_never_an_id_beyond_the_tokenizer(padded_client: Client, padded_llava: Path) -> None:
    ref = LlavaReference(padded_llava)
    vocab = len(ref.processor.tokenizer)
    conversation = [("user", [noise_image(0), "hi"])]
    # The test can fail: the raw model does prefer the padded ids.
    assert max(ref.greedy(conversation, 5)) >= vocab
    for method, sampling in [
        (common_pb2.DECODING_METHOD_GREEDY, None),
        (common_pb2.DECODING_METHOD_SAMPLE, common_pb2.SamplingParams(seed=3, temperature=2.0)),
        (common_pb2.DECODING_METHOD_BEAM_SEARCH, None),
    ]:
        reply = padded_client.multimodal.MultimodalChat(
            multimodal_pb2.MultimodalChatRequest(
                model="padded-llava",
                messages=[user(*conversation[0][1])],
                method=method,
                sampling=sampling,
                stopping=common_pb2.StoppingParams(max_new_tokens=20),
            )
        )
        for seq in reply.sequences:
            assert seq.token_ids and max(seq.token_ids) < vocab


def test_image_limits_from_server_config() -> None:
    assert image_limits_from(types.SimpleNamespace()) == ImageLimits()
    limits = image_limits_from(types.SimpleNamespace(max_image_bytes=10, max_image_pixels=20, max_images_per_request=2))
    assert (limits.max_bytes, limits.max_pixels, limits.max_images_per_request) == (10, 20, 2)
