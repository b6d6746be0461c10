"""The optional native open_clip path.

open_clip needs a torchvision built for the installed torch; where it is missing (as on the
CI machines) the adapter is exercised with a stand-in model and tokenizer that follow
open_clip's interfaces, and the loader with a stand-in `open_clip` module. The real-package test
runs wherever open_clip imports.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PretrainedConfig

from mm_helpers import noise_image, pb_image
from tokenwire.config import ModelSpec
from tokenwire.errors import InvalidArgument
from tokenwire.models.loader import LoadedModel, ModelLoadError
from tokenwire.multimodal.clip import prepare_classify, prepare_embed, run_batch
from tokenwire.multimodal.encoders import encoder_for
from tokenwire.multimodal.images import ImageLimits
from tokenwire.multimodal.open_clip import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    OpenClipEncoder,
    is_open_clip_checkpoint,
    load_open_clip,
)
from tokenwire.tasks import Task
from tokenwire.v1 import multimodal_pb2

CONTEXT = 8


class StandInTokenizer:
    """open_clip's SimpleTokenizer interface: encode() without sot/eot; __call__ → [n, context]
    zero-padded, cut to fit with eot kept last."""

    context_length = CONTEXT
    sot_token_id, eot_token_id = 98, 99

    def encode(self, text: str) -> list[int]:
        return [1 + ord(c) % 90 for c in text]

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), CONTEXT, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text)][: CONTEXT - 1] + [self.eot_token_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class StandInClip(torch.nn.Module):
    """encode_text / encode_image / logit_scale, like open_clip.model.CLIP."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.token_embedding = torch.nn.Embedding(100, 16)
        self.proj = torch.nn.Linear(3 * 4 * 4, 16)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.5))
        self.visual = types.SimpleNamespace(grid_size=(2, 2))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(ids).mean(dim=1) + ids.argmax(dim=-1, keepdim=True).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels.flatten(1))


def preprocess(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.resize((4, 4)), dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.fixture()
def loaded() -> LoadedModel:
    module = StandInClip().eval()
    return LoadedModel(
        spec=ModelSpec(name="oc", path="/nonexistent"),
        tasks=(Task.CLASSIFY_IMAGE, Task.EMBED),
        architecture="OpenCLIP",
        config=PretrainedConfig(),
        tokenizer=StandInTokenizer(),
        processor=preprocess,
        modules={Task.CLASSIFY_IMAGE: module, Task.EMBED: module},
        max_total_tokens=CONTEXT,
        max_input_tokens=CONTEXT,
        dtype="float32",
    )


def test_encoder_matches_the_model(loaded: LoadedModel) -> None:
    encoder = encoder_for(loaded, Task.EMBED)
    assert isinstance(encoder, OpenClipEncoder) and encoder.image_cost == 5
    module: StandInClip = loaded.modules[Task.EMBED]  # type: ignore[assignment]
    tok = StandInTokenizer()
    images = [noise_image(1), noise_image(2, (30, 60))]
    item = prepare_embed(
        multimodal_pb2.EmbedRequest(texts=["cat", "a dog"], images=[pb_image(i) for i in images]),
        encoder,
        ImageLimits(),
        32,
    )
    ((vectors, dims),) = run_batch(encoder, [item])
    with torch.inference_mode():
        expected = torch.cat(
            [
                module.encode_text(tok(["cat", "a dog"])),
                module.encode_image(torch.stack([preprocess(i) for i in images])),
            ]
        )
    assert dims == 16 and torch.allclose(torch.tensor(vectors), expected, atol=1e-6)

    item = prepare_classify(
        multimodal_pb2.ClassifyImageRequest(
            image=pb_image(images[0]), labels=["a", "b", "c"], hypothesis_template="{}!"
        ),
        encoder,
        ImageLimits(),
    )
    ((scores),) = run_batch(encoder, [item])
    with torch.inference_mode():
        text = module.encode_text(tok([x + "!" for x in "abc"]))
        image = module.encode_image(preprocess(images[0])[None])
        text, image = text / text.norm(dim=-1, keepdim=True), image / image.norm(dim=-1, keepdim=True)
        probs = (torch.tensor(2.5).exp() * image @ text.T)[0].softmax(-1).tolist()
    assert dict(scores) == pytest.approx(dict(zip("abc", probs, strict=True)), abs=1e-6)


def test_over_long_texts_are_rejected_or_cut(loaded: LoadedModel) -> None:
    encoder = encoder_for(loaded, Task.EMBED)
    long = "abcdefghijkl"  # 12 + 2 tokens > 8
    with pytest.raises(InvalidArgument) as info:
        prepare_embed(multimodal_pb2.EmbedRequest(texts=["ok", long]), encoder, ImageLimits(), 32)
    assert info.value.violations[0].field == "texts[1]" and "14 tokens" in info.value.message
    item = prepare_embed(multimodal_pb2.EmbedRequest(texts=["ok", long], truncate=True), encoder, ImageLimits(), 32)
    assert item.texts[1] == StandInTokenizer()([long])[0].tolist()


def _checkpoint(root: Path, weights: bool = True) -> Path:
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (root / CONFIG_FILE).write_text(
        json.dumps(
            {
                "model_cfg": model_cfg,
                "preprocess_cfg": {
                    "mean": [0.5, 0.5, 0.5],
                    "std": [0.25, 0.25, 0.25],
                    "interpolation": "bicubic",
                    "size": 32,
                },
            }
        )
    )
    if weights:
        (root / WEIGHTS_FILE).write_bytes(b"")
    return root


def test_loader_registers_the_config_and_passes_preprocessing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def add_model_config(path: str) -> None:
        for f in Path(path).glob("*.json"):
            seen["name"], seen["cfg"] = f.stem, json.loads(f.read_text())

    def create_model_from_pretrained(name: str, **kwargs: Any) -> tuple[torch.nn.Module, Any]:
        seen["create"] = (name, kwargs)
        return StandInClip(), preprocess

    fake = types.SimpleNamespace(
        add_model_config=add_model_config,
        create_model_from_pretrained=create_model_from_pretrained,
        get_tokenizer=lambda name: StandInTokenizer(),
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    root = _checkpoint(tmp_path)
    assert is_open_clip_checkpoint(root)
    bundle = load_open_clip(root)
    assert seen["cfg"]["embed_dim"] == 16 and seen["create"][0] == seen["name"]
    kwargs = seen["create"][1]
    assert kwargs["pretrained"] == str(root / WEIGHTS_FILE)
    assert kwargs["image_mean"] == [0.5, 0.5, 0.5] and kwargs["image_interpolation"] == "bicubic"
    assert "size" not in kwargs
    assert bundle.context_length == CONTEXT and bundle.embed_dim == 16


def test_loader_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import fails
    with pytest.raises(ModelLoadError, match="open_clip_torch"):
        load_open_clip(_checkpoint(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert not is_open_clip_checkpoint(tmp_path)  # transformers' format wins


def test_real_open_clip_checkpoint(tmp_path: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    root = _checkpoint(tmp_path, weights=False)
    cfg = json.loads((root / CONFIG_FILE).read_text())["model_cfg"]
    reference = open_clip.model.CLIP(**cfg).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, root / WEIGHTS_FILE)
    bundle = load_open_clip(root)
    module = bundle.model
    model = LoadedModel(
        spec=ModelSpec(name="oc", path=str(root)),
        tasks=(Task.EMBED,),
        architecture="OpenCLIP",
        config=PretrainedConfig(),
        tokenizer=bundle.tokenizer,
        processor=bundle.preprocess,
        modules={Task.EMBED: module},
        max_total_tokens=CONTEXT,
        max_input_tokens=CONTEXT,
        dtype="float32",
    )
    encoder = encoder_for(model, Task.EMBED)
    image = noise_image(4)
    item = prepare_embed(
        multimodal_pb2.EmbedRequest(texts=["a cat"], images=[pb_image(image)]), encoder, ImageLimits(), 32
    )
    ((vectors, dims),) = run_batch(encoder, [item])
    with torch.inference_mode():
        expected = torch.cat(
            [reference.encode_text(bundle.tokenizer(["a cat"])), reference.encode_image(bundle.preprocess(image)[None])]
        )
    assert dims == 16 and torch.allclose(torch.tensor(vectors), expected, atol=1e-5)


def test_native_checkpoint_is_served_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry entry pointing at a native open_clip directory: tasks inferred, loaded through
    open_clip (a stand-in here), ClassifyImage and Embed answer, Tokenize says it cannot."""
    import grpc

    from harness import InProcessServer
    from tokenwire.client import Client
    from tokenwire.config import Config, ModelSpec
    from tokenwire.v1 import models_pb2

    fake = types.SimpleNamespace(
        add_model_config=lambda path: None,
        create_model_from_pretrained=lambda name, **kw: (StandInClip(), preprocess),
        get_tokenizer=lambda name: StandInTokenizer(),
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    root = _checkpoint(tmp_path)
    with InProcessServer(Config(models=(ModelSpec(name="oc", path=str(root)),))) as server, Client(server.target) as c:
        info = c.models.GetModelInfo(models_pb2.GetModelInfoRequest(model="oc"))
        assert info.state == models_pb2.MODEL_STATE_READY, info.error
        assert info.architecture == "OpenCLIP"
        assert list(info.tasks) == [models_pb2.TASK_CLASSIFY_IMAGE, models_pb2.TASK_EMBED]
        scores = c.multimodal.ClassifyImage(
            multimodal_pb2.ClassifyImageRequest(
                model="oc", image=pb_image(noise_image(1)), labels=["cat", "dog"], hypothesis_template="{}"
            )
        ).scores
        assert sorted(s.label for s in scores) == ["cat", "dog"] and abs(sum(s.score for s in scores) - 1) < 1e-5
        embedded = c.multimodal.Embed(
            multimodal_pb2.EmbedRequest(model="oc", texts=["a cat"], images=[pb_image(noise_image(2))])
        )
        assert len(embedded.embeddings) == 2 and embedded.dimensions == len(embedded.embeddings[0].values)
        with pytest.raises(grpc.RpcError) as err:
            c.models.Tokenize(models_pb2.TokenizeRequest(model="oc", text="a cat"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
