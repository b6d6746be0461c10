"""One padded forward of an encoder, reading only the head outputs that the rows need.

A generic forward returns every head over every position; for a BERT-base-shaped
BertForPreTraining that is a [batch, tokens, 30522] MLM tensor (the head adds about 28 % to
the encoder's work at every position) when fill-mask needs a few rows of it and next-sentence
none. So, for the architectures in ``_SPLIT``, the encoder runs once and each head runs only
on the positions asked for — the same modules on the same hidden states, so the numbers equal
the full forward's. Other checkpoints take the generic path, which picks the output fields
by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Needs:
    """What one row reads from the forward."""

    mask_positions: tuple[int, ...] = ()
    """Token positions whose MLM logits are wanted (fill-mask)."""
    next_sentence: bool = False
    """The two NSP logits of the pooled [CLS] output."""
    spans: bool = False
    """Start and end logits of every (unpadded) position (question answering)."""
    sequence_logits: bool = False
    """The row's classifier logits (text classification, reranking, custom heads)."""
    token_logits: bool = False
    """The classifier logits of every (unpadded) position (token classification)."""
    token_states: bool = False
    """The last hidden state of every (unpadded) position (sentence embeddings)."""


@dataclass
class RowOutputs:
    """The head outputs of one row, unpadded, on the model's device."""

    mlm: torch.Tensor | None = None
    """[len(mask_positions), vocab] logits."""
    next_sentence: torch.Tensor | None = None
    """[2] logits: index 0 = "B follows A", 1 = "B is random"."""
    start: torch.Tensor | None = None
    """[length] start logits."""
    end: torch.Tensor | None = None
    """[length] end logits."""
    logits: torch.Tensor | None = None
    """[labels] (sequence_logits) or [length, labels] (token_logits)."""
    states: torch.Tensor | None = None
    """[length, hidden] last hidden states."""


@dataclass(frozen=True)
class _Split:
    encoder: str
    mlm_head: str | None
    nsp_head: str | None


# Class name → (encoder attribute, MLM head applied to hidden states, NSP head applied to the
# pooled output). Each entry mirrors that class's own forward().
_SPLIT: dict[str, _Split] = {
    "BertForPreTraining": _Split("bert", "cls.predictions", "cls.seq_relationship"),
    "BertForMaskedLM": _Split("bert", "cls.predictions", None),
    "BertForNextSentencePrediction": _Split("bert", None, "cls"),
}
# Output field names of the generic path, most specific first.
_MLM_FIELDS = ("prediction_logits", "logits")
_NSP_FIELDS = ("seq_relationship_logits", "logits")


def _attr(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _field(outputs: Any, names: tuple[str, ...]) -> torch.Tensor:
    for name in names:
        value = getattr(outputs, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise RuntimeError(f"the model's outputs have none of {', '.join(names)}")


class EncoderHeads:
    """Runs padded batches through one module, split or generic (see the module docstring)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self._split = _SPLIT.get(type(module).__name__)
        self.device = next(module.parameters()).device

    def __call__(
        self, inputs: dict[str, torch.Tensor], lengths: Sequence[int], needs: Sequence[Needs]
    ) -> list[RowOutputs]:
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            if self._split is not None:
                return self._run_split(self._split, inputs, needs)
            return self._run_generic(inputs, lengths, needs)

    def _run_split(self, split: _Split, inputs: dict[str, torch.Tensor], needs: Sequence[Needs]) -> list[RowOutputs]:
        encoder_outputs = _attr(self.module, split.encoder)(**inputs, return_dict=True)
        hidden = encoder_outputs.last_hidden_state
        rows = [RowOutputs() for _ in needs]
        wanted = [(i, p) for i, n in enumerate(needs) for p in n.mask_positions]
        if wanted:
            assert split.mlm_head is not None, "fill-mask rows sent to a module without an MLM head"
            index_rows = torch.tensor([i for i, _ in wanted], device=hidden.device)
            index_pos = torch.tensor([p for _, p in wanted], device=hidden.device)
            logits = _attr(self.module, split.mlm_head)(hidden[index_rows, index_pos])
            offset = 0
            for i, n in enumerate(needs):
                rows[i].mlm = logits[offset : offset + len(n.mask_positions)]
                offset += len(n.mask_positions)
        nsp_rows = [i for i, n in enumerate(needs) if n.next_sentence]
        if nsp_rows:
            assert split.nsp_head is not None, "next-sentence rows sent to a module without an NSP head"
            pooled = encoder_outputs.pooler_output[torch.tensor(nsp_rows, device=hidden.device)]
            logits = _attr(self.module, split.nsp_head)(pooled)
            for j, i in enumerate(nsp_rows):
                rows[i].next_sentence = logits[j]
        if any(n.spans or n.sequence_logits or n.token_logits or n.token_states for n in needs):
            raise RuntimeError(f"{type(self.module).__name__} serves fill-mask and next-sentence rows only")
        return rows

    def _run_generic(
        self, inputs: dict[str, torch.Tensor], lengths: Sequence[int], needs: Sequence[Needs]
    ) -> list[RowOutputs]:
        outputs = self.module(**inputs, return_dict=True)
        rows = []
        for i, (length, n) in enumerate(zip(lengths, needs, strict=True)):
            row = RowOutputs()
            if n.mask_positions:
                row.mlm = _field(outputs, _MLM_FIELDS)[i, list(n.mask_positions)]
            if n.next_sentence:
                row.next_sentence = _field(outputs, _NSP_FIELDS)[i]
            if n.spans:
                row.start = outputs.start_logits[i, :length]
                row.end = outputs.end_logits[i, :length]
            if n.sequence_logits:
                row.logits = outputs.logits[i]
            if n.token_logits:
                row.logits = outputs.logits[i, :length]
            if n.token_states:
                row.states = outputs.last_hidden_state[i, :length]
            rows.append(row)
        return rows
