"""The split forward (encoder once, heads on the asked-for rows) equals the full forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertForMaskedLM, BertForNextSentencePrediction, BertForPreTraining

from tokenwire.understanding.heads import EncoderHeads, Needs

IDS = torch.tensor([[2, 440, 4, 17, 503, 3], [2, 4, 825, 4, 3, 0]])
INPUTS = {"input_ids": IDS, "attention_mask": (IDS != 0).long(), "token_type_ids": torch.zeros_like(IDS)}


@pytest.mark.parametrize(
    "cls, mlm, nsp",
    [(BertForPreTraining, True, True), (BertForMaskedLM, True, False), (BertForNextSentencePrediction, False, True)],
)
def test_split_heads_equal_the_full_forward(demo_models_dir: Path, cls: type, mlm: bool, nsp: bool) -> None:
    module = cls.from_pretrained(demo_models_dir / "tiny-bert").eval()
    split, full = EncoderHeads(module), EncoderHeads(module)
    assert split._split is not None
    full._split = None  # force the generic path
    needs = [
        Needs(mask_positions=(2,) if mlm else (), next_sentence=nsp),
        Needs(mask_positions=(1, 3) if mlm else (), next_sentence=nsp),
    ]
    for a, b in zip(split(INPUTS, [6, 5], needs), full(INPUTS, [6, 5], needs), strict=True):
        for got, want in ((a.mlm, b.mlm), (a.next_sentence, b.next_sentence)):
            assert (got is None) == (want is None)
            if got is not None:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert (a.mlm is not None) == mlm and (a.next_sentence is not None) == nsp


def test_length_groups_cut_padding_but_not_into_tiny_forwards() -> None:
    from tokenwire.understanding.runner import MIN_GROUP_TOKENS, length_groups

    lengths = [21, 9, 15, 23, 13, 33, 20, 27] * 4
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    padded = sum(max(lengths[i] for i in g) * len(g) for g in groups)
    assert len(groups) > 1 and padded < 0.8 * max(lengths) * len(lengths)
    for g in groups[:-1]:  # every group but the longest rows' has enough tokens to be worth a forward
        assert max(lengths[i] for i in g) * len(g) >= MIN_GROUP_TOKENS
    assert length_groups([7] * 50) == [list(range(50))]  # equal lengths: one forward
    assert length_groups([]) == []
