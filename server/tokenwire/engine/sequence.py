"""One output sequence: its tokens, streamed text (detokenized, stop strings held back) and
the finish check after each token. Runs on the scheduler thread."""

from __future__ import annotations

from typing import Any

from .detokenize import IncrementalDetokenizer
from .params import GenerationParams
from .request import FinishReason, SequenceDelta, TokenInfo
from .stops import StopMatcher


class SequenceOutput:
    def __init__(self, index: int, params: GenerationParams, tokenizer: Any) -> None:
        self.index = index
        self._params = params
        self._tokenizer = tokenizer
        self._detok = IncrementalDetokenizer(tokenizer, params.prompt_ids, params.skip_special_tokens)
        self._stops = StopMatcher(list(params.stop), params.include_stop)
        self.token_ids: list[int] = []
        self.cumulative_logprob = 0.0
        self.finish_reason: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def push(self, token_id: int, info: TokenInfo | None = None) -> SequenceDelta:
        """Record one generated token; the delta says what to send (and whether it ended)."""
        p = self._params
        self.token_ids.append(token_id)
        delta = SequenceDelta(self.index, token_ids=[token_id])
        if info is not None:
            delta.logprobs.append(info)
            self.cumulative_logprob += info.logprob
        count = len(self.token_ids)
        ends_by_token = None
        if token_id in p.eos_token_ids:
            ends_by_token = FinishReason.EOS_TOKEN
        elif token_id in p.stop_token_ids:
            ends_by_token = FinishReason.STOP_TOKEN
            delta.matched_stop = self._tokenizer.decode([token_id])
        # The text of an ending token is shown only when asked (EOS is usually special anyway).
        text = "" if ends_by_token and not p.include_stop else self._detok.push([token_id])
        if count >= p.min_new_tokens:
            text, match = self._stops.push(text)
            if match is not None:
                delta.text = match.text
                delta.matched_stop = match.stop
                return self._end(delta, FinishReason.STOP_SEQUENCE, flush=False)
        delta.text = text
        if ends_by_token is not None:
            return self._end(delta, ends_by_token)
        if count >= p.max_new_tokens:
            return self._end(delta, FinishReason.LENGTH)
        return delta

    def stop(self, reason: FinishReason) -> SequenceDelta:
        """End from outside (cancelled, time limit, error): flush what is held back."""
        return self._end(SequenceDelta(self.index), reason)

    def _end(self, delta: SequenceDelta, reason: FinishReason, flush: bool = True) -> SequenceDelta:
        if flush:
            tail = self._detok.flush()
            if len(self.token_ids) >= self._params.min_new_tokens:
                more, match = self._stops.push(tail)
                if match is not None:
                    delta.text += match.text
                    delta.matched_stop = match.stop
                    reason = FinishReason.STOP_SEQUENCE
                else:
                    delta.text += more + self._stops.flush()
            else:
                delta.text += tail
        self.finish_reason = delta.finish_reason = reason
        if self._params.logprobs:
            delta.cumulative_logprob = self.cumulative_logprob
        return delta


def beam_sequence(
    index: int, token_ids: list[int], score: float, finished: bool, params: GenerationParams, tokenizer: Any
) -> SequenceDelta:
    """A finished beam hypothesis as one complete delta."""
    out = SequenceOutput(index, params, tokenizer)
    text = ""
    last: SequenceDelta | None = None
    for token in token_ids:
        last = out.push(token)
        text += last.text
    if last is None or last.finish_reason is None:
        last = out.stop(FinishReason.LENGTH if finished else FinishReason.TIME_LIMIT)
        text += last.text
    return SequenceDelta(
        index,
        text=text,
        token_ids=list(token_ids),
        finish_reason=last.finish_reason,
        matched_stop=last.matched_stop,
        score=score,
    )
