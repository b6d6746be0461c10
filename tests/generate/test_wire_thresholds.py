"""Thresholds travel as proto floats (float32): 0.8 arrives as 0.800000011920929. The service
reads them back as the decimal the client wrote, so the core's double-precision comparison is
transformers' comparison with 0.8 (docs/exactness.md) — end to end, the issue's top-p row."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from harness import InProcessServer
from tokenwire.decoding import BatchSampler
from tokenwire.services.generation_params import parse_generate_request
from tokenwire.tasks import Task
from tokenwire.v1 import common_pb2, generation_pb2


def test_top_p_from_the_wire_keeps_what_transformers_keeps(demo_server: InProcessServer) -> None:
    assert demo_server.server is not None
    model = demo_server.server.registry.resolve("tiny-llama", Task.GENERATE)
    engine = demo_server.server.engines.get(model)
    request = generation_pb2.GenerateRequest(
        model="tiny-llama",
        input_ids=[5, 6],
        method=common_pb2.DECODING_METHOD_SAMPLE,
        sampling=common_pb2.SamplingParams(top_p=0.8, min_p=0.05, typical_p=0.9, seed=1),
    )
    assert request.sampling.top_p != 0.8  # float32 on the wire
    params = parse_generate_request(request, model, engine.defaults, engine.max_rows)
    assert (params.sampling.top_p, params.sampling.min_p, params.sampling.typical_p) == (0.8, 0.05, 0.9)
    # transformers' TopPLogitsWarper(0.8) on log([0.3, 0.1, 0.1, 0.5]) keeps ids {3, 0}
    sampler = BatchSampler(4)
    sampler.add(
        "row",
        replace(
            params.sampling,
            min_p=0.0,
            typical_p=1.0,
            bad_words_ids=[],
            logit_bias={},
            eos_token_ids=[],
            min_new_tokens=0,
        ),
        [],
    )
    logits = np.log(np.array([[0.3, 0.1, 0.1, 0.5]], dtype=np.float32))
    kept = {i for i, v in enumerate(sampler.process(logits, ["row"])[0]) if not math.isinf(v)}
    assert kept == {0, 3}
