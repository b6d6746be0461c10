"""The Understanding service: pb → prepare (off-loop) → batched forward → finish (off-loop) → pb.

The steps are documented once, in ``tokenwire.understanding``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc

from ..models.registry import ModelRegistry
from ..tasks import Task
from ..understanding import (
    classify_text,
    classify_tokens,
    embed_text,
    fill_mask,
    next_sentence,
    qa_spans,
    qa_windows,
    rerank,
)
from ..understanding.heads import Needs, RowOutputs
from ..understanding.inputs import Encoded
from ..understanding.runner import EncoderRow, EncoderRunner, EncoderRunners
from ..v1 import understanding_pb2, understanding_pb2_grpc
from . import understanding_params

R = TypeVar("R")


async def _submit_all(
    runner: EncoderRunner, rows: Sequence[Encoded], needs: Needs, select: Callable[[RowOutputs], R], step: int
) -> list[R]:
    """Every row of one request through the batcher, at most `step` (a batch's worth) at a time,
    so one request cannot fill the model's queue (max_queue) on its own."""
    out: list[R] = []
    for i in range(0, len(rows), step):
        chunk = [EncoderRow(r.input_ids, r.token_type_ids, needs, select) for r in rows[i : i + step]]
        out.extend(await asyncio.gather(*(runner.submit(row) for row in chunk)))
    return out


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

    async def ClassifyText(
        self, request: understanding_pb2.ClassifyTextRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.ClassifyTextResponse:
        model = self._registry.resolve(request.model, Task.CLASSIFY_TEXT)
        params = understanding_params.classify_text(request)
        job = await asyncio.to_thread(classify_text.prepare, params, model)
        function = job.function
        scores = await _submit_all(
            self.runners.get(model, Task.CLASSIFY_TEXT),
            job.rows,
            classify_text.NEEDS,
            lambda out: classify_text.scores(function, out),
            model.spec.max_batch_size,
        )
        return understanding_pb2.ClassifyTextResponse(
            results=[
                understanding_pb2.TextClassification(
                    labels=[understanding_pb2.TextLabel(label=label, score=score) for label, score in row]
                )
                for row in classify_text.ranked(job, scores)
            ]
        )

    async def ClassifyTokens(
        self, request: understanding_pb2.ClassifyTokensRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.ClassifyTokensResponse:
        model = self._registry.resolve(request.model, Task.CLASSIFY_TOKENS)
        params = understanding_params.classify_tokens(request)
        job = await asyncio.to_thread(classify_tokens.prepare, params, model)
        (logits,) = await _submit_all(
            self.runners.get(model, Task.CLASSIFY_TOKENS),
            [job.row],
            classify_tokens.NEEDS,
            classify_tokens.probabilities,
            1,
        )
        found = await asyncio.to_thread(classify_tokens.entities, job, logits, model.encoder.labels, model.tokenizer)
        return understanding_pb2.ClassifyTokensResponse(
            entities=[
                understanding_pb2.TokenEntity(
                    label=e.label, score=e.score, word=e.word, start=e.start, end=e.end, index=e.index
                )
                for e in found
            ]
        )

    async def EmbedText(
        self, request: understanding_pb2.EmbedTextRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.EmbedTextResponse:
        model = self._registry.resolve(request.model, Task.EMBED_TEXT)
        params = understanding_params.embed_text(request)
        job = await asyncio.to_thread(embed_text.prepare, params, model)
        pooling = job.pooling
        vectors = await _submit_all(
            self.runners.get(model, Task.EMBED_TEXT),
            job.rows,
            embed_text.NEEDS,
            lambda out: embed_text.pooled(pooling, out),
            model.spec.max_batch_size,
        )
        finished = await asyncio.to_thread(embed_text.finish, job, vectors)
        return understanding_pb2.EmbedTextResponse(
            embeddings=[understanding_pb2.TextEmbedding(values=v.tolist()) for v in finished],
            dimensions=job.dimensions,
        )

    async def Rerank(
        self, request: understanding_pb2.RerankRequest, context: grpc.aio.ServicerContext
    ) -> understanding_pb2.RerankResponse:
        model = self._registry.resolve(request.model, Task.RERANK)
        params = understanding_params.rerank(request)
        job = await asyncio.to_thread(rerank.prepare, params, model)
        function = job.function
        scores = await _submit_all(
            self.runners.get(model, Task.RERANK),
            job.rows,
            rerank.NEEDS,
            lambda out: rerank.score(function, out),
            model.spec.max_batch_size,
        )
        return understanding_pb2.RerankResponse(
            results=[understanding_pb2.RerankResult(index=i, score=s) for i, s in rerank.ranked(job, scores)]
        )

    def close(self) -> None:
        """Stop every model's batcher (on the event loop's thread, at shutdown)."""
        self.runners.close()
