"""Incremental detokenization: text deltas that never split a UTF-8 character.

Decoding one token at a time is wrong for byte-level and byte-fallback tokenizers (a character
may span tokens) and for SentencePiece (a token's leading space depends on what precedes it).
So each step decodes a short window that starts a few tokens back — the prompt's last tokens at
first — and emits only what the window adds beyond its already-emitted prefix, holding text
back while it ends in U+FFFD (an incomplete character). This is the scheme of TGI and vLLM.
"""

from __future__ import annotations

from typing import Any

# How many already-decoded tokens each window re-reads for context.
_CONTEXT_TOKENS = 5
_INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int], skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._read = len(self._ids)  # ids before this are already emitted
        self._prefix = max(self._read - _CONTEXT_TOKENS, 0)  # window start

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=self._skip, clean_up_tokenization_spaces=False))

    def push(self, token_ids: list[int]) -> str:
        """Add generated ids; return the text they complete (possibly empty)."""
        self._ids.extend(token_ids)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        window_text = self._decode(self._ids[self._prefix :])
        if len(window_text) <= len(prefix_text) or window_text.endswith(_INCOMPLETE):
            return ""
        delta = window_text[len(prefix_text) :]
        self._prefix, self._read = max(len(self._ids) - _CONTEXT_TOKENS, 0), len(self._ids)
        if self._prefix > _CONTEXT_TOKENS * 4:  # keep the id list short on long generations
            drop = self._prefix - _CONTEXT_TOKENS
            del self._ids[:drop]
            self._prefix -= drop
            self._read -= drop
        return delta

    def flush(self) -> str:
        """At the end: whatever is still held back (a truly invalid byte shows as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        window_text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return window_text[len(prefix_text) :] if len(window_text) > len(prefix_text) else ""
