"""The Understanding service: pb → prepare (off-loop) → batched forward → finish (off-loop) → pb.

The steps are documented once, in ``tokenwire.understanding``.
"""

from __future__ import annotations

import asyncio

import grpc

from ..models.registry import ModelRegistry
from ..tasks import Task
from ..understanding import fill_mask, next_sentence, qa_spans, qa_windows
from ..understanding.runner import EncoderRow, EncoderRunners
from ..v1 import understanding_pb2, understanding_pb2_grpc


class UnderstandingServicer(understanding_pb2_grpc.UnderstandingServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self.runners = EncoderRunners()

    async def FillMask(
        self, request: understanding_pb2.FillMaskRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.FillMaskResponse:
        model = self._registry.resolve(request.model, Task.FILL_MASK)
        params = fill_mask.FillMaskParams(request.text, request.top_k, tuple(request.targets), request.truncate)
        job = await asyncio.to_thread(fill_mask.prepare, params, model)
        scores, ids = await self.runners.get(model, Task.FILL_MASK).submit(
            EncoderRow(job.input_ids, job.token_type_ids, job.needs, lambda out: fill_mask.select(job, out))
        )
        masks = await asyncio.to_thread(fill_mask.candidates, job, scores, ids, model.tokenizer)
        return understanding_pb2.FillMaskResponse(
            masks=[
                understanding_pb2.MaskPrediction(
                    candidates=[
                        understanding_pb2.MaskCandidate(
                            token=c.token, token_id=c.token_id, score=c.score, sequence=c.sequence
                        )
                        for c in row
                    ]
                )
                for row in masks
            ]
        )

    async def NextSentence(
        self, request: understanding_pb2.NextSentenceRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.NextSentenceResponse:
        model = self._registry.resolve(request.model, Task.NEXT_SENTENCE)
        params = next_sentence.NextSentenceParams(request.sentence_a, request.sentence_b, request.truncate)
        job = await asyncio.to_thread(next_sentence.prepare, params, model)
        result = await self.runners.get(model, Task.NEXT_SENTENCE).submit(
            EncoderRow(job.input_ids, job.token_type_ids, job.needs, next_sentence.probabilities)
        )
        return understanding_pb2.NextSentenceResponse(
            is_next_probability=result.is_next_probability,
            not_next_probability=result.not_next_probability,
            is_next=result.is_next,
        )

    async def AnswerQuestion(
        self, request: understanding_pb2.AnswerQuestionRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.AnswerQuestionResponse:
        model = self._registry.resolve(request.model, Task.ANSWER_QUESTION)
        params = qa_windows.QAParams(
            request.question,
            request.context,
            request.top_k,
            request.max_answer_length,
            request.doc_stride,
            request.handle_impossible_answer,
        )
        job = await asyncio.to_thread(qa_windows.encode, params, model)
        runner = self.runners.get(model, Task.ANSWER_QUESTION)
        rows = [EncoderRow(w.input_ids, w.token_type_ids, w.needs, qa_spans.span_logits) for w in job.windows]
        # A long context is many windows: submit at most a batch's worth at a time, so one
        # request cannot fill the model's queue (max_queue) on its own.
        step = max(1, model.spec.max_batch_size)
        logits: list[qa_spans.SpanLogits] = []
        for i in range(0, len(rows), step):
            logits.extend(await asyncio.gather(*(runner.submit(r) for r in rows[i : i + step])))
        answers = await asyncio.to_thread(qa_spans.best_answers, job, logits)
        return understanding_pb2.AnswerQuestionResponse(
            answers=[understanding_pb2.Answer(text=a.text, score=a.score, start=a.start, end=a.end) for a in answers]
        )

    def close(self) -> None:
        """Stop every model's batcher (on the event loop's thread, at shutdown)."""
        self.runners.close()
