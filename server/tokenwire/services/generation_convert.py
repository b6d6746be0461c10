"""Engine events → Generate protobuf messages."""

from __future__ import annotations

from ..engine.request import Finished, FinishReason, SequenceDelta, TokenInfo
from ..v1 import common_pb2, generation_pb2

FINISH_TO_PB: dict[FinishReason, common_pb2.FinishReason] = {
    FinishReason.LENGTH: common_pb2.FINISH_REASON_LENGTH,
    FinishReason.EOS_TOKEN: common_pb2.FINISH_REASON_EOS_TOKEN,
    FinishReason.STOP_SEQUENCE: common_pb2.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.STOP_TOKEN: common_pb2.FINISH_REASON_STOP_TOKEN,
    FinishReason.CANCELLED: common_pb2.FINISH_REASON_CANCELLED,
    FinishReason.TIME_LIMIT: common_pb2.FINISH_REASON_TIME_LIMIT,
    FinishReason.ERROR: common_pb2.FINISH_REASON_ERROR,
}


def token_logprob(info: TokenInfo) -> common_pb2.TokenLogprob:
    return common_pb2.TokenLogprob(
        token_id=info.token_id,
        token=info.token,
        logprob=info.logprob,
        rank=info.rank,
        top=[common_pb2.TopLogprob(token_id=t, token=text, logprob=lp) for t, text, lp in info.top],
    )


def usage(event: Finished) -> common_pb2.Usage:
    return common_pb2.Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
    )


def stream_message(delta: SequenceDelta) -> generation_pb2.GenerateStreamResponse:
    message = generation_pb2.GenerateStreamResponse(
        index=delta.index,
        text=delta.text,
        token_ids=delta.token_ids,
        logprobs=[token_logprob(i) for i in delta.logprobs],
    )
    if delta.finish_reason is not None:
        message.finish_reason = FINISH_TO_PB[delta.finish_reason]
        message.matched_stop = delta.matched_stop
        if delta.cumulative_logprob is not None:
            message.cumulative_logprob = delta.cumulative_logprob
        if delta.score is not None:
            message.score = delta.score
    return message


class SequenceBuilder:
    """Accumulates one sequence's deltas into a Sequence (unary responses)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._sequence = common_pb2.Sequence()

    def add(self, delta: SequenceDelta) -> None:
        self._text.append(delta.text)
        self._sequence.token_ids.extend(delta.token_ids)
        self._sequence.logprobs.extend(token_logprob(i) for i in delta.logprobs)
        if delta.finish_reason is not None:
            self._sequence.finish_reason = FINISH_TO_PB[delta.finish_reason]  # type: ignore[assignment]
            self._sequence.matched_stop = delta.matched_stop
            if delta.cumulative_logprob is not None:
                self._sequence.cumulative_logprob = delta.cumulative_logprob
            if delta.score is not None:
                self._sequence.score = delta.score

    def build(self) -> common_pb2.Sequence:
        self._sequence.text = "".join(self._text)
        return self._sequence
