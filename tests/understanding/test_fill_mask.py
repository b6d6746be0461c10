"""FillMask against transformers' fill-mask pipeline on the demo model, and its limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from transformers import AutoTokenizer, BertForMaskedLM, pipeline

from tokenwire.client import Client, field_violations
from tokenwire.v1 import understanding_pb2 as pb

EIFFEL = "The capital of France, [MASK], contains the Eiffel Tower."
TWO_MASKS = "[MASK] is the capital of France, and [MASK] is the capital of Japan."


@pytest.fixture(scope="module")
def fill_mask(demo_models_dir: Path) -> Any:
    path = demo_models_dir / "tiny-bert"
    return pipeline(
        "fill-mask", model=BertForMaskedLM.from_pretrained(path), tokenizer=AutoTokenizer.from_pretrained(path)
    )


def _same(candidates: Any, expected: list[dict[str, Any]], sequences: bool = True) -> None:
    assert [c.token_id for c in candidates] == [e["token"] for e in expected]
    assert [c.token for c in candidates] == [e["token_str"] for e in expected]
    assert [c.score for c in candidates] == pytest.approx([e["score"] for e in expected], abs=1e-5, rel=1e-4)
    if sequences:
        # The pipeline leaves "##" on a continuation piece that starts the text; we do not.
        assert [c.sequence for c in candidates] == [e["sequence"].removeprefix("##") for e in expected]


def _invalid(call: Any, request: Any) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    violations = field_violations(info.value)
    assert violations, "INVALID_ARGUMENT must carry a BadRequest naming the field"
    return violations[0]


@pytest.mark.parametrize("top_k", [10, 1, 100])
def test_single_mask_equals_pipeline(uw: Client, fill_mask: Any, top_k: int) -> None:
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, top_k=top_k))
    assert len(reply.masks) == 1
    _same(reply.masks[0].candidates, fill_mask(EIFFEL, top_k=top_k))


def test_default_top_k_is_five(uw: Client, fill_mask: Any) -> None:
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert", text="hello [MASK] world"))
    _same(reply.masks[0].candidates, fill_mask("hello [MASK] world"))
    assert len(reply.masks[0].candidates) == 5


def test_several_masks_equal_the_pipeline_per_mask(uw: Client, fill_mask: Any) -> None:
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert", text=TWO_MASKS, top_k=4))
    expected = fill_mask(TWO_MASKS, top_k=4)
    assert len(reply.masks) == len(expected) == 2
    for mask, exp in zip(reply.masks, expected, strict=True):
        # The pipeline keeps [CLS]/[SEP] in multi-mask sequences; the protocol drops them.
        _same(mask.candidates, exp, sequences=False)
        for cand, e in zip(mask.candidates, exp, strict=True):
            assert cand.sequence == re.sub(r"^\[CLS\] ?", "", e["sequence"]).removesuffix(" [SEP]")
            assert not cand.sequence.startswith("##")
            assert cand.sequence.count("[MASK]") == 1 and "[CLS]" not in cand.sequence


def test_targets_restrict_candidates_and_cap_top_k(uw: Client, fill_mask: Any) -> None:
    # "Tokyo" is not a vocabulary entry but lower-cases to the single token "tokyo".
    targets = ["france", "Tokyo", "man", "watches", "tokyo"]
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, top_k=10, targets=targets))
    expected = fill_mask(EIFFEL, top_k=10, targets=targets)
    assert len(reply.masks[0].candidates) == 4  # capped at the distinct targets
    _same(reply.masks[0].candidates, expected)


def test_sequence_is_detokenized_text(uw: Client) -> None:
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, targets=["tokyo"]))
    cand = reply.masks[0].candidates[0]
    assert cand.token == "tokyo"
    assert cand.sequence == "the capital of france, tokyo, contains the eiffel tower."
    # A continuation piece filling the first word: no stray "##" (the token keeps it).
    reply = uw.understanding.FillMask(
        pb.FillMaskRequest(model="tiny-bert", text="[MASK] is the capital.", targets=["##0"])
    )
    cand = reply.masks[0].candidates[0]
    assert (cand.token, cand.sequence) == ("##0", "0 is the capital.")


def test_truncate_cuts_text_and_drops_masks_cut_off(uw: Client, fill_mask: Any) -> None:
    text = "[MASK] is the capital of France and it is a big city with many people in it, [MASK]."
    request = pb.FillMaskRequest(model="tiny-bert-16", text=text, top_k=3)
    field, description = _invalid(uw.understanding.FillMask, request)
    assert field == "text" and "16" in description and "truncate" in description
    tokens = len(fill_mask.tokenizer(text)["input_ids"])
    assert f"got {tokens}" in description
    request.truncate = True
    reply = uw.understanding.FillMask(request)
    assert len(reply.masks) == 1
    expected = fill_mask(text, top_k=3, tokenizer_kwargs={"truncation": True, "max_length": 16})
    _same(reply.masks[0].candidates, expected, sequences=False)
    # Only mask cut off: nothing left to fill.
    late = "The capital of France is a big city with many people in it and also [MASK]."
    field, description = _invalid(
        uw.understanding.FillMask, pb.FillMaskRequest(model="tiny-bert-16", text=late, truncate=True)
    )
    assert field == "text" and "[MASK]" in description


@pytest.mark.parametrize(
    "request_, field",
    [
        (pb.FillMaskRequest(model="tiny-bert", text="no mask here"), "text"),
        (pb.FillMaskRequest(model="tiny-bert", text=""), "text"),
        (pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, top_k=101), "top_k"),
        (pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, targets=["eiffel tower"]), "targets[0]"),
        (pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, targets=["man", ""]), "targets[1]"),
        (pb.FillMaskRequest(model="tiny-bert", text=EIFFEL, targets=["man"] * 1025), "targets"),
    ],
)
def test_invalid_requests_name_the_field(uw: Client, request_: Any, field: str) -> None:
    assert _invalid(uw.understanding.FillMask, request_)[0] == field


def test_wrong_task_and_unknown_model(uw: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-bert-qa", text=EIFFEL))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "answer_question" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        uw.understanding.FillMask(pb.FillMaskRequest(model="nope", text=EIFFEL))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France, <mask>, contains the tower.",
        "<mask> is it.",
        "The <mask> of France and the <mask> of Japan.",
    ],
)
def test_roberta_style_mask_equals_pipeline(uw: Client, roberta_dir: Path, text: str) -> None:
    from transformers import AutoModelForMaskedLM

    fill = pipeline(
        "fill-mask",
        model=AutoModelForMaskedLM.from_pretrained(roberta_dir),
        tokenizer=AutoTokenizer.from_pretrained(roberta_dir),
    )
    reply = uw.understanding.FillMask(pb.FillMaskRequest(model="tiny-roberta", text=text, top_k=6))
    expected = fill(text, top_k=6)
    if text.count("<mask>") == 1:
        _same(reply.masks[0].candidates, expected)
        return
    assert len(reply.masks) == 2
    for mask, exp in zip(reply.masks, expected, strict=True):
        _same(mask.candidates, exp, sequences=False)
        for cand, e in zip(mask.candidates, exp, strict=True):
            assert cand.sequence == e["sequence"].removeprefix("<s>").removesuffix("</s>")
