"""Demo-model factory: tiny random-weight models that the server, its tests and its docs can load.

No model hub is reachable where tokenwire is built and tested, so every model the test-suite or
``tokenwire demo-models`` needs is made here: real transformers architectures at toy size
(hidden 64, 2 layers, 4 heads, vocab ~1k) with random weights and a tokenizer trained offline on
a built-in corpus (see :mod:`tokenwire.models.demo_tokenizers`). They load through the same
``from_pretrained`` paths as real checkpoints, so the loading code under test is the real one.

Guarantees, and why:

* Deterministic: each model is initialised under ``torch.manual_seed`` with a seed derived from
  its name (in a forked RNG, so the caller's random state is untouched) and the tokenizers are
  trained on a fixed corpus, so two builds give byte-identical safetensors. Tests can pin
  expected tokens, and a rebuilt model behaves like the old one.
* Atomic: a model is built in a temporary sibling directory and renamed into place only after
  the stamp file is written, so a crash or a concurrent build never leaves a half model behind.
* Idempotent and cheap: a directory whose stamp holds the current :data:`FACTORY_VERSION` and
  the model's name is reused as-is. Bump :data:`FACTORY_VERSION` whenever an output changes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPVisionConfig,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
)
from transformers.utils import logging as hf_logging

try:  # 5.17 and 5.23 (checked): CLIPImageProcessor is the torchvision backend, *Pil the PIL one
    from transformers import CLIPImageProcessorPil
except ImportError:  # releases before that split: CLIPImageProcessor itself is PIL-based
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil  # type: ignore[assignment]

from tokenwire.models.demo_tokenizers import (
    bert_tokenizer,
    clip_tokenizer,
    gpt2_tokenizer,
    llama_tokenizer,
)

#: Written into every stamp file; change it whenever any built file would change.
FACTORY_VERSION = "tokenwire-demo-models/1"
#: Name of the stamp file inside each model directory (written last, inside the temp dir).
STAMP_FILE = "tokenwire-demo.stamp"

DEMO_MODEL_NAMES: tuple[str, ...] = (
    "tiny-llama",
    "tiny-gpt2",
    "tiny-bert",
    "tiny-bert-qa",
    "tiny-llava",
    "tiny-clip",
    "tiny-bert-classifier",
    "tiny-bert-ner",
    "tiny-bert-embed",
    "tiny-bert-reranker",
    "tiny-bert-sentiment",
)

# Toy shapes shared by every model: big enough to have real structure (several heads, GQA in
# Llama, a vision tower with more than one patch), small enough to build and run in milliseconds.
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2  # Llama uses grouped-query attention, so cache code sees kv_heads != heads
INTERMEDIATE = 128
IMAGE_SIZE = 32
PATCH_SIZE = 8
#: Image tokens per image in tiny-llava: all patches, the CLS token dropped ("default" strategy).
LLAVA_IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2
IMAGE_TOKEN = "<image>"

# Mirrors llava-hf/llava-1.5: "USER: <image>\n... ASSISTANT:". No bos_token in it, because
# LlavaProcessor tokenizes the rendered text with add_special_tokens=True, which adds <s>.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | upper }}{{ ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

Builder = Callable[[Path], None]


def _seed(name: str) -> int:
    """A per-model seed that depends on the name only (crc32 is stable, unlike ``hash``)."""
    return zlib.crc32(name.encode("utf-8"))


def _clip_image_processor() -> CLIPImageProcessorPil:
    """The PIL-backed CLIP processor: the default ``CLIPImageProcessor`` needs torchvision,
    which is not installed (and a mismatched one breaks every transformers import)."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def _vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        projection_dim=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )


def _llama_config(tok: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _bert_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=0,
    )


def _generation_config(tok: PreTrainedTokenizerBase) -> GenerationConfig:
    """Greedy by default, with the tokenizer's ids, so generate() needs no extra arguments."""
    return GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )


def _save(dst: Path, model: PreTrainedModel, *artifacts: PreTrainedTokenizerBase | ProcessorMixin) -> None:
    model.save_pretrained(dst)
    for artifact in artifacts:
        artifact.save_pretrained(dst)


def _build_tiny_llama(dst: Path) -> None:
    tok = llama_tokenizer()
    model = LlamaForCausalLM(_llama_config(tok))
    model.generation_config = _generation_config(tok)
    _save(dst, model, tok)


def _build_tiny_gpt2(dst: Path) -> None:
    tok = gpt2_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_inner=INTERMEDIATE,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = _generation_config(tok)
    _save(dst, model, tok)


def _build_tiny_bert(dst: Path) -> None:
    """One checkpoint with both pre-training heads, so the server can serve fill-mask (MLM) and
    next-sentence prediction from the same directory: BertForMaskedLM and
    BertForNextSentencePrediction each find all their weights in it."""
    tok = bert_tokenizer()
    _save(dst, BertForPreTraining(_bert_config(len(tok))), tok)


def _build_tiny_bert_qa(dst: Path) -> None:
    tok = bert_tokenizer()
    _save(dst, BertForQuestionAnswering(_bert_config(len(tok))), tok)


SENTIMENT_LABELS = ("negative", "neutral", "positive")
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


def _labelled_bert_config(vocab_size: int, labels: tuple[str, ...], **extra: object) -> BertConfig:
    config = _bert_config(vocab_size)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    for key, value in extra.items():
        setattr(config, key, value)
    return config


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _build_tiny_bert_classifier(dst: Path) -> None:
    """A fine-tuned-style sentiment classifier: three labels, single-label (softmax)."""
    tok = bert_tokenizer()
    config = _labelled_bert_config(len(tok), SENTIMENT_LABELS, problem_type="single_label_classification")
    _save(dst, BertForSequenceClassification(config), tok)


def _build_tiny_bert_ner(dst: Path) -> None:
    """A named-entity tagger with BIO labels (people, places, organisations)."""
    tok = bert_tokenizer()
    _save(dst, BertForTokenClassification(_labelled_bert_config(len(tok), NER_LABELS)), tok)


def _build_tiny_bert_embed(dst: Path) -> None:
    """A sentence-transformers checkpoint as the library saves one: the BertModel at the root,
    then modules.json naming Transformer → Pooling (mean) → Normalize."""
    tok = bert_tokenizer()
    _save(dst, BertModel(_bert_config(len(tok))), tok)
    prefix = "sentence_transformers.models."
    _write_json(
        dst / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": prefix + "Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": prefix + "Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": prefix + "Normalize"},
        ],
    )
    _write_json(
        dst / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": HIDDEN,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (dst / "2_Normalize").mkdir()
    _write_json(dst / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
    _write_json(dst / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})


def _build_tiny_bert_reranker(dst: Path) -> None:
    """A cross-encoder: a sequence classifier with one output, sigmoid as its activation (the
    config entry sentence-transformers' CrossEncoder writes)."""
    tok = bert_tokenizer()
    config = _labelled_bert_config(
        len(tok),
        ("LABEL_0",),
        sentence_transformers={"activation_fn": "torch.nn.modules.activation.Sigmoid"},
    )
    _save(dst, BertForSequenceClassification(config), tok)


def _build_tiny_bert_sentiment(dst: Path) -> None:
    """ "BERT for any task": a bare BertModel plus a custom head — Linear(hidden, 1) and a
    sigmoid, one "positive" score — in tokenwire_head.json + head.safetensors."""
    from safetensors.torch import save_file

    tok = bert_tokenizer()
    _save(dst, BertModel(_bert_config(len(tok))), tok)
    head = torch.nn.Sequential(torch.nn.Linear(HIDDEN, 1))
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(dst / "head.safetensors"))
    _write_json(
        dst / "tokenwire_head.json",
        {
            "pooling": "cls",
            "layers": [{"type": "linear", "in": HIDDEN, "out": 1}],
            "output": "sigmoid",
            "labels": ["positive"],
        },
    )


def _build_tiny_llava(dst: Path) -> None:
    tok = llama_tokenizer()
    tok.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    image_token_id = tok.added_tokens_encoder[IMAGE_TOKEN]
    config = LlavaConfig(
        vision_config=_vision_config(),
        text_config=_llama_config(tok),
        image_token_index=image_token_id,
        image_seq_length=LLAVA_IMAGE_SEQ_LENGTH,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config = _generation_config(tok)
    processor = LlavaProcessor(  # type: ignore[no-untyped-call]
        image_processor=_clip_image_processor(),
        tokenizer=tok,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, which "default" then drops again
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    _save(dst, model, processor)


def _build_tiny_clip(dst: Path) -> None:
    tok = clip_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        projection_dim=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,  # CLIP pools the text at the first eos
        pad_token_id=tok.pad_token_id,
    )
    config = CLIPConfig(text_config=text_config, vision_config=_vision_config(), projection_dim=HIDDEN)
    processor = CLIPProcessor(  # type: ignore[no-untyped-call]
        image_processor=_clip_image_processor(), tokenizer=tok
    )
    _save(dst, CLIPModel(config), processor)


_BUILDERS: dict[str, Builder] = {
    "tiny-llama": _build_tiny_llama,
    "tiny-gpt2": _build_tiny_gpt2,
    "tiny-bert": _build_tiny_bert,
    "tiny-bert-qa": _build_tiny_bert_qa,
    "tiny-llava": _build_tiny_llava,
    "tiny-clip": _build_tiny_clip,
    "tiny-bert-classifier": _build_tiny_bert_classifier,
    "tiny-bert-ner": _build_tiny_bert_ner,
    "tiny-bert-embed": _build_tiny_bert_embed,
    "tiny-bert-reranker": _build_tiny_bert_reranker,
    "tiny-bert-sentiment": _build_tiny_bert_sentiment,
}
assert tuple(_BUILDERS) == DEMO_MODEL_NAMES


def _stamp_text(name: str) -> str:
    return f"{FACTORY_VERSION} {name}\n"


def is_built(path: Path, name: str) -> bool:
    """True when ``path`` holds a complete build of ``name`` by this factory version."""
    try:
        return (path / STAMP_FILE).read_text(encoding="utf-8") == _stamp_text(name)
    except OSError:
        return False


def _make_readable(root: Path) -> None:
    """Give the build ordinary permissions: ``mkdtemp`` makes the directory 0700 and transformers
    writes ``model.safetensors`` 0600, which would hide the model from a server running as
    another user."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _install(tmp: Path, target: Path, name: str) -> None:
    """Move a finished build into place without ever exposing a partial directory.

    ``os.replace`` cannot overwrite a non-empty directory, so a stale target is first renamed
    aside. If another process installed a current build meanwhile, ours is simply dropped.
    """
    if target.exists():
        if is_built(target, name):
            return
        graveyard = Path(tempfile.mkdtemp(prefix=f".{name}.stale-", dir=target.parent))
        try:
            os.replace(target, graveyard / name)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(graveyard, ignore_errors=True)
        return
    try:
        os.replace(tmp, target)
    except OSError:
        if not is_built(target, name):  # lost a race to a concurrent builder: fine if it finished
            raise


def build_demo_model(name: str, out_dir: Path) -> Path:
    """Build demo model ``name`` into ``out_dir/<name>/`` unless already built; return that path."""
    if name not in _BUILDERS:
        known = ", ".join(DEMO_MODEL_NAMES)
        raise ValueError(f"unknown demo model {name!r}; expected one of {known}")
    out_dir = Path(out_dir)
    target = out_dir / name
    if is_built(target, name):
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=out_dir))
    bars_were_on = hf_logging.is_progress_bar_enabled()
    # The "Writing model shards" progress bars are noise in CLIs and tests.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(name))
            _BUILDERS[name](tmp)
        (tmp / STAMP_FILE).write_text(_stamp_text(name), encoding="utf-8")
        _make_readable(tmp)
        _install(tmp, target, name)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_demo_models(out_dir: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Build the named demo models (all of :data:`DEMO_MODEL_NAMES` by default) into ``out_dir``.

    Returns ``{name: model directory}`` in the order given. Unknown names fail before anything
    is built, so a typo does not cost a partial run.
    """
    wanted = tuple(DEMO_MODEL_NAMES if names is None else dict.fromkeys(names))
    unknown = [n for n in wanted if n not in _BUILDERS]
    if unknown:
        known = ", ".join(DEMO_MODEL_NAMES)
        raise ValueError(f"unknown demo model(s) {unknown}; expected some of {known}")
    return {name: build_demo_model(name, Path(out_dir)) for name in wanted}


__all__ = [
    "DEMO_MODEL_NAMES",
    "FACTORY_VERSION",
    "IMAGE_TOKEN",
    "LLAVA_IMAGE_SEQ_LENGTH",
    "STAMP_FILE",
    "build_demo_model",
    "build_demo_models",
    "is_built",
]
