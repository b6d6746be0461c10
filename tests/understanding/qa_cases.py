"""AnswerQuestion cases shared by the tests and by make_qa_golden.py (which must not import
tokenwire: it runs under transformers 4.x, the last release with the question-answering
pipeline)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# Registry names the tests serve tiny-bert-qa under → the window (max_input_tokens) of each.
WINDOWS: dict[str, int] = {"tiny-bert-qa": 512, "tiny-bert-qa-64": 64}

SHORT = (
    "Paris is the capital of France. Tokyo is the capital of Japan. The Eiffel Tower, built in 1889, stands in Paris."
)
# Accents, guillemets, CJK (one token per character), an emoji and a long dash: character
# offsets must be code points into this string, not bytes and not normalized text.
NON_ASCII = (
    "Le café « Œuvre » est à Zürich; 東京 est la capitale du Japon. "
    "Naïve résumé — déjà vu! 😀 The smiling cat sleeps in Köln."
)
_WORDS = (
    "the capital of france is paris and tokyo is in japan while the tower stands "
    "near a river where people walk every day café Zürich 東京 naïve résumé déjà"
).split()


def _long_context(words: int, seed: int) -> str:
    rng = random.Random(seed)
    sentences = []
    while sum(len(s.split()) for s in sentences) < words:
        n = rng.randint(6, 14)
        sentence = " ".join(rng.choice(_WORDS) for _ in range(n))
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ";"]))
    return " ".join(sentences)


LONG = _long_context(900, 1)  # several 512-token windows
MEDIUM = _long_context(120, 2)  # several 64-token windows


@dataclass(frozen=True)
class QACase:
    id: str
    model: str
    question: str
    context: str
    top_k: int = 0
    max_answer_length: int = 0
    doc_stride: int = 0
    handle_impossible_answer: bool = False

    def request_fields(self) -> dict[str, object]:
        fields = asdict(self)
        del fields["id"]
        return fields


CASES: tuple[QACase, ...] = (
    QACase("short-default", "tiny-bert-qa", "What is the capital of France?", SHORT),
    QACase("short-top5", "tiny-bert-qa", "What is the capital of France?", SHORT, top_k=5),
    QACase("short-maxlen3", "tiny-bert-qa", "Where is the tower?", SHORT, top_k=4, max_answer_length=3),
    QACase("short-impossible", "tiny-bert-qa", "Who?", SHORT, top_k=3, handle_impossible_answer=True),
    QACase("non-ascii", "tiny-bert-qa", "Où est le café?", NON_ASCII, top_k=5),
    # Two copies over 64-token windows: the same answer text from several windows merges.
    QACase("non-ascii-64", "tiny-bert-qa-64", "Où est le café?", NON_ASCII + " " + NON_ASCII, top_k=5, doc_stride=8),
    QACase("tiny-impossible", "tiny-bert-qa", "Who?", "Paris.", top_k=4, handle_impossible_answer=True),
    QACase("long-default", "tiny-bert-qa", "Where is the tower?", LONG, top_k=3),
    QACase(
        "long-stride200", "tiny-bert-qa", "What is the capital?", LONG, top_k=5, max_answer_length=30, doc_stride=200
    ),
    QACase("long-impossible", "tiny-bert-qa", "What is the capital?", LONG, top_k=2, handle_impossible_answer=True),
    QACase("medium-64", "tiny-bert-qa-64", "Where do people walk?", MEDIUM, top_k=5),
    QACase(
        "medium-64-stride",
        "tiny-bert-qa-64",
        "Where do people walk?",
        MEDIUM,
        top_k=3,
        max_answer_length=8,
        doc_stride=20,
        handle_impossible_answer=True,
    ),
)


def effective_doc_stride(case: QACase) -> int:
    """The stride the server uses for `case` (its default is the pipeline's)."""
    window = WINDOWS[case.model]
    return case.doc_stride or min(window // 2, 128)
