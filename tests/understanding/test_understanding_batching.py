"""Dynamic batching: concurrent requests share forwards and get the results they get alone;
tokenization and decoding never run on the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from harness import InProcessServer
from qa_cases import LONG, MEDIUM, NON_ASCII, SHORT
from tokenwire.client import Client
from tokenwire.v1 import understanding_pb2 as pb

TEXTS = [
    "The capital of France, [MASK], contains the Eiffel Tower.",
    "[MASK] is the capital of Japan.",
    "hello [MASK] world, and [MASK] again.",
    "Le café [MASK] à Zürich 😀.",
    "the " * 60 + "[MASK] tower.",
]
PAIRS = [
    ("The capital of France is Paris.", "It contains the Eiffel Tower."),
    ("hello there", "general kenobi"),
    ("東京 est grand.", "the river flows " * 20),
]
QUESTIONS = [("Where is the tower?", SHORT), ("Où est le café?", NON_ASCII), ("What?", MEDIUM), ("Who walks?", LONG)]


def _calls(model: str, qa_model: str) -> list[tuple[Callable[..., Any], Any]]:
    def fill(c: Client, text: str) -> Any:
        return c.understanding.FillMask.future(pb.FillMaskRequest(model=model, text=text, top_k=7))

    def nsp(c: Client, pair: tuple[str, str]) -> Any:
        return c.understanding.NextSentence.future(
            pb.NextSentenceRequest(model=model, sentence_a=pair[0], sentence_b=pair[1])
        )

    def qa(c: Client, item: tuple[str, str]) -> Any:
        return c.understanding.AnswerQuestion.future(
            pb.AnswerQuestionRequest(model=qa_model, question=item[0], context=item[1], top_k=3)
        )

    return [(fill, t) for t in TEXTS] + [(nsp, p) for p in PAIRS] + [(qa, q) for q in QUESTIONS]


def _flatten(reply: Any) -> tuple[list[Any], list[float]]:
    """(exact parts, float parts) of a reply."""
    if isinstance(reply, pb.FillMaskResponse):
        cands = [c for m in reply.masks for c in m.candidates]
        return [(c.token_id, c.token, c.sequence) for c in cands], [c.score for c in cands]
    if isinstance(reply, pb.NextSentenceResponse):
        return [], [reply.is_next_probability]
    return [(a.text, a.start, a.end) for a in reply.answers], [a.score for a in reply.answers]


def test_concurrent_requests_are_batched_and_equal_unbatched(uw: Client, uw_server: InProcessServer) -> None:
    calls = _calls("tiny-bert-batch", "tiny-bert-qa-batch")
    alone = [_flatten(call(uw, arg).result(60)) for call, arg in calls]  # one at a time
    futures = [call(uw, arg) for _ in range(3) for call, arg in calls]  # all at once
    together = [_flatten(f.result(60)) for f in futures]
    for i, (exact, scores) in enumerate(together):
        exp_exact, exp_scores = alone[i % len(calls)]
        assert exact == exp_exact
        assert scores == pytest.approx(exp_scores, rel=1e-4, abs=1e-7)
    assert uw_server.server is not None
    runners = {r.model.spec.name: r for r in uw_server.server.understanding.runners.runners()}
    assert runners["tiny-bert-batch"].largest_batch > 1
    assert runners["tiny-bert-qa-batch"].largest_batch > 1
    # The unbatched pass really ran one row per forward, so the comparison means something.
    assert runners["tiny-bert-batch"].batcher.batches >= len(TEXTS) + len(PAIRS)


class _ThreadSpy:
    """Wraps a tokenizer, recording the thread of every tokenize/decode call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.threads: set[int] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return self._inner(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return self._inner.decode(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_tokenizing_and_decoding_stay_off_the_event_loop(uw: Client, uw_server: InProcessServer) -> None:
    assert uw_server.server is not None
    entries = uw_server.server.registry.entries
    loop_ident = uw_server.run(_loop_ident())
    spies = {}
    for name in ("tiny-bert", "tiny-bert-qa"):
        loaded = entries[name].loaded
        assert loaded is not None
        spies[name] = loaded.tokenizer = _ThreadSpy(loaded.tokenizer)
    try:
        for call, arg in _calls("tiny-bert", "tiny-bert-qa"):
            call(uw, arg).result(60)
    finally:
        for name, spy in spies.items():
            entries[name].loaded.tokenizer = spy._inner  # type: ignore[union-attr]
    for spy in spies.values():
        assert spy.threads and loop_ident not in spy.threads


async def _loop_ident() -> int:
    return threading.get_ident()
