"""NextSentence: softmax over the NSP head's two logits for the pair (A, B).

Index 0 of BERT's NSP head is "B follows A", index 1 "B is random" (BertForNextSentencePrediction's
label convention), so the result equals tokenizing the pair, running the model and taking the
softmax by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument
from ..models.loader import LoadedModel
from .heads import Needs, RowOutputs
from .limits import require_text


@dataclass(frozen=True)
class NextSentenceParams:
    sentence_a: str
    sentence_b: str
    truncate: bool = False


@dataclass(frozen=True)
class NextSentenceJob:
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None

    needs = Needs(next_sentence=True)


@dataclass(frozen=True)
class NextSentenceResult:
    is_next_probability: float
    not_next_probability: float

    @property
    def is_next(self) -> bool:
        return self.is_next_probability >= self.not_next_probability


def prepare(params: NextSentenceParams, model: LoadedModel) -> NextSentenceJob:
    """Validate and tokenize the pair (off the event loop: long texts take milliseconds)."""
    require_text("sentence_a", params.sentence_a)
    require_text("sentence_b", params.sentence_b)
    tokenizer, limit = model.tokenizer, model.max_input_tokens
    encoded = tokenizer(params.sentence_a, params.sentence_b)
    length = len(encoded["input_ids"])
    if length > limit:
        if not params.truncate:
            # Name the longer segment: that is the one truncation would cut first.
            a = len(tokenizer(params.sentence_a, add_special_tokens=False)["input_ids"])
            b = len(tokenizer(params.sentence_b, add_special_tokens=False)["input_ids"])
            raise InvalidArgument(
                "sentence_a" if a > b else "sentence_b",
                f"sentence_a and sentence_b together must be at most {limit} tokens (the model's "
                f"max_input_tokens), got {length}; set truncate to cut the longer one first",
            )
        # "longest_first" cuts the longer segment, a token at a time, until the pair fits.
        encoded = tokenizer(params.sentence_a, params.sentence_b, truncation="longest_first", max_length=limit)
    types = encoded.get("token_type_ids")
    return NextSentenceJob(tuple(encoded["input_ids"]), tuple(types) if types is not None else None)


def probabilities(outputs: RowOutputs) -> NextSentenceResult:
    """On the model thread: the softmax of the two logits."""
    assert outputs.next_sentence is not None
    is_next = float(outputs.next_sentence.float().softmax(dim=-1)[0])
    return NextSentenceResult(is_next, 1.0 - is_next)
