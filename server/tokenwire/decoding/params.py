"""Decoding parameters: validated, normalised, converted to the core's structs.

Every stage parameter has a neutral value, and the neutral value means "stage absent" (the
core leaves the stage out of the chain). Validation lives here, apart from the kernels, with
one message shape: ``"<field> must be <range>, got <value>"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import tokenwire._core as _core
from tokenwire.decoding.errors import InvalidParameter

MAX_TOP_LOGPROBS = 20
MAX_LOGIT_BIAS = 100.0
_U64 = 1 << 64

LogprobsMode = Literal["processed", "raw"]
EarlyStopping = bool | Literal["never"]


def _check(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise InvalidParameter(name, f"{name} must be {rule}, got {value!r}")


def _finite(name: str, value: float) -> None:
    _check(isinstance(value, (int, float)) and math.isfinite(value), name, "a finite number", value)


def _int(name: str, value: object) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool), name, "an integer", value)


def _ids(name: str, ids: Sequence[int], vocab_size: int | None) -> None:
    for t in ids:
        _int(name, t)
        if vocab_size is None:
            _check(t >= 0, name, "token ids >= 0", t)
        else:
            _check(0 <= t < vocab_size, name, f"token ids in [0, {vocab_size})", t)


@dataclass(frozen=True, kw_only=True)
class EditParams:
    """The logit edits (pipeline steps 1-6), shared by sampling and beam search.

    Attributes (neutral value = stage absent):
        logit_bias: token id → value added to its logit; ``{}``.
        repetition_penalty: transformers' rule over prompt + generated (x < 0: x × p,
            else x / p); ``1.0``.
        frequency_penalty: OpenAI, ``x -= count × f`` over generated tokens; ``0.0``.
        presence_penalty: OpenAI, ``x -= p`` for tokens generated at least once; ``0.0``.
        no_repeat_ngram_size: no n-gram of prompt + generated occurs twice; ``0``.
        bad_words_ids: id sequences never completed (one-id words are always banned, except
            one equal to an EOS id: EOS is never banned, as in transformers); ``()``.
        min_new_tokens: EOS ids are banned until this many new tokens; ``0``.
        eos_token_ids: the EOS ids (min_new_tokens, the bad words' EOS exception, and beam
            search's end of hypothesis).
    """

    logit_bias: Mapping[int, float] = field(default_factory=dict)
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    bad_words_ids: Sequence[Sequence[int]] = ()
    min_new_tokens: int = 0
    eos_token_ids: Sequence[int] = ()

    def __post_init__(self) -> None:
        self._validate_edits(None)

    def _validate_edits(self, vocab_size: int | None) -> None:
        for name in ("repetition_penalty", "frequency_penalty", "presence_penalty"):
            _finite(name, getattr(self, name))
        _check(self.repetition_penalty > 0, "repetition_penalty", "> 0", self.repetition_penalty)
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            _check(-2.0 <= v <= 2.0, name, "in [-2, 2]", v)
        _int("no_repeat_ngram_size", self.no_repeat_ngram_size)
        _check(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", ">= 0", self.no_repeat_ngram_size)
        _int("min_new_tokens", self.min_new_tokens)
        _check(self.min_new_tokens >= 0, "min_new_tokens", ">= 0", self.min_new_tokens)
        _ids("eos_token_ids", self.eos_token_ids, vocab_size)
        _ids("logit_bias", list(self.logit_bias), vocab_size)
        for b in self.logit_bias.values():
            _finite("logit_bias", b)
            _check(abs(b) <= MAX_LOGIT_BIAS, "logit_bias", f"values in [-{MAX_LOGIT_BIAS:g}, {MAX_LOGIT_BIAS:g}]", b)
        for word in self.bad_words_ids:
            _check(len(word) > 0, "bad_words_ids", "non-empty id sequences", list(word))
            _ids("bad_words_ids", word, vocab_size)

    def _fill_edits(self, p: _core.SamplingParams) -> None:
        p.logit_bias = [(int(t), float(b)) for t, b in self.logit_bias.items()]
        p.repetition_penalty = self.repetition_penalty
        p.frequency_penalty = self.frequency_penalty
        p.presence_penalty = self.presence_penalty
        p.no_repeat_ngram_size = self.no_repeat_ngram_size
        p.bad_words = [list(w) for w in self.bad_words_ids]
        p.min_new_tokens = self.min_new_tokens
        p.eos_token_ids = list(self.eos_token_ids)


@dataclass(frozen=True, kw_only=True)
class SamplingParams(EditParams):
    """Parameters of one sampled (or greedy) sequence. See the module docstring of
    ``tokenwire.decoding`` for the pipeline order.

    Attributes (neutral value = stage absent), besides EditParams':
        temperature: logits / t. ``0`` means greedy (argmax, lowest id on ties); ``1.0``.
        top_k: keep the k largest (ties with the k-th kept); ``0``.
        top_p: keep the smallest top set whose mass reaches p, decided as transformers does
            on float32 (docs/exactness.md); ``1.0``.
        min_p: keep p >= min_p × p_max; ``0.0``.
        typical_p: locally typical sampling mass; ``1.0``.
        greedy: argmax instead of sampling (also implied by temperature 0).
        seed: the request's seed; ``None`` = pick one at random (reported by the sampler).
            A row's tokens depend on (seed, stream, position) only.
        logprobs: return the chosen token's log-probability and rank.
        top_logprobs: also return this many alternatives, in [0, 20].
        logprobs_mode: "processed" (the distribution the token was chosen from) or "raw"
            (log_softmax of the model's logits).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    greedy: bool = False
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    logprobs_mode: LogprobsMode = "processed"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("temperature", "top_p", "min_p", "typical_p"):
            _finite(name, getattr(self, name))
        _check(self.temperature >= 0, "temperature", ">= 0", self.temperature)
        _int("top_k", self.top_k)
        _check(self.top_k >= 0, "top_k", ">= 0", self.top_k)
        _check(0 < self.top_p <= 1, "top_p", "in (0, 1]", self.top_p)
        _check(0 <= self.min_p <= 1, "min_p", "in [0, 1]", self.min_p)
        _check(0 < self.typical_p <= 1, "typical_p", "in (0, 1]", self.typical_p)
        if self.seed is not None:
            _int("seed", self.seed)
            _check(0 <= self.seed < _U64, "seed", "in [0, 2**64)", self.seed)
        _int("top_logprobs", self.top_logprobs)
        _check(
            0 <= self.top_logprobs <= MAX_TOP_LOGPROBS, "top_logprobs", f"in [0, {MAX_TOP_LOGPROBS}]", self.top_logprobs
        )
        _check(self.logprobs_mode in ("processed", "raw"), "logprobs_mode", "'processed' or 'raw'", self.logprobs_mode)

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0.0

    def validate_for_vocab(self, vocab_size: int) -> None:
        """Checks the token ids against the tokenizer's size (raises InvalidParameter)."""
        self._validate_edits(vocab_size)

    def to_core(self, *, seed: int, stream: int = 0) -> _core.SamplingParams:
        p = _core.SamplingParams()
        self._fill_edits(p)
        p.greedy = self.is_greedy
        if not p.greedy:  # greedy rows keep the warpers neutral (they are argmax-invariant)
            p.temperature = self.temperature
            p.top_k = self.top_k
            p.top_p = self.top_p
            p.min_p = self.min_p
            p.typical_p = self.typical_p
        p.seed = seed
        p.stream = stream
        p.logprobs = self.logprobs
        p.top_logprobs = self.top_logprobs
        p.logprobs_mode = _core.LogprobsMode.RAW if self.logprobs_mode == "raw" else _core.LogprobsMode.PROCESSED
        return p


@dataclass(frozen=True, kw_only=True)
class BeamParams(EditParams):
    """Beam search of one request, as transformers' ``generate(num_beams=...)``.

    Attributes, besides EditParams' (applied to each beam's log-probs, as transformers does):
        num_beams: beams kept per step, >= 1.
        max_new_tokens: hypotheses end at this length at the latest, >= 1.
        length_penalty: hypothesis score = sum_logprob / length ** length_penalty.
        early_stopping: ``False`` (heuristic: stop once no running beam can beat the worst
            kept hypothesis at its current length), ``True`` (stop once num_beams hypotheses
            exist) or ``"never"`` (heuristic scored at max_new_tokens when length_penalty > 0).
        num_return_sequences: hypotheses returned, in [1, num_beams].
    """

    num_beams: int = 1
    max_new_tokens: int = 16
    length_penalty: float = 1.0
    early_stopping: EarlyStopping = False
    num_return_sequences: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_beams", "max_new_tokens", "num_return_sequences"):
            _int(name, getattr(self, name))
        _check(self.num_beams >= 1, "num_beams", ">= 1", self.num_beams)
        _check(self.max_new_tokens >= 1, "max_new_tokens", ">= 1", self.max_new_tokens)
        _check(
            1 <= self.num_return_sequences <= self.num_beams,
            "num_return_sequences",
            f"in [1, num_beams={self.num_beams}]",
            self.num_return_sequences,
        )
        _finite("length_penalty", self.length_penalty)
        _check(
            self.early_stopping in (True, False, "never"),
            "early_stopping",
            "True, False or 'never'",
            self.early_stopping,
        )

    def validate_for_vocab(self, vocab_size: int) -> None:
        self._validate_edits(vocab_size)

    def to_core(self) -> _core.BeamParams:
        edits = _core.SamplingParams()
        self._fill_edits(edits)
        edits.greedy = True
        p = _core.BeamParams()
        p.edits = edits
        p.num_beams = self.num_beams
        p.max_new_tokens = self.max_new_tokens
        p.length_penalty = self.length_penalty
        p.early_stopping = (
            _core.EarlyStopping.NEVER
            if self.early_stopping == "never"
            else _core.EarlyStopping.TRUE
            if self.early_stopping is True
            else _core.EarlyStopping.HEURISTIC
        )
        p.num_return_sequences = self.num_return_sequences
        p.eos_token_ids = list(self.eos_token_ids)
        return p
