"""Tests for the demo-model factory (tokenwire.models.demo).

The rest of the test-suite builds its models with this factory, so these tests pin what the
others rely on: every model reloads through the Auto classes from a plain directory, the
tokenizers round-trip non-ASCII text, builds are deterministic, atomic and idempotent, and the
special-token ids are the documented ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForNextSentencePrediction,
    AutoModelForQuestionAnswering,
    AutoProcessor,
    AutoTokenizer,
    BertForMaskedLM,
    BertForNextSentencePrediction,
    CLIPModel,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerBase,
)

import tokenwire.models.demo as demo
from tokenwire.models.demo import (
    DEMO_MODEL_NAMES,
    FACTORY_VERSION,
    LLAVA_IMAGE_SEQ_LENGTH,
    STAMP_FILE,
    build_demo_model,
    build_demo_models,
)
from tokenwire.models.demo_tokenizers import clear_learned_vocabularies

SAMPLE = "naïve café 東京"
GENERATIVE = ("tiny-llama", "tiny-gpt2", "tiny-llava")
BERTS = ("tiny-bert", "tiny-bert-qa")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-models")
    build_demo_models(out)
    return out


def _processor(path: Path) -> Any:
    return AutoProcessor.from_pretrained(path)  # type: ignore[no-untyped-call]


def _tokenizer(models_dir: Path, name: str) -> PreTrainedTokenizerBase:
    """The tokenizer as a server would load it: LLaVA's lives in its processor."""
    if name == "tiny-llava":
        tok: PreTrainedTokenizerBase = _processor(models_dir / name).tokenizer
        return tok
    return AutoTokenizer.from_pretrained(models_dir / name)


def _load(cls: Any, path: Path, **kwargs: Any) -> Any:
    """from_pretrained, typed loosely: its return type depends on output_loading_info."""
    return cls.from_pretrained(path, **kwargs)


def _image() -> Image.Image:
    """A deterministic non-square RGB image, so resize + center-crop both run."""
    w, h = 48, 40
    rgb = ((x * 7 + y * 13 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(3))
    pixels = bytes(rgb)
    return Image.frombytes("RGB", (w, h), pixels)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- factory behaviour -------------------------------------------------------------------------


def test_builds_every_model_with_a_stamp(models_dir: Path) -> None:
    for name in DEMO_MODEL_NAMES:
        d = models_dir / name
        assert (d / "config.json").is_file()
        assert (d / "model.safetensors").is_file()
        assert (d / STAMP_FILE).read_text() == f"{FACTORY_VERSION} {name}\n"
        assert (d / "generation_config.json").is_file() == (name in GENERATIVE)
    leftovers = [p.name for p in models_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_second_build_is_a_no_op(models_dir: Path) -> None:
    before = {n: (models_dir / n / STAMP_FILE).stat().st_mtime_ns for n in DEMO_MODEL_NAMES}
    paths = build_demo_models(models_dir)
    assert paths == {n: models_dir / n for n in DEMO_MODEL_NAMES}
    after = {n: (models_dir / n / STAMP_FILE).stat().st_mtime_ns for n in DEMO_MODEL_NAMES}
    assert after == before


def _files(root: Path) -> list[str]:
    """Every file under a model directory (sentence-transformers layouts have subfolders)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_builds_are_byte_identical(models_dir: Path, tmp_path: Path) -> None:
    clear_learned_vocabularies()  # relearn the tokenizers too, not just re-seed the weights
    again = build_demo_models(tmp_path)
    for name, d in again.items():
        files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
        assert files == sorted(
            str(p.relative_to(models_dir / name)) for p in (models_dir / name).rglob("*") if p.is_file()
        )
        for file in files:
            assert _digest(d / file) == _digest(models_dir / name / file), (name, file)


def test_stale_stamp_is_rebuilt_in_place(tmp_path: Path) -> None:
    d = build_demo_model("tiny-gpt2", tmp_path)
    (d / STAMP_FILE).write_text("some-older-factory tiny-gpt2\n")
    (d / "junk.txt").write_text("left over from an older build")
    assert build_demo_model("tiny-gpt2", tmp_path) == d
    assert (d / STAMP_FILE).read_text() == f"{FACTORY_VERSION} tiny-gpt2\n"
    assert not (d / "junk.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-gpt2"]


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(dst: Path) -> None:
        (dst / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setitem(demo._BUILDERS, "tiny-bert", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_demo_model("tiny-bert", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_build_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    build_demo_model("tiny-bert-qa", tmp_path)
    assert torch.equal(torch.rand(3), expected)


def test_names_subset_and_unknown_name(tmp_path: Path) -> None:
    assert list(build_demo_models(tmp_path, ["tiny-bert-qa"])) == ["tiny-bert-qa"]
    with pytest.raises(ValueError, match="unknown demo model"):
        build_demo_models(tmp_path, ["tiny-bert", "gpt-17"])
    assert not (tmp_path / "tiny-bert").exists()  # validation happens before any build


# --- tokenizers --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATIVE)
@pytest.mark.parametrize("text", [SAMPLE, "Hello, world! 🦄 Ω ñ\n  two  spaces"])
def test_generative_tokenizers_round_trip(models_dir: Path, name: str, text: str) -> None:
    tok = _tokenizer(models_dir, name)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    # Byte-fallback pieces must survive skip_special_tokens, or streamed text loses characters.
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == text
    assert tok.padding_side == "left"
    assert tok.pad_token_id is not None


def test_common_words_are_single_tokens(models_dir: Path) -> None:
    for name in ("tiny-llama", "tiny-gpt2", "tiny-bert", "tiny-clip"):
        tok = _tokenizer(models_dir, name)
        assert len(tok.tokenize("The cat reads a book")) == 5, name
        assert len(tok.tokenize("Hello, world!")) == 4, name


def test_llama_byte_pieces_are_ordinary_vocab(models_dir: Path) -> None:
    tok = _tokenizer(models_dir, "tiny-llama")
    vocab = tok.get_vocab()
    assert [vocab[f"<0x{b:02X}>"] for b in range(256)] == list(range(3, 259))
    assert not any(t.startswith("<0x") for t in tok.all_special_tokens)
    assert not any(t.startswith("<0x") for t in tok.get_added_vocab())


@pytest.mark.parametrize("name", BERTS)
def test_bert_tokenizers_keep_accents_and_cjk(models_dir: Path, name: str) -> None:
    tok = _tokenizer(models_dir, name)
    ids = tok.encode(SAMPLE)
    assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(ids)[1:-1] == ["naïve", "café", "東", "京"]


def test_special_token_ids(models_dir: Path) -> None:
    """Pinned so that other tests and docs may rely on them."""
    llama = _tokenizer(models_dir, "tiny-llama")
    assert len(llama) == 1024
    assert (llama.unk_token_id, llama.bos_token_id, llama.eos_token_id) == (0, 1, 2)
    assert llama.pad_token_id == 0
    assert llama.encode("hi")[0] == 1 and llama.encode("hi")[-1] != 2
    gpt2 = _tokenizer(models_dir, "tiny-gpt2")
    assert gpt2.bos_token_id == gpt2.eos_token_id == gpt2.pad_token_id == 1023 == len(gpt2) - 1
    bert = _tokenizer(models_dir, "tiny-bert")
    specials = [bert.pad_token_id, bert.unk_token_id, bert.cls_token_id, bert.sep_token_id]
    assert [*specials, bert.mask_token_id] == [0, 1, 2, 3, 4]
    llava = _processor(models_dir / "tiny-llava")
    assert llava.image_token_id == 1024 == len(llava.tokenizer) - 1
    assert llava.tokenizer.bos_token_id == 1 and llava.tokenizer.eos_token_id == 2
    clip = _tokenizer(models_dir, "tiny-clip")
    assert (clip.bos_token_id, clip.eos_token_id, clip.pad_token_id) == (1022, 1023, 1023)


# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_causal_lm_batched_generate(models_dir: Path, name: str) -> None:
    tok = _tokenizer(models_dir, name)
    model = _load(AutoModelForCausalLM, models_dir / name)
    prompts = ["Hello, world!", "The cat reads a book every morning with great care."]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # left padded
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    with torch.no_grad():
        logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert logits.shape[-1] == len(tok) == model.config.vocab_size
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)


def test_llama_chat_template(models_dir: Path) -> None:
    tok = _tokenizer(models_dir, "tiny-llama")
    messages = [{"role": "user", "content": "Hello!"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<s><|user|>\nHello!\n<|assistant|>\n"


def test_bert_pretraining_checkpoint_loads_both_heads(models_dir: Path) -> None:
    d = models_dir / "tiny-bert"
    tok = _tokenizer(models_dir, "tiny-bert")
    assert _load(AutoModelForMaskedLM, d).config.architectures == ["BertForPreTraining"]
    for cls in (BertForMaskedLM, BertForNextSentencePrediction):
        _, info = _load(cls, d, output_loading_info=True)
        assert not info["missing_keys"], (cls.__name__, info)
    mlm = _load(AutoModelForMaskedLM, d)
    nsp = _load(AutoModelForNextSentencePrediction, d)
    with torch.no_grad():
        masked = tok("The cat [MASK] a book.", return_tensors="pt")
        assert mlm(**masked).logits.shape == (1, masked["input_ids"].shape[1], len(tok))
        pair = tok("The cat reads a book.", "It is a long story.", return_tensors="pt")
        assert nsp(**pair).logits.shape == (1, 2)


def test_bert_qa(models_dir: Path) -> None:
    d = models_dir / "tiny-bert-qa"
    tok = _tokenizer(models_dir, "tiny-bert-qa")
    model, info = _load(AutoModelForQuestionAnswering, d, output_loading_info=True)
    assert not info["missing_keys"]
    inputs = tok("What is the capital of France?", "It is Paris.", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.start_logits.shape == out.end_logits.shape == inputs["input_ids"].shape


def test_llava_processor_and_generate(models_dir: Path) -> None:
    d = models_dir / "tiny-llava"
    processor = _processor(d)
    model = _load(LlavaForConditionalGeneration, d)
    content = [{"type": "image"}, {"type": "text", "text": "What is this?"}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    assert prompt == "USER: <image>\nWhat is this?\nASSISTANT:"
    inputs = processor(images=_image(), text=prompt, return_tensors="pt")
    image_tokens = inputs["input_ids"] == model.config.image_token_index
    assert int(image_tokens.sum()) == LLAVA_IMAGE_SEQ_LENGTH == model.config.image_seq_length
    assert inputs["input_ids"][0, 0] == processor.tokenizer.bos_token_id
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_clip_zero_shot(models_dir: Path) -> None:
    d = models_dir / "tiny-clip"
    processor = _processor(d)
    model = _load(CLIPModel, d)
    labels = ["a photo of a cat", "a photo of a dog", "a café in 東京"]
    inputs = processor(text=labels, images=_image(), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits_per_image.shape == (1, 3)
    assert out.logits_per_text.shape == (3, 1)
    assert torch.isfinite(out.logits_per_image).all()
