"""Parameter validation: one message shape, a field name for the server's INVALID_ARGUMENT."""

from __future__ import annotations

import pytest

from tokenwire.decoding import BatchSampler, BeamParams, InvalidParameter, SamplingParams


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"top_p": 1.5}, "top_p", "top_p must be in (0, 1], got 1.5"),
        ({"top_p": 0.0}, "top_p", "top_p must be in (0, 1], got 0.0"),
        ({"temperature": -1.0}, "temperature", "temperature must be >= 0, got -1.0"),
        ({"top_k": -1}, "top_k", "top_k must be >= 0, got -1"),
        ({"min_p": 2.0}, "min_p", "min_p must be in [0, 1], got 2.0"),
        ({"typical_p": 0.0}, "typical_p", "typical_p must be in (0, 1], got 0.0"),
        ({"repetition_penalty": 0.0}, "repetition_penalty", "repetition_penalty must be > 0, got 0.0"),
        ({"frequency_penalty": 3.0}, "frequency_penalty", "frequency_penalty must be in [-2, 2], got 3.0"),
        ({"top_logprobs": 21}, "top_logprobs", "top_logprobs must be in [0, 20], got 21"),
        ({"seed": -1}, "seed", "seed must be in [0, 2**64), got -1"),
        ({"temperature": float("nan")}, "temperature", "temperature must be a finite number, got nan"),
        ({"logit_bias": {3: 500.0}}, "logit_bias", "logit_bias must be values in [-100, 100], got 500.0"),
        ({"bad_words_ids": [[]]}, "bad_words_ids", "bad_words_ids must be non-empty id sequences, got []"),
        ({"logprobs_mode": "cooked"}, "logprobs_mode", "logprobs_mode must be 'processed' or 'raw', got 'cooked'"),
    ],
)
def test_invalid_sampling_params(kwargs: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        SamplingParams(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
    assert str(e.value) == message
    assert isinstance(e.value, ValueError)


def test_token_ids_are_checked_against_the_vocabulary() -> None:
    s = BatchSampler(100)
    for kwargs, field in [
        ({"logit_bias": {100: 1.0}}, "logit_bias"),
        ({"eos_token_ids": [100]}, "eos_token_ids"),
        ({"bad_words_ids": [[5, 120]]}, "bad_words_ids"),
    ]:
        with pytest.raises(InvalidParameter, match=r"in \[0, 100\)") as e:
            s.add("r", SamplingParams(**kwargs), [1])  # type: ignore[arg-type]
        assert e.value.field == field
    assert "r" not in s


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_invalid_beam_params(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        BeamParams(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field


def test_neutral_values_mean_stage_absent() -> None:
    s = BatchSampler(50)
    s.add("plain", SamplingParams(), [])
    s.add("greedy", SamplingParams(temperature=0.0, top_k=5, top_p=0.5, repetition_penalty=1.2), [])
    s.add(
        "full",
        SamplingParams(
            logit_bias={1: 1.0},
            repetition_penalty=1.1,
            frequency_penalty=0.1,
            no_repeat_ngram_size=3,
            bad_words_ids=[[2]],
            min_new_tokens=2,
            eos_token_ids=[3],
            temperature=0.7,
            top_k=5,
            top_p=0.9,
            min_p=0.05,
            typical_p=0.9,
        ),
        [],
    )
    assert s.stages("plain") == ["categorical"]
    assert s.stages("greedy") == ["repetition_penalty", "greedy"]
    assert s.stages("full") == [
        "logit_bias",
        "repetition_penalty",
        "frequency_presence_penalty",
        "no_repeat_ngram",
        "bad_words",
        "min_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "categorical",
    ]
