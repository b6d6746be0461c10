"""FillMask: the most likely tokens for each mask token, as transformers' fill-mask pipeline.

Equal to ``pipeline("fill-mask")`` in tokens, ids and scores (softmax over the whole output
vocabulary, then restricted to ``targets`` when given), and in ``sequence`` for one mask. Where
the protocol differs from the pipeline, the protocol wins:

* several masks: the pipeline keeps [CLS]/[SEP] in ``sequence`` (it cannot skip special tokens
  without losing the other masks); here the other masks stay and the rest are dropped;
* a continuation piece at the very start (e.g. ``##s`` filling a leading mask): the pipeline
  leaves the ``##`` in ``sequence``; here the piece is decoded as the word start it is;
* ``targets``: the pipeline silently takes the first token of a target that is not one
  vocabulary entry; here such a target is INVALID_ARGUMENT, since its score would be that of
  another word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import decoders

from ..errors import FailedPrecondition, InvalidArgument
from ..models.loader import LoadedModel
from .heads import Needs, RowOutputs
from .limits import check_range, require_text, too_long

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_TARGETS = 1024


@dataclass(frozen=True)
class FillMaskParams:
    """A FillMask request, unvalidated: `top_k` 0 means DEFAULT_TOP_K."""

    text: str
    top_k: int = 0
    targets: tuple[str, ...] = ()
    truncate: bool = False


@dataclass(frozen=True)
class FillMaskJob:
    """A validated, tokenized request: what the model thread needs and the decoder after it."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    mask_positions: tuple[int, ...]
    top_k: int
    target_ids: tuple[int, ...] | None

    @property
    def needs(self) -> Needs:
        return Needs(mask_positions=self.mask_positions)


@dataclass(frozen=True)
class Candidate:
    token: str
    token_id: int
    score: float
    sequence: str


def _target_ids(targets: Sequence[str], tokenizer: Any) -> tuple[int, ...]:
    if len(targets) > MAX_TARGETS:
        raise InvalidArgument("targets", f"must have at most {MAX_TARGETS} entries, got {len(targets)}")
    vocab = tokenizer.get_vocab()
    ids: list[int] = []
    for i, target in enumerate(targets):
        if not target:
            raise InvalidArgument(f"targets[{i}]", "must not be empty")
        token_id = vocab.get(target)
        if token_id is None:
            pieces = tokenizer(target, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise InvalidArgument(
                    f"targets[{i}]", f"must be one vocabulary token, got {target!r} ({len(pieces)} tokens)"
                )
            token_id = pieces[0]
        ids.append(int(token_id))
    return tuple(dict.fromkeys(ids))  # the pipeline dedupes too; order only breaks ties


def prepare(params: FillMaskParams, model: LoadedModel) -> FillMaskJob:
    """Validate and tokenize (milliseconds for a long text: call it off the event loop)."""
    tokenizer = model.tokenizer
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise FailedPrecondition(f"model {model.spec.name!r} has no mask token in its tokenizer")
    require_text("text", params.text)
    top_k = check_range("top_k", params.top_k, 0, MAX_TOP_K) or DEFAULT_TOP_K
    target_ids = _target_ids(params.targets, tokenizer) if params.targets else None
    limit = model.max_input_tokens
    encoded = tokenizer(params.text)
    if len(encoded["input_ids"]) > limit:
        if not params.truncate:
            raise too_long("text", len(encoded["input_ids"]), limit)
        encoded = tokenizer(params.text, truncation=True, max_length=limit)
    ids = tuple(int(t) for t in encoded["input_ids"])
    positions = tuple(i for i, t in enumerate(ids) if t == mask_id)
    if not positions:
        where = f" within the first {limit} tokens" if len(ids) == limit and params.truncate else ""
        raise InvalidArgument("text", f"must contain the mask token {tokenizer.mask_token!r}{where}")
    types = encoded.get("token_type_ids")
    # The pipeline caps top_k at the number of targets; the vocabulary caps it too.
    top_k = min(top_k, len(target_ids) if target_ids else top_k, model.config.vocab_size)
    return FillMaskJob(ids, tuple(types) if types is not None else None, positions, top_k, target_ids)


def select(job: FillMaskJob, outputs: RowOutputs) -> tuple[np.ndarray, np.ndarray]:
    """On the model thread: per mask, the top_k (scores, token ids), by descending score."""
    assert outputs.mlm is not None
    probs = outputs.mlm.float().softmax(dim=-1)
    if job.target_ids is not None:
        targets = torch.tensor(job.target_ids, device=probs.device)
        values, index = probs[:, targets].topk(job.top_k)
        ids = targets[index]
    else:
        values, ids = probs.topk(job.top_k)
    return values.cpu().numpy(), ids.cpu().numpy()


def _without_leading_prefix(text: str, ids: Sequence[int], tokenizer: Any) -> str:
    """WordPiece decoders glue "##x" to the token before it but keep the "##" on a first
    token; a sequence that starts with a continuation piece reads without it."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if not ids or not isinstance(decoder, decoders.WordPiece):
        return text
    prefix = decoder.prefix
    first = tokenizer.convert_ids_to_tokens(ids[0])
    if isinstance(first, str) and first.startswith(prefix) and text.startswith(prefix):
        return text[len(prefix) :]
    return text


def candidates(job: FillMaskJob, scores: np.ndarray, ids: np.ndarray, tokenizer: Any) -> list[list[Candidate]]:
    """Decode each candidate and its filled-in sequence (off the event loop)."""
    single = len(job.mask_positions) == 1
    special = set(tokenizer.all_special_ids)
    pad_id = tokenizer.pad_token_id
    out: list[list[Candidate]] = []
    for m, position in enumerate(job.mask_positions):
        other_masks = set(job.mask_positions) - {position}
        row: list[Candidate] = []
        for score, token_id in zip(scores[m].tolist(), ids[m].tolist(), strict=True):
            filled = list(job.input_ids)
            filled[position] = token_id
            if single:  # the pipeline's decoding
                kept = [t for t in filled if t != pad_id and t not in special]
            else:
                kept = [t for j, t in enumerate(filled) if j in other_masks or t not in special]
            sequence = _without_leading_prefix(tokenizer.decode(kept), kept, tokenizer)
            row.append(Candidate(tokenizer.decode([token_id]), int(token_id), float(score), sequence))
        out.append(row)
    return out
