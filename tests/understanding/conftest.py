"""One in-process server for the Understanding tests, serving the demo encoders under several
registry entries: the defaults, small windows (limits, QA windows) and a batching-friendly
max_wait_ms (so concurrent requests reliably share forwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import InProcessServer
from tokenwire.client import Client
from tokenwire.config import Config, ModelSpec


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RobertaForMaskedLM with a byte-level BPE tokenizer and a `<mask>` token:
    the RoBERTa-style fill-mask path (no token types, generic forward, BPE decoding)."""
    import torch
    from tokenizers import AddedToken
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    from tokenwire.models.demo_tokenizers import _gpt2_vocab

    vocab, merges = _gpt2_vocab()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # RoBERTa's ids 0-3 (pad also indexes positions)
    ids = {t: i for i, t in enumerate(specials + [t for t in vocab if t not in specials] + ["<mask>"])}
    tok = RobertaTokenizer(
        vocab=ids, merges=list(merges), mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, special=True)
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = RobertaForMaskedLM(
            RobertaConfig(
                vocab_size=len(tok),
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=130,
                type_vocab_size=1,
                pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
            )
        )
    path = tmp_path_factory.mktemp("tiny-roberta")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def uw_server(demo_models_dir: Path, roberta_dir: Path) -> Iterator[InProcessServer]:
    bert, qa = str(demo_models_dir / "tiny-bert"), str(demo_models_dir / "tiny-bert-qa")
    specs = (
        ModelSpec(name="tiny-bert", path=bert),
        ModelSpec(name="tiny-bert-qa", path=qa),
        ModelSpec(name="tiny-bert-16", path=bert, max_input_tokens=16),
        ModelSpec(name="tiny-bert-qa-64", path=qa, max_input_tokens=64),
        ModelSpec(name="tiny-bert-batch", path=bert, max_wait_ms=100, max_batch_size=8),
        ModelSpec(name="tiny-bert-qa-batch", path=qa, max_wait_ms=100, max_batch_size=8),
        ModelSpec(name="tiny-gpt2", path=str(demo_models_dir / "tiny-gpt2")),
        ModelSpec(name="tiny-roberta", path=str(roberta_dir)),
    )
    with InProcessServer(Config(models=specs)) as server:
        yield server


@pytest.fixture()
def uw(uw_server: InProcessServer) -> Iterator[Client]:
    with Client(uw_server.target) as c:
        yield c
