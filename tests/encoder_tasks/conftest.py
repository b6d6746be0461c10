"""One in-process server for the "BERT for any task" RPCs (ClassifyText, ClassifyTokens,
EmbedText, Rerank): the five demo models, plus checkpoints written here the way their users'
own code writes them (a multi-label and a regression classifier, a sentence-transformers model
with another pooling, custom heads on a bare BertModel saved with save_pretrained and
safetensors), so each RPC is compared with the library that defines it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec

DEMO = ("tiny-bert-classifier", "tiny-bert-ner", "tiny-bert-embed", "tiny-bert-reranker", "tiny-bert-sentiment")


def _config(tokenizer_dir: Path, **extra: object) -> BertConfig:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=0,
        **extra,
    )


def _save_classifier(dst: Path, tokenizer_dir: Path, seed: int, **extra: object) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(_config(tokenizer_dir, **extra))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(dst)
    return dst


def save_custom_head(dst: Path, tokenizer_dir: Path, head: torch.nn.Sequential, spec: dict[str, object]) -> Path:
    """What a user's training script does: save the encoder with save_pretrained, the head's
    state_dict with safetensors, and describe the head in tokenwire_head.json."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        encoder = BertModel(_config(tokenizer_dir))
    encoder.save_pretrained(dst)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(dst)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(dst / "head.safetensors"))
    (dst / "tokenwire_head.json").write_text(json.dumps(spec))
    return dst


def _head(*modules: torch.nn.Module) -> torch.nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(11)
        head = torch.nn.Sequential(*modules)
        for p in head.parameters():  # larger weights than the default init: scores spread out
            torch.nn.init.normal_(p, std=0.5)
    return head


@pytest.fixture(scope="session")
def extra_models(demo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tok = demo_models_dir / "tiny-bert"
    root = tmp_path_factory.mktemp("encoder-tasks")
    out = {
        "multi-label": _save_classifier(
            root / "multi-label",
            tok,
            1,
            num_labels=4,
            problem_type="multi_label_classification",
            id2label={0: "sports", 1: "politics", 2: "science", 3: "art"},
            label2id={"sports": 0, "politics": 1, "science": 2, "art": 3},
        ),
        "regression": _save_classifier(root / "regression", tok, 2, num_labels=1, problem_type="regression"),
        "head-mean-softmax": save_custom_head(
            root / "head-mean-softmax",
            tok,
            _head(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 3)),
            {
                "pooling": "mean",
                "layers": [
                    {"type": "linear", "in": 64, "out": 32},
                    {"type": "activation", "fn": "relu"},
                    {"type": "dropout", "p": 0.1},
                    {"type": "linear", "in": 32, "out": 3},
                ],
                "output": "softmax",
                "labels": ["low", "mid", "high"],
            },
        ),
        "head-pooler-sigmoid": save_custom_head(
            root / "head-pooler-sigmoid",
            tok,
            _head(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)),
            {
                "pooling": "pooler",
                "layers": [
                    {"type": "linear", "in": 64, "out": 16},
                    {"type": "activation", "fn": "tanh"},
                    {"type": "linear", "in": 16, "out": 1},
                ],
                "output": "sigmoid",
                "labels": ["relevant"],
            },
        ),
    }
    # The demo embedding model with CLS pooling and no Normalize module.
    cls = root / "embed-cls"
    shutil.copytree(demo_models_dir / "tiny-bert-embed", cls)
    pooling = json.loads((cls / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (cls / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = json.loads((cls / "modules.json").read_text())[:2]
    (cls / "modules.json").write_text(json.dumps(modules))
    shutil.rmtree(cls / "2_Normalize")
    out["embed-cls"] = cls
    return out


@pytest.fixture(scope="session")
def et_server(demo_models_dir: Path, extra_models: dict[str, Path]) -> Iterator[InProcessServer]:
    specs = [ModelSpec(name=name, path=str(demo_models_dir / name)) for name in DEMO]
    specs += [ModelSpec(name=name, path=str(path)) for name, path in extra_models.items()]
    specs += [
        ModelSpec(
            name="tiny-bert-classifier-16", path=str(demo_models_dir / "tiny-bert-classifier"), max_input_tokens=16
        ),
        ModelSpec(name="tiny-bert-ner-16", path=str(demo_models_dir / "tiny-bert-ner"), max_input_tokens=16),
        ModelSpec(name="tiny-bert-embed-16", path=str(demo_models_dir / "tiny-bert-embed"), max_input_tokens=16),
        ModelSpec(name="tiny-bert-reranker-16", path=str(demo_models_dir / "tiny-bert-reranker"), max_input_tokens=16),
        ModelSpec(
            name="tiny-bert-classifier-batch",
            path=str(demo_models_dir / "tiny-bert-classifier"),
            max_wait_ms=100,
            max_batch_size=8,
        ),
        ModelSpec(
            name="tiny-bert-embed-batch",
            path=str(demo_models_dir / "tiny-bert-embed"),
            max_wait_ms=100,
            max_batch_size=8,
        ),
    ]
    with InProcessServer(Config(models=tuple(specs))) as server:
        yield server


@pytest.fixture()
def et(et_server: InProcessServer) -> Iterator[Client]:
    with Client(et_server.target) as c:
        yield c
