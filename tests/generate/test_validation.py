"""Bad Generate requests get INVALID_ARGUMENT naming the field, before any work is queued."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from tokenwire.client import Client, field_violations
from tokenwire.v1 import common_pb2, generation_pb2

S, B, L = common_pb2.SamplingParams, common_pb2.BeamParams, common_pb2.StoppingParams
SAMPLE = common_pb2.DECODING_METHOD_SAMPLE
BEAM = common_pb2.DECODING_METHOD_BEAM_SEARCH
LONG = "word " * 3000

CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": ""}, "prompt", "exactly one of prompt and input_ids"),
    ({"prompt": "hi", "input_ids": [1, 2]}, "prompt", "got both"),
    ({"prompt": "", "input_ids": [1, 5, 99999]}, "input_ids[2]", "below the vocabulary size"),
    ({"prompt": LONG}, "prompt", "more than the model's limit"),
    ({"method": SAMPLE, "sampling": S(top_p=1.5)}, "sampling.top_p", "top_p must be in (0, 1], got 1.5"),
    ({"method": SAMPLE, "sampling": S(temperature=-1)}, "sampling.temperature", "must be in [0, 100]"),
    ({"method": SAMPLE, "sampling": S(min_p=2)}, "sampling.min_p", "min_p must be in [0, 1]"),
    ({"method": SAMPLE, "sampling": S(typical_p=0)}, "sampling.typical_p", "typical_p must be in (0, 1]"),
    ({"sampling": S(repetition_penalty=0)}, "sampling.repetition_penalty", "must be in (0, 100]"),
    ({"sampling": S(frequency_penalty=3)}, "sampling.frequency_penalty", "must be in [-2, 2]"),
    ({"sampling": S(logit_bias={999999: 1.0})}, "sampling.logit_bias[999999]", "vocabulary size"),
    ({"sampling": S(logit_bias={5: 500.0})}, "sampling.logit_bias[5]", "must be in [-100, 100]"),
    ({"sampling": S(bad_words=["ok", ""])}, "sampling.bad_words[1]", "must not be empty"),
    ({"method": BEAM, "beam": B(num_beams=1000)}, "beam.num_beams", "must be in [1, 32]"),
    ({"method": BEAM, "beam": B(num_beams=2), "num_return_sequences": 3}, "num_return_sequences", "num_beams=2"),
    ({"method": BEAM, "stopping": L(stop=["x"])}, "stopping.stop", "beam search cannot honour stop strings"),
    ({"method": BEAM, "logprobs": common_pb2.LogprobsParams(enabled=True)}, "logprobs.enabled", "beam search"),
    ({"num_return_sequences": 2}, "num_return_sequences", "must be 1 for greedy"),
    ({"method": SAMPLE, "num_return_sequences": 100}, "num_return_sequences", "must be in [1, 32]"),
    ({"stopping": L(max_new_tokens=3000)}, "stopping.max_new_tokens", "must be in [1, 2048]"),
    ({"stopping": L(max_new_tokens=2047)}, "stopping.max_new_tokens", "must be at most the context window (2048)"),
    ({"stopping": L(max_new_tokens=4, min_new_tokens=5)}, "stopping.min_new_tokens", "at most max_new_tokens"),
    ({"stopping": L(stop=["s"] * 17)}, "stopping.stop", "at most 16"),
    ({"stopping": L(stop=["x" * 300])}, "stopping.stop[0]", "1 to 256 characters"),
    ({"stopping": L(stop_token_ids=[123456])}, "stopping.stop_token_ids[0]", "vocabulary size"),
    ({"logprobs": common_pb2.LogprobsParams(enabled=True, top_n=21)}, "logprobs.top_n", "[0, 20]"),
    ({"method": 17}, "method", "known DecodingMethod"),
]


@pytest.mark.parametrize("fields, field, message", CASES, ids=[c[1] + ":" + c[2][:20] for c in CASES])
def test_invalid_request_names_the_field(client: Client, fields: dict[str, Any], field: str, message: str) -> None:
    fields = dict(fields)
    fields.setdefault("prompt", "" if "input_ids" in fields and "prompt" not in fields else "Hello there")
    request = generation_pb2.GenerateRequest(model="tiny-llama", **fields)
    for call in (client.generation.Generate, lambda r: list(client.generation.GenerateStream(r))):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        violations = field_violations(err.value)
        assert [f for f, _ in violations] == [field]
        assert message in violations[0][1], violations
