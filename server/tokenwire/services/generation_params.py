"""GenerateRequest / MultimodalChatRequest (protobuf) → validated GenerationParams, with the
model's defaults applied.

Every rejection is an InvalidArgument naming the request field ("sampling.top_p",
"stopping.max_new_tokens", "input_ids[3]"); range checks of the decoding knobs live in
`tokenwire.decoding.params` and are re-labelled here with their request path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import numpy as np

from ..decoding import MAX_TOP_LOGPROBS, BeamParams, InvalidParameter, SamplingParams
from ..decoding.params import LogprobsMode
from ..engine.defaults import GenerationDefaults
from ..engine.params import GenerationParams, Method
from ..errors import InvalidArgument
from ..models.loader import LoadedModel
from ..v1 import common_pb2

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_STOP_TOKEN_IDS = 64
MAX_LOGIT_BIAS_ENTRIES = 1024
MAX_BAD_WORDS = 256
DEFAULT_NUM_BEAMS = 4
ROWS_LIMIT = "the rows the model decodes at once: its max_batch_size, or its KV pool's rows if fewer"
T = TypeVar("T")


_METHODS = {
    common_pb2.DECODING_METHOD_UNSPECIFIED: Method.GREEDY,
    common_pb2.DECODING_METHOD_GREEDY: Method.GREEDY,
    common_pb2.DECODING_METHOD_SAMPLE: Method.SAMPLE,
    common_pb2.DECODING_METHOD_BEAM_SEARCH: Method.BEAM,
}
_EARLY_STOPPING: dict[int, bool | Literal["never"] | None] = {
    common_pb2.EARLY_STOPPING_UNSPECIFIED: None,
    common_pb2.EARLY_STOPPING_NUM_BEAMS_DONE: True,
    common_pb2.EARLY_STOPPING_HEURISTIC: False,
    common_pb2.EARLY_STOPPING_NEVER: "never",
}


_LOGPROBS_MODES: dict[int, LogprobsMode] = {
    common_pb2.LOGPROBS_MODE_UNSPECIFIED: "raw",
    common_pb2.LOGPROBS_MODE_RAW: "raw",
    common_pb2.LOGPROBS_MODE_PROCESSED: "processed",
}


def _decimal(value: float) -> float:
    """A proto `float` as the decimal its sender wrote: 0.8 travels as the float32
    0.800000011920929, and the core compares these thresholds at double precision, as
    transformers compares the Python float 0.8 (docs/exactness.md). The shortest decimal that
    rounds to the same float32 is what the client meant."""
    return float(str(np.float32(value)))


def _relabel(prefix: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except InvalidParameter as exc:
        raise InvalidArgument(f"{prefix}{exc.field}", str(exc)) from None


def _pick(request_value: Any, present: bool, default: Any, neutral: Any) -> Any:
    if present:
        return request_value
    return default if default is not None else neutral


def _prompt_ids(request: Any, model: LoadedModel) -> list[int]:
    has_prompt, has_ids = bool(request.prompt), len(request.input_ids) > 0
    if has_prompt == has_ids:
        raise InvalidArgument(
            "prompt", "exactly one of prompt and input_ids must be set, got " + ("both" if has_prompt else "neither")
        )
    if has_ids:
        ids = list(request.input_ids)
        for i, token in enumerate(ids):
            if token >= model.vocab_size:
                raise InvalidArgument(
                    f"input_ids[{i}]", f"must be below the vocabulary size {model.vocab_size}, got {token}"
                )
        return ids
    add_special = request.add_special_tokens if request.HasField("add_special_tokens") else True
    ids = list(model.tokenizer(request.prompt, add_special_tokens=add_special)["input_ids"])
    if not ids:
        raise InvalidArgument("prompt", "must produce at least one token")
    return ids


def _bad_words(words: Any, model: LoadedModel) -> list[list[int]]:
    if len(words) > MAX_BAD_WORDS:
        raise InvalidArgument("sampling.bad_words", f"must have at most {MAX_BAD_WORDS} entries, got {len(words)}")
    out: list[list[int]] = []
    for i, word in enumerate(words):
        if not word:
            raise InvalidArgument(f"sampling.bad_words[{i}]", "must not be empty")
        # Tokenizers with a leading-space convention encode " word" differently from "word"
        # mid-text; ban both spellings.
        for variant in dict.fromkeys((word, " " + word)):
            ids = list(model.tokenizer(variant, add_special_tokens=False)["input_ids"])
            if ids and ids not in out:
                out.append(ids)
    return out


def _logit_bias(bias: Any, model: LoadedModel) -> dict[int, float]:
    if len(bias) > MAX_LOGIT_BIAS_ENTRIES:
        raise InvalidArgument(
            "sampling.logit_bias", f"must have at most {MAX_LOGIT_BIAS_ENTRIES} entries, got {len(bias)}"
        )
    for token, value in bias.items():
        if token >= model.vocab_size:
            raise InvalidArgument(
                f"sampling.logit_bias[{token}]", f"token id must be below the vocabulary size {model.vocab_size}"
            )
        if not (math.isfinite(value) and -100 <= value <= 100):
            raise InvalidArgument(f"sampling.logit_bias[{token}]", f"must be in [-100, 100], got {value}")
    return dict(bias)


def _max_new_tokens(request: Any, model: LoadedModel, defaults: GenerationDefaults, prompt_len: int) -> int:
    limit = model.spec.max_new_tokens
    room = model.max_total_tokens - prompt_len
    if room < 1:
        raise InvalidArgument(
            "prompt",
            f"prompt has {prompt_len} tokens; the context window of "
            f"{model.max_total_tokens} leaves no room to generate",
        )
    stopping = request.stopping
    if stopping.HasField("max_new_tokens"):
        value = stopping.max_new_tokens
        if not 1 <= value <= limit:
            raise InvalidArgument("stopping.max_new_tokens", f"must be in [1, {limit}], got {value}")
        if value > room:
            raise InvalidArgument(
                "stopping.max_new_tokens",
                f"prompt tokens ({prompt_len}) + "
                f"max_new_tokens ({value}) must be at most the context window "
                f"({model.max_total_tokens})",
            )
        return int(value)
    default = defaults.max_new_tokens
    if default is None and defaults.max_length is not None:
        default = defaults.max_length - prompt_len if defaults.max_length > prompt_len else None
    return max(1, min(limit, room, default or limit))


def parse_generate_request(
    request: Any, model: LoadedModel, defaults: GenerationDefaults, max_rows: int, arrival: float | None = None
) -> GenerationParams:
    """Validate a GenerateRequest against the model."""
    arrival = time.monotonic() if arrival is None else arrival
    prompt_ids = _prompt_ids(request, model)
    if len(prompt_ids) > model.max_input_tokens:
        raise InvalidArgument(
            "input_ids" if len(request.input_ids) else "prompt",
            f"prompt has {len(prompt_ids)} tokens, more than the model's limit "
            f"of {model.max_input_tokens} (max_input_tokens)",
        )
    return parse_generation_options(request, model, defaults, max_rows, arrival, prompt_ids)


def parse_generation_options(
    request: Any,
    model: LoadedModel,
    defaults: GenerationDefaults,
    max_rows: int,
    arrival: float,
    prompt_ids: list[int],
    prefill_inputs: Mapping[str, Any] | None = None,
) -> GenerationParams:
    """Validate the decoding options (`method`, `sampling`, `beam`, `stopping`,
    `num_return_sequences`, `logprobs`, `skip_special_tokens`) of a GenerateRequest or a
    MultimodalChatRequest whose prompt is already tokenized (`prompt_ids`)."""
    if request.method not in _METHODS:
        raise InvalidArgument("method", f"must be a known DecodingMethod, got {request.method}")
    method = _METHODS[request.method]
    s, stopping = request.sampling, request.stopping
    max_new = _max_new_tokens(request, model, defaults, len(prompt_ids))
    if stopping.min_new_tokens > max_new:
        raise InvalidArgument(
            "stopping.min_new_tokens", f"must be at most max_new_tokens ({max_new}), got {stopping.min_new_tokens}"
        )
    stops = tuple(stopping.stop)
    if len(stops) > MAX_STOP_STRINGS:
        raise InvalidArgument("stopping.stop", f"must have at most {MAX_STOP_STRINGS} entries, got {len(stops)}")
    for i, stop in enumerate(stops):
        if not stop or len(stop) > MAX_STOP_CHARS:
            raise InvalidArgument(f"stopping.stop[{i}]", f"must have 1 to {MAX_STOP_CHARS} characters")
    if len(stopping.stop_token_ids) > MAX_STOP_TOKEN_IDS:
        raise InvalidArgument("stopping.stop_token_ids", f"must have at most {MAX_STOP_TOKEN_IDS} entries")
    for i, token in enumerate(stopping.stop_token_ids):
        if token >= model.vocab_size:
            raise InvalidArgument(
                f"stopping.stop_token_ids[{i}]", f"must be below the vocabulary size {model.vocab_size}, got {token}"
            )
    stop_ids = frozenset(stopping.stop_token_ids)
    eos = frozenset() if stopping.ignore_eos else frozenset(model.special_token_ids.get("eos", []))
    if request.logprobs.top_n > MAX_TOP_LOGPROBS:
        raise InvalidArgument("logprobs.top_n", f"must be in [0, {MAX_TOP_LOGPROBS}], got {request.logprobs.top_n}")
    temperature = _pick(s.temperature, s.HasField("temperature"), defaults.temperature, 1.0)
    if not (math.isfinite(temperature) and 0 <= temperature <= 100):
        raise InvalidArgument("sampling.temperature", f"must be in [0, 100], got {temperature}")
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(s, name)
        if not (math.isfinite(value) and -2 <= value <= 2):
            raise InvalidArgument(f"sampling.{name}", f"must be in [-2, 2], got {value}")
    edits: dict[str, Any] = dict(
        logit_bias=_logit_bias(s.logit_bias, model),
        repetition_penalty=_pick(
            s.repetition_penalty, s.HasField("repetition_penalty"), defaults.repetition_penalty, 1.0
        ),
        frequency_penalty=s.frequency_penalty,
        presence_penalty=s.presence_penalty,
        no_repeat_ngram_size=_pick(
            s.no_repeat_ngram_size, s.HasField("no_repeat_ngram_size"), defaults.no_repeat_ngram_size, 0
        ),
        bad_words_ids=_bad_words(s.bad_words, model),
        min_new_tokens=stopping.min_new_tokens,
        eos_token_ids=sorted(eos | stop_ids),
    )
    if not (math.isfinite(edits["repetition_penalty"]) and 0 < edits["repetition_penalty"] <= 100):
        raise InvalidArgument("sampling.repetition_penalty", f"must be in (0, 100], got {edits['repetition_penalty']}")
    n = request.num_return_sequences or 1
    beam: BeamParams | None = None
    if method is Method.BEAM:
        b = request.beam
        num_beams = (
            b.num_beams
            if b.HasField("num_beams")
            else (defaults.num_beams if defaults.num_beams and defaults.num_beams > 1 else DEFAULT_NUM_BEAMS)
        )
        if not 1 <= num_beams <= max_rows:
            raise InvalidArgument("beam.num_beams", f"must be in [1, {max_rows}] ({ROWS_LIMIT}), got {num_beams}")
        if not 1 <= n <= num_beams:
            raise InvalidArgument(
                "num_return_sequences", f"must be in [1, num_beams={num_beams}] for beam search, got {n}"
            )
        if stops:
            raise InvalidArgument(
                "stopping.stop",
                "beam search cannot honour stop strings (hypotheses are scored as token sequences); use stop_token_ids",
            )
        if request.logprobs.enabled:
            raise InvalidArgument(
                "logprobs.enabled",
                "per-token logprobs are not available with beam search; each sequence carries its beam score",
            )
        if b.early_stopping not in _EARLY_STOPPING:
            raise InvalidArgument("beam.early_stopping", f"must be a known EarlyStopping, got {b.early_stopping}")
        chosen = _EARLY_STOPPING[b.early_stopping]
        if chosen is None:
            chosen = defaults.early_stopping if defaults.early_stopping is not None else False
        early: bool | Literal["never"] = "never" if chosen == "never" else bool(chosen)
        length_penalty = _pick(b.length_penalty, b.HasField("length_penalty"), defaults.length_penalty, 1.0)
        beam = _relabel(
            "beam.",
            lambda: BeamParams(
                num_beams=num_beams,
                max_new_tokens=max_new,
                length_penalty=length_penalty,
                early_stopping=early,
                num_return_sequences=n,
                **edits,
            ),
        )
    elif method is Method.GREEDY and n != 1:
        raise InvalidArgument(
            "num_return_sequences", f"must be 1 for greedy decoding (all sequences would be identical), got {n}"
        )
    elif not 1 <= n <= max_rows:
        raise InvalidArgument("num_return_sequences", f"must be in [1, {max_rows}] ({ROWS_LIMIT}), got {n}")

    sample = method is Method.SAMPLE
    if request.logprobs.mode not in _LOGPROBS_MODES:
        raise InvalidArgument("logprobs.mode", f"unknown value {request.logprobs.mode}")
    sampling = _relabel(
        "sampling.",
        lambda: SamplingParams(
            temperature=temperature if sample else 1.0,
            top_k=_pick(s.top_k, s.HasField("top_k"), defaults.top_k, 0) if sample else 0,
            top_p=_pick(_decimal(s.top_p), s.HasField("top_p"), defaults.top_p, 1.0) if sample else 1.0,
            min_p=_pick(_decimal(s.min_p), s.HasField("min_p"), defaults.min_p, 0.0) if sample else 0.0,
            typical_p=_pick(_decimal(s.typical_p), s.HasField("typical_p"), defaults.typical_p, 1.0) if sample else 1.0,
            greedy=not sample,
            seed=s.seed if s.HasField("seed") else None,
            logprobs=request.logprobs.enabled,
            top_logprobs=request.logprobs.top_n if request.logprobs.enabled else 0,
            logprobs_mode=_LOGPROBS_MODES[request.logprobs.mode],
            **edits,
        ),
    )
    limit = request.stopping.time_limit_ms
    skip = request.skip_special_tokens if request.HasField("skip_special_tokens") else True
    return GenerationParams(
        prompt_ids=prompt_ids,
        method=method,
        n=n,
        sampling=sampling,
        beam=beam,
        max_new_tokens=max_new,
        min_new_tokens=stopping.min_new_tokens,
        stop=stops,
        stop_token_ids=stop_ids,
        eos_token_ids=eos,
        include_stop=stopping.include_stop_in_output,
        deadline=arrival + limit / 1000 if limit else None,
        logprobs=request.logprobs.enabled,
        top_n=request.logprobs.top_n if request.logprobs.enabled else 0,
        skip_special_tokens=skip,
        prefill_inputs=prefill_inputs,
    )
