"""Offline-trained tokenizers for the demo models.

Each vocabulary is learned from :func:`demo_corpus` and handed to the model family's own
transformers class through ``vocab=`` / ``merges=``.

Why the family class and not ``PreTrainedTokenizerFast(tokenizer_object=...)``: in transformers 5
a class with its own ``__init__`` (``LlamaTokenizer``, ``GPT2Tokenizer``, ``BertTokenizer``,
``CLIPTokenizer``) does NOT reload ``tokenizer.json`` as-is. ``AutoTokenizer.from_pretrained``
takes only the vocab and merges from it and rebuilds normalizer, pre-tokenizer and decoder in
the class's ``__init__``. A vocabulary learned under different settings would tokenize
differently after a reload, so the words we learn from are cut by the very normalizer and
pre-tokenizer of the class that will serve them. (The old ``vocab_file=`` arguments are
silently ignored by these classes in transformers 5 and give an empty tokenizer.)

Why our own merge learner instead of ``tokenizers.trainers``: the Rust trainers number the
symbols they create for a ``##`` prefix or a ``</w>`` suffix in hash-map order, which changes
from one run to the next, so WordPiece and CLIP vocabularies (ids and merges) differed between
builds. :func:`_learn_merges` is a plain BPE learner, deterministic by construction (ties go to
the lexicographically smallest pair), and fast enough for this corpus (well under a second for
all four).

Learned vocabularies are cached per process as immutable tuples; each call returns a fresh
tokenizer because callers mutate them (LLaVA adds ``<image>``).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache

from tokenizers import normalizers, pre_tokenizers
from transformers import BertTokenizer, CLIPTokenizer, GPT2Tokenizer, LlamaTokenizer

from tokenwire.models.demo_corpus import demo_corpus

#: Target vocabulary sizes. ~1k keeps the embedding tables tiny while common words stay whole.
VOCAB_TARGET = 1024

LLAMA_SPECIALS: tuple[str, str, str] = ("<unk>", "<s>", "</s>")
GPT2_EOT = "<|endoftext|>"
BERT_SPECIALS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_EOW = "</w>"

Vocab = tuple[str, ...]  # tokens in id order
Pair = tuple[str, str]
Merges = tuple[Pair, ...]
Words = Counter[tuple[str, ...]]  # a word as its initial symbols -> occurrences

# Llama: a simple role-tagged format. It starts with bos_token, as real Llama templates do, so
# a rendered chat prompt must be encoded with add_special_tokens=False (apply_chat_template's
# own tokenize=True path already does that).
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def _concat(left: str, right: str) -> str:
    return left + right


def _merge_word(symbols: tuple[str, ...], pair: Pair, merged: str) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def _learn_merges(
    words: Words, max_merges: int, join: Callable[[str, str], str] = _concat, min_count: int = 2
) -> list[tuple[Pair, str]]:
    """Classic BPE: merge the most frequent adjacent pair, repeatedly; return (pair, result)s.

    Ties are broken by the smallest pair, so the result depends on the corpus only. Pair counts
    are updated incrementally and the heap is lazily invalidated (an entry is used only if its
    count is still current), which keeps this fast in pure Python.
    """
    symbols = list(words)
    freq = list(words.values())
    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in zip(syms, syms[1:], strict=False):
            counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[Pair, str]] = []
    while heap and len(merges) < max_merges:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair) != -neg:
            continue  # stale entry
        if -neg < min_count:
            break
        merged = join(*pair)
        merges.append((pair, merged))
        touched: set[Pair] = set()
        for i in sorted(where.pop(pair)):
            old = symbols[i]
            new = _merge_word(old, pair, merged)
            if new == old:
                continue
            for p in zip(old, old[1:], strict=False):
                counts[p] -= freq[i]
                touched.add(p)
            for p in zip(new, new[1:], strict=False):
                counts[p] += freq[i]
                where[p].add(i)
                touched.add(p)
            symbols[i] = new
        for p in sorted(touched):
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
    return merges


def _words(pre_tokenize: Callable[[str], Iterable[str]], split: Callable[[str], tuple[str, ...]] = tuple) -> Words:
    """Count the corpus's words, each cut into its initial symbols by ``split``."""
    return Counter(split(word) for line in demo_corpus() for word in pre_tokenize(line))


def _pieces(pre_tokenizer: pre_tokenizers.PreTokenizer) -> Callable[[str], list[str]]:
    return lambda text: [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)]


def _index(tokens: Iterable[str]) -> dict[str, int]:
    """Number tokens in order, keeping the first occurrence of duplicates."""
    out: dict[str, int] = {}
    for token in tokens:
        out.setdefault(token, len(out))
    return out


def _byte_alphabet() -> list[str]:
    return sorted(pre_tokenizers.ByteLevel.alphabet())


@lru_cache(maxsize=1)
def _llama_vocab() -> tuple[Vocab, Merges]:
    """SentencePiece-style BPE: ``▁`` word prefix, byte fallback.

    Layout mirrors Llama 2: ``<unk>``=0, ``<s>``=1, ``</s>``=2, then the 256 ``<0xXX>`` byte
    pieces as ORDINARY vocab entries (if they were added/special tokens, decoding with
    ``skip_special_tokens=True`` would drop every byte-fallback character), then the corpus
    characters, then learned pieces. Words, newlines, punctuation and digits are split apart
    for learning only (as SentencePiece does); LlamaTokenizer encodes with ``split=False``, and
    since no merge joins across those boundaries it produces the same pieces.
    """
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    words = _words(_pieces(pre))
    chars = sorted({c for word in words for c in word})
    base = [*LLAMA_SPECIALS, *(f"<0x{b:02X}>" for b in range(256)), *chars]
    merges = _learn_merges(words, VOCAB_TARGET - len(base))
    return tuple(_index([*base, *(m for _, m in merges)])), tuple(p for p, _ in merges)


def llama_tokenizer() -> LlamaTokenizer:
    """Llama tokenizer: bos added on encode, eos ``</s>``, pad = ``<unk>``, left padding."""
    vocab, merges = _llama_vocab()
    tok = LlamaTokenizer(
        vocab={t: i for i, t in enumerate(vocab)},
        merges=list(merges),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        padding_side="left",
        model_max_length=2048,
    )
    tok.chat_template = LLAMA_CHAT_TEMPLATE
    return tok


@lru_cache(maxsize=1)
def _gpt2_vocab() -> tuple[Vocab, Merges]:
    """Byte-level BPE as GPT-2: 256 byte symbols first, merges, ``<|endoftext|>`` LAST (as in GPT-2,
    where it is 50256), so code that assumes special ids are small is caught by the demo."""
    words = _words(_pieces(pre_tokenizers.ByteLevel(add_prefix_space=False)))
    base = _byte_alphabet()
    merges = _learn_merges(words, VOCAB_TARGET - len(base) - 1)
    return tuple(_index([*base, *(m for _, m in merges), GPT2_EOT])), tuple(p for p, _ in merges)


def gpt2_tokenizer() -> GPT2Tokenizer:
    """GPT-2 tokenizer: bos = eos = pad = ``<|endoftext|>``, left padding."""
    vocab, merges = _gpt2_vocab()
    return GPT2Tokenizer(
        vocab={t: i for i, t in enumerate(vocab)},
        merges=list(merges),  # type: ignore[arg-type]  # hinted list[str]; BPE takes pairs
        unk_token=GPT2_EOT,
        bos_token=GPT2_EOT,
        eos_token=GPT2_EOT,
        pad_token=GPT2_EOT,
        padding_side="left",
        model_max_length=512,
    )


def _wordpiece_join(left: str, right: str) -> str:
    return left + right.removeprefix("##")


@lru_cache(maxsize=1)
def _bert_vocab() -> Vocab:
    """Lower-cased WordPiece that keeps accents (``strip_accents=False``), CJK split per character.

    Learned as BPE over words whose non-initial characters carry the ``##`` prefix. Every
    corpus character is in the vocabulary both as a word-initial piece and as a ``##``
    continuation, so any word spelled with corpus characters encodes without ``[UNK]``
    (WordPiece turns a whole word into ``[UNK]`` when one of its characters has no piece).
    """
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    split = _pieces(pre_tokenizers.BertPreTokenizer())
    words = _words(
        lambda line: split(normalizer.normalize_str(line)),
        lambda word: (word[0], *(f"##{c}" for c in word[1:])),
    )
    chars = sorted({c.removeprefix("##") for word in words for c in word})
    base = [*BERT_SPECIALS, *(piece for c in chars for piece in (c, f"##{c}"))]
    merges = _learn_merges(words, VOCAB_TARGET - len(base), join=_wordpiece_join)
    return tuple(_index([*base, *(m for _, m in merges)]))


def bert_tokenizer() -> BertTokenizer:
    """BERT tokenizer: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, right padding."""
    return BertTokenizer(
        vocab={t: i for i, t in enumerate(_bert_vocab())},
        do_lower_case=True,
        strip_accents=False,
        tokenize_chinese_chars=True,
        model_max_length=512,
    )


@lru_cache(maxsize=1)
def _clip_vocab() -> tuple[Vocab, Merges]:
    """CLIP's byte-level BPE, whose last symbol of each word carries the ``</w>`` suffix.

    Words are cut by ``CLIPTokenizer``'s own normalizer and pre-tokenizer. Layout mirrors OpenAI
    CLIP: 256 byte symbols, the same 256 with ``</w>``, learned pieces, then ``<|startoftext|>``
    and ``<|endoftext|>`` last. Having all 512 base symbols means no input byte is unknown.
    """
    backend = CLIPTokenizer().backend_tokenizer  # an empty-vocab instance, to borrow its pipeline
    normalizer, pre = backend.normalizer, backend.pre_tokenizer
    assert normalizer is not None and pre is not None
    split = _pieces(pre)
    words = _words(
        lambda line: split(normalizer.normalize_str(line)),
        lambda word: (*word[:-1], word[-1] + CLIP_EOW),
    )
    alphabet = _byte_alphabet()
    base = [*alphabet, *(c + CLIP_EOW for c in alphabet)]
    merges = _learn_merges(words, VOCAB_TARGET - len(base) - 2)
    vocab = _index([*base, *(m for _, m in merges), CLIP_BOS, CLIP_EOS])
    return tuple(vocab), tuple(p for p, _ in merges)


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP tokenizer: bos <|startoftext|>, eos = pad = unk = <|endoftext|>, 77 positions."""
    vocab, merges = _clip_vocab()
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(vocab)},
        merges=list(merges),  # type: ignore[arg-type]  # hinted list[str]; BPE takes pairs
        model_max_length=77,
    )


def clear_learned_vocabularies() -> None:
    """Forget the per-process cache, so a test can prove that relearning gives the same ids."""
    for cached in (_llama_vocab, _gpt2_vocab, _bert_vocab, _clip_vocab):
        cached.cache_clear()


__all__ = [
    "LLAMA_CHAT_TEMPLATE",
    "bert_tokenizer",
    "clear_learned_vocabularies",
    "clip_tokenizer",
    "gpt2_tokenizer",
    "llama_tokenizer",
]
