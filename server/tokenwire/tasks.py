"""The tasks a model can serve, and which architectures serve which tasks.

Dispatch is by table, not by if/elif: adding an architecture family means adding a row.
"""

from __future__ import annotations

import enum


class Task(str, enum.Enum):
    """A capability of a loaded model; the value is the registry file's spelling."""

    GENERATE = "generate"
    FILL_MASK = "fill_mask"
    NEXT_SENTENCE = "next_sentence"
    ANSWER_QUESTION = "answer_question"
    MULTIMODAL_CHAT = "multimodal_chat"
    CLASSIFY_IMAGE = "classify_image"
    EMBED = "embed"
    CLASSIFY_TEXT = "classify_text"
    CLASSIFY_TOKENS = "classify_tokens"
    EMBED_TEXT = "embed_text"
    RERANK = "rerank"


# Which gRPC service answers for each task (health is reported per service).
SERVICE_OF_TASK: dict[Task, str] = {
    Task.GENERATE: "tokenwire.v1.Generation",
    Task.FILL_MASK: "tokenwire.v1.Understanding",
    Task.NEXT_SENTENCE: "tokenwire.v1.Understanding",
    Task.ANSWER_QUESTION: "tokenwire.v1.Understanding",
    Task.MULTIMODAL_CHAT: "tokenwire.v1.Multimodal",
    Task.CLASSIFY_IMAGE: "tokenwire.v1.Multimodal",
    Task.EMBED: "tokenwire.v1.Multimodal",
    Task.CLASSIFY_TEXT: "tokenwire.v1.Understanding",
    Task.CLASSIFY_TOKENS: "tokenwire.v1.Understanding",
    Task.EMBED_TEXT: "tokenwire.v1.Understanding",
    Task.RERANK: "tokenwire.v1.Understanding",
}

# Architecture names (config.json "architectures") → tasks, matched exactly first, then by
# suffix, in this order. The first match wins.
_EXACT: dict[str, tuple[Task, ...]] = {
    "BertForPreTraining": (Task.FILL_MASK, Task.NEXT_SENTENCE),
    "CLIPModel": (Task.CLASSIFY_IMAGE, Task.EMBED),
    "SiglipModel": (Task.CLASSIFY_IMAGE, Task.EMBED),
    "OpenCLIP": (Task.CLASSIFY_IMAGE, Task.EMBED),  # a native open_clip checkpoint directory
    "LlavaForConditionalGeneration": (Task.MULTIMODAL_CHAT,),
    "LlavaNextForConditionalGeneration": (Task.MULTIMODAL_CHAT,),
    "BertLMHeadModel": (Task.GENERATE,),
    # Bare encoders: sentence embeddings (a sentence-transformers checkpoint declares one of these).
    **dict.fromkeys(
        (
            "BertModel",
            "RobertaModel",
            "XLMRobertaModel",
            "DistilBertModel",
            "MPNetModel",
            "DebertaV2Model",
            "ElectraModel",
            "ModernBertModel",
            "NomicBertModel",
        ),
        (Task.EMBED_TEXT,),
    ),
}
_SUFFIXES: tuple[tuple[str, tuple[Task, ...]], ...] = (
    ("ForCausalLM", (Task.GENERATE,)),
    ("LMHeadModel", (Task.GENERATE,)),
    ("ForMaskedLM", (Task.FILL_MASK,)),
    ("ForNextSentencePrediction", (Task.NEXT_SENTENCE,)),
    ("ForQuestionAnswering", (Task.ANSWER_QUESTION,)),
    ("ForImageTextToText", (Task.MULTIMODAL_CHAT,)),
    # A classifier with one output also serves Rerank (a cross-encoder): the loader adds it.
    ("ForSequenceClassification", (Task.CLASSIFY_TEXT,)),
    ("ForTokenClassification", (Task.CLASSIFY_TOKENS,)),
)


def tasks_for_architecture(architecture: str) -> tuple[Task, ...]:
    """The tasks a checkpoint of this architecture serves; empty when unknown."""
    if architecture in _EXACT:
        return _EXACT[architecture]
    for suffix, tasks in _SUFFIXES:
        if architecture.endswith(suffix):
            return tasks
    return ()
