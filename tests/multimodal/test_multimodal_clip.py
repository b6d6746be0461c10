"""ClassifyImage and Embed equal transformers' CLIPModel computed by hand — for tiny-clip and for
an OpenCLIP-style checkpoint in transformers' format — and batched equals unbatched."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

from harness import InProcessServer
from mm_helpers import ClipReference, noise_image, pb_image
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec
from tokenwire.models.demo_tokenizers import clip_tokenizer
from tokenwire.models.loader import load_model
from tokenwire.multimodal.clip import prepare_classify, prepare_embed, run_batch
from tokenwire.multimodal.encoders import encoder_for
from tokenwire.multimodal.images import ImageLimits
from tokenwire.tasks import Task
from tokenwire.v1 import models_pb2, multimodal_pb2

LABELS = ["cat", "dog", "a red car", "naïve café", "東京"]
TEXTS = ["a photo of a cat", "hello", "The quick brown fox jumps over the lazy dog"]


@pytest.fixture(scope="module")
def openclip_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OpenCLIP (LAION) checkpoint as published in transformers' format: CLIPModel weights,
    plain GELU, pad token "!", legacy eos id (argmax pooling), projection != hidden size."""
    root = tmp_path_factory.mktemp("openclip-hf")
    tok = clip_tokenizer()
    tok.pad_token = "!"
    assert tok.pad_token_id != tok.unk_token_id
    torch.manual_seed(11)
    text = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=tok.bos_token_id,
        eos_token_id=2,
        pad_token_id=tok.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        hidden_act="gelu",
    )
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32))
    model.save_pretrained(root)
    from tokenwire.models.demo import _clip_image_processor

    CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tok).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def openclip_server(openclip_hf_dir: Path) -> Iterator[InProcessServer]:
    with InProcessServer(Config(models=(ModelSpec(name="openclip-hf", path=str(openclip_hf_dir)),))) as server:
        yield server


@pytest.fixture()
def clients(client: Client, openclip_server: InProcessServer) -> Iterator[dict[str, Client]]:
    with Client(openclip_server.target) as other:
        yield {"tiny-clip": client, "openclip-hf": other}


@pytest.fixture(scope="module")
def references(demo_models_dir: Path, openclip_hf_dir: Path) -> dict[str, ClipReference]:
    return {"tiny-clip": ClipReference(demo_models_dir / "tiny-clip"), "openclip-hf": ClipReference(openclip_hf_dir)}


MODELS = ["tiny-clip", "openclip-hf"]


@pytest.mark.parametrize("model", MODELS)
def test_classify_equals_clipmodel_by_hand(clients, references, model: str) -> None:  # type: ignore[no-untyped-def]
    ref = references[model]
    for seed, template in [(0, ""), (1, "a drawing of {}, maybe"), (2, "{}")]:
        image = noise_image(seed, (50 + 10 * seed, 40))
        reply = clients[model].multimodal.ClassifyImage(
            multimodal_pb2.ClassifyImageRequest(
                model=model, image=pb_image(image), labels=LABELS, hypothesis_template=template
            )
        )
        texts = [(template or "a photo of a {}").replace("{}", label) for label in LABELS]
        expected = dict(zip(LABELS, ref.classify(image, texts), strict=True))
        got = [(s.label, s.score) for s in reply.scores]
        assert sorted(label for label, _ in got) == sorted(LABELS)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        assert sum(s for _, s in got) == pytest.approx(1.0, abs=1e-5)
        for label, score in got:
            assert score == pytest.approx(expected[label], abs=1e-5), label


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("normalize", [False, True])
def test_embed_equals_get_features(clients, references, model: str, normalize: bool) -> None:  # type: ignore[no-untyped-def]
    ref = references[model]
    images = [noise_image(5, (32, 32)), noise_image(6, (70, 30))]
    reply = clients[model].multimodal.Embed(
        multimodal_pb2.EmbedRequest(model=model, texts=TEXTS, images=[pb_image(i) for i in images], normalize=normalize)
    )
    expected = torch.cat([ref.text_features(TEXTS), ref.image_features(images)])
    if normalize:
        expected = expected / expected.norm(dim=-1, keepdim=True)
    got = torch.tensor([list(e.values) for e in reply.embeddings])
    assert reply.dimensions == expected.shape[1] == got.shape[1]
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    if normalize:
        assert torch.allclose(got.norm(dim=-1), torch.ones(len(got)), atol=1e-5)
    info = clients[model].models.GetModelInfo(models_pb2.GetModelInfoRequest(model=model))
    assert info.embedding_dimensions == reply.dimensions


def test_embed_texts_only_images_only_and_truncation(client: Client, references) -> None:  # type: ignore[no-untyped-def]
    ref = references["tiny-clip"]
    reply = client.multimodal.Embed(multimodal_pb2.EmbedRequest(model="tiny-clip", images=[pb_image(noise_image(9))]))
    assert torch.allclose(
        torch.tensor([list(reply.embeddings[0].values)]), ref.image_features([noise_image(9)]), atol=1e-5
    )
    long = "word " * 100
    reply = client.multimodal.Embed(
        multimodal_pb2.EmbedRequest(model="tiny-clip", texts=["short", long], truncate=True)
    )
    expected = ref.text_features(["short", long], truncation=True, max_length=77)
    assert torch.allclose(torch.tensor([list(e.values) for e in reply.embeddings]), expected, atol=1e-5)


def _classify(model: str, seed: int, labels: list[str]) -> multimodal_pb2.ClassifyImageRequest:
    return multimodal_pb2.ClassifyImageRequest(model=model, image=pb_image(noise_image(seed)), labels=labels)


def _embed(model: str, seed: int) -> multimodal_pb2.EmbedRequest:
    return multimodal_pb2.EmbedRequest(
        model=model, texts=TEXTS[: 1 + seed % 3], images=[pb_image(noise_image(seed))], normalize=bool(seed % 2)
    )


def test_concurrent_requests_batch_and_equal_unbatched(client: Client, demo_server) -> None:  # type: ignore[no-untyped-def]
    calls = []
    for seed in range(16):
        if seed % 2:
            calls.append((client.multimodal.ClassifyImage, _classify("tiny-clip", seed, LABELS[: 2 + seed % 4])))
        else:
            calls.append((client.multimodal.Embed, _embed("tiny-clip", seed)))
    alone = [call(request) for call, request in calls]
    encoding = next(e for e in demo_server.server.multimodal._encodings.values() if e.model.spec.name == "tiny-clip")
    batcher = encoding.batcher
    batches, items = batcher.batches, batcher.items
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda c: c[0](c[1]), calls))
    assert batcher.items - items == len(calls)
    assert batcher.batches - batches < len(calls)  # some requests shared a forward
    for a, b in zip(alone, together, strict=True):
        if isinstance(a, multimodal_pb2.ClassifyImageResponse):
            assert {s.label: s.score for s in a.scores} == pytest.approx({s.label: s.score for s in b.scores}, abs=1e-5)
        else:
            assert b.dimensions == a.dimensions
            assert torch.allclose(
                torch.tensor([list(e.values) for e in a.embeddings]),
                torch.tensor([list(e.values) for e in b.embeddings]),
                atol=1e-5,
            )


@pytest.mark.parametrize("path_of", [lambda d, o: d / "tiny-clip", lambda d, o: o])
def test_one_batch_equals_each_item_alone(demo_models_dir: Path, openclip_hf_dir: Path, path_of: Any) -> None:
    """run_batch over several requests' items = run_batch over each alone (no server)."""
    model = load_model(ModelSpec(name="m", path=str(path_of(demo_models_dir, openclip_hf_dir))))
    encoder = encoder_for(model, Task.EMBED)
    limits = ImageLimits()
    items = [prepare_classify(_classify("m", s, LABELS[: 2 + s]), encoder, limits) for s in range(3)] + [
        prepare_embed(_embed("m", s), encoder, limits, 32) for s in range(3)
    ]
    together = run_batch(encoder, items)
    for item, batched in zip(items, together, strict=True):
        (single,) = run_batch(encoder, [item])
        if isinstance(single, list):  # classification: [(label, score)]
            assert dict(batched) == pytest.approx(dict(single), abs=1e-6)
        else:
            assert batched[1] == single[1]
            assert torch.allclose(torch.tensor(batched[0]), torch.tensor(single[0]), atol=1e-6)


def test_siglip_texts_are_padded_to_the_window_without_mask(tmp_path: Path) -> None:
    """SigLIP pools the last position and was trained on max_length padding without a mask."""
    from transformers import SiglipConfig, SiglipModel, SiglipTextConfig, SiglipVisionConfig

    from tokenwire.models.demo import _clip_image_processor

    tok = clip_tokenizer()
    torch.manual_seed(0)
    text = SiglipTextConfig(
        vocab_size=len(tok),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = SiglipVisionConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    reference = SiglipModel(SiglipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())).eval()
    reference.save_pretrained(tmp_path)
    CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tok).save_pretrained(tmp_path)
    model = load_model(ModelSpec(name="siglip", path=str(tmp_path)))
    encoder = encoder_for(model, Task.EMBED)
    texts, image = ["a cat", "hello world there"], noise_image(1)
    item = prepare_embed(multimodal_pb2.EmbedRequest(texts=texts, images=[pb_image(image)]), encoder, ImageLimits(), 32)
    ((vectors, dims),) = run_batch(encoder, [item])
    with torch.inference_mode():
        ids = tok(texts, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
        t = reference.get_text_features(input_ids=ids)
        pixels = model.processor(images=[image], return_tensors="pt")["pixel_values"]
        i = reference.get_image_features(pixel_values=pixels)
    expected = torch.cat([x if isinstance(x, torch.Tensor) else x.pooler_output for x in (t, i)])
    assert dims == 48 and torch.allclose(torch.tensor(vectors), expected, atol=1e-5)
