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
# How much further back a window may start so as not to start inside a character.
_MAX_BACKOFF = 4
_INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: list[int], skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-(_CONTEXT_TOKENS + _MAX_BACKOFF) :])
        self._read = len(self._ids)  # ids before this are already emitted
        self._prefix = self._window_start(self._read)  # window start

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=self._skip, clean_up_tokenization_spaces=False))

    def _window_start(self, end: int) -> int:
        """_CONTEXT_TOKENS before `end` (a character boundary), moved back while that would
        start inside a character: a byte-fallback decoder (Llama's <0xNN> tokens) turns a run
        of byte tokens that is not valid UTF-8 into one U+FFFD per token, so a window starting
        at a continuation byte would also garble the valid bytes after it in the same run."""
        start = max(end - _CONTEXT_TOKENS, 0)
        floor = max(end - _CONTEXT_TOKENS - _MAX_BACKOFF, 0)
        while start > floor and self._decode(self._ids[start:end]).startswith(_INCOMPLETE):
            start -= 1
        return start

    def push(self, token_ids: list[int]) -> str:
        """Add generated ids; return the text they complete (possibly empty)."""
        self._ids.extend(token_ids)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        window_text = self._decode(self._ids[self._prefix :])
        if len(window_text) <= len(prefix_text) or window_text.endswith(_INCOMPLETE):
            return ""
        delta = window_text[len(prefix_text) :]
        self._read = len(self._ids)
        self._prefix = self._window_start(self._read)
        if self._prefix > (_CONTEXT_TOKENS + _MAX_BACKOFF) * 4:  # keep the id list short on long generations
            drop = self._prefix - _CONTEXT_TOKENS - _MAX_BACKOFF
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
