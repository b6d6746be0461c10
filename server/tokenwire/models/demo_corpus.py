"""Built-in training text for the demo tokenizers.

There is no hub and no downloaded data set here, so the demo tokenizers learn their vocabulary
from text generated in code. The corpus has two jobs:

* make common English words single tokens, so that demo prompts tokenize into a handful of ids
  (tests read better and generation limits mean something);
* contain accented Latin, CJK, Cyrillic and emoji, so that the WordPiece vocabularies hold those
  characters (BERT must encode "naïve café 東京" without ``[UNK]``) and the BPE vocabularies get
  some multi-byte merges (streaming detokenization gets exercised on real multi-byte pieces).

Determinism matters more than variety: the corpus is a pure function of the constants below and
a fixed-seed ``random.Random`` (whose ``choice``/``shuffle`` are stable across CPython versions),
so tokenizer training, and with it every token id, is the same on every machine.
"""

from __future__ import annotations

import random

_SEED = 20240611

_SUBJECTS: tuple[str, ...] = (
    "The cat",
    "A small dog",
    "My friend",
    "The teacher",
    "Our team",
    "The old man",
    "A young woman",
    "The server",
    "This model",
    "The engineer",
    "A student",
    "The little bird",
    "Her brother",
    "The city",
    "The company",
    "Every child",
    "The doctor",
    "Your neighbor",
    "The robot",
    "The farmer",
)
_VERBS: tuple[str, ...] = (
    "reads",
    "writes",
    "likes",
    "finds",
    "sees",
    "makes",
    "takes",
    "brings",
    "wants",
    "needs",
    "opens",
    "builds",
    "sends",
    "watches",
    "carries",
    "loves",
    "answers",
    "learns",
    "tests",
    "fixes",
)
_OBJECTS: tuple[str, ...] = (
    "a book",
    "the letter",
    "a red apple",
    "the door",
    "a new house",
    "the answer",
    "a long story",
    "the small box",
    "a cup of coffee",
    "the blue car",
    "a simple question",
    "the river",
    "a song",
    "the window",
    "a piece of bread",
    "the first page",
    "a bright light",
    "the green garden",
    "a warm coat",
    "the last train",
)
_TAILS: tuple[str, ...] = (
    "every morning",
    "in the evening",
    "after school",
    "before dinner",
    "on the weekend",
    "with great care",
    "very quickly",
    "at the station",
    "near the river",
    "in the park",
    "during the summer",
    "for the first time",
    "without a word",
    "again and again",
    "today",
)
_PRONOUNS: tuple[str, ...] = ("I", "You", "We", "They", "It", "He", "She", "This", "That", "There")
_LINKS: tuple[str, ...] = (
    "is",
    "was",
    "are",
    "will be",
    "can be",
    "is not",
    "has been",
    "would be",
)
_COMPLEMENTS: tuple[str, ...] = (
    "good",
    "new",
    "ready",
    "here",
    "right",
    "wrong",
    "true",
    "easy",
    "important",
    "possible",
    "very simple",
    "not sure",
    "in the house",
    "on the table",
    "at home",
    "so much better",
)
_GREETINGS: tuple[str, ...] = (
    "Hello",
    "Hi",
    "Good morning",
    "Good evening",
    "Welcome",
    "Thank you",
)
_ADDRESSEES: tuple[str, ...] = ("world", "everyone", "my friend", "there", "again", "all of you")
_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What color is the sky?", "The sky is blue on a clear day."),
    ("Who wrote the letter?", "My friend wrote the letter last night."),
    ("Where does the train stop?", "The train stops at the central station."),
    ("When does the shop open?", "The shop opens at nine in the morning."),
    ("Why is the river so high?", "It rained for three days in the mountains."),
    ("How do you make tea?", "Boil water, add the tea, and wait a few minutes."),
    ("What is two plus two?", "Two plus two is four."),
)
_FIXED: tuple[str, ...] = (
    "Hello, world!",
    "Hello! How are you today?",
    "I am fine, thank you. And you?",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl who lived in a village near the forest.",
    "The weather is nice today, so we will go for a walk.",
    "Please write a short poem about the sea.",
    "Translate the following sentence into French.",
    "Summarize the text in one sentence.",
    "You are a helpful assistant.",
    "User: tell me a story. Assistant: Once upon a time, a robot learned to sing.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    '{"name": "tokenwire", "version": 1, "ok": true}',
    "SELECT name FROM users WHERE id = 42;",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 2024, 3.14",
    "The price is $12.50, or about 11 euros.",
    "Email me at someone@example.com before 5 pm.",
    "Yes. No. Maybe. OK! Really? Sure...",
    "The model generates one token at a time until it reaches the end of the sequence.",
    "A paragraph is a group of sentences about one idea.\n\nA new paragraph starts here.",
)
_NON_ASCII: tuple[str, ...] = (
    "naïve café 東京",
    "A naïve café owner in Zürich wrote his résumé on a crêpe.",
    "El niño comió jamón en la montaña. ¿Dónde está la estación?",
    "Ça va très bien, merci. Où est la gare ?",
    "Die Straße ist schön, und die Bäume sind grün.",
    "São Paulo e Lisboa são cidades grandes.",
    "Ångström, smörgåsbord, fjäll, øl, æble.",
    "東京は日本の首都です。京都も有名な都市です。",
    "我喜欢学习中文。北京和上海都是大城市。",
    "こんにちは、世界！ありがとうございます。",
    "안녕하세요, 세계! 감사합니다.",
    "Привет, мир! Как дела?",
    "Γειά σου κόσμε! Καλημέρα.",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "I love pizza 🍕 and coffee ☕ 😀 👍 🎉 ❤️ 🚀",
    "Emoji test: 😀😃😄😁 👍👍 🎉🎉",
    "Math: α + β = γ, π ≈ 3.14159, ∑ x², √2, ∞, ≤ ≥ ≠ → ←",
    "Quotes: “double” ‘single’ «guillemets» — dash – en dash … ellipsis",
    "Currency: € £ ¥ ₹ ₩ ¢",
)


def _template_sentences(rng: random.Random, count: int) -> list[str]:
    """Subject-verb-object sentences: the bulk of the corpus, making their words single tokens."""
    out: list[str] = []
    for _ in range(count):
        sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        if rng.random() < 0.6:
            sentence += f" {rng.choice(_TAILS)}"
        out.append(sentence + rng.choice((".", ".", ".", "!", "?")))
    return out


def _short_sentences(rng: random.Random, count: int) -> list[str]:
    """Pronoun + verb + complement: makes the most common function words single tokens."""
    out: list[str] = []
    for _ in range(count):
        words = f"{rng.choice(_PRONOUNS)} {rng.choice(_LINKS)} {rng.choice(_COMPLEMENTS)}"
        out.append(words + rng.choice((".", "!", "?")))
    return out


def _greetings() -> list[str]:
    """Every greeting with every addressee, so "Hello, world!" is a few tokens, not a dozen."""
    return [f"{g}, {a}{p}" for g in _GREETINGS for a in _ADDRESSEES for p in ("!", ".")]


def demo_corpus() -> list[str]:
    """Return the fixed training corpus (a few hundred lines), identical on every call.

    Non-ASCII lines are repeated so that their characters survive the trainers' frequency
    cut-offs and some multi-byte pieces get merged.
    """
    rng = random.Random(_SEED)
    lines: list[str] = []
    lines.extend(_template_sentences(rng, 400))
    lines.extend(_short_sentences(rng, 200))
    lines.extend(_greetings())
    for question, answer in _QUESTIONS:
        lines.append(question)
        lines.append(answer)
        lines.append(f"Question: {question} Answer: {answer}")
        # The role markers of the demo chat templates (tiny-llava's, then tiny-llama's).
        lines.append(f"USER: {question}\nASSISTANT: {answer}")
        lines.append(f"<|user|>\n{question}\n<|assistant|>\n{answer}")
    lines.extend(_FIXED)
    lines.extend(_NON_ASCII * 3)
    rng.shuffle(lines)
    return lines


__all__ = ["demo_corpus"]
