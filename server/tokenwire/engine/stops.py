"""Stop strings found across token boundaries, with the text that may start one held back.

Text is released only when no suffix of it could begin a stop string, so a match always lies
inside the held-back tail plus the new delta, and what the client already saw never needs
taking back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopMatch:
    text: str
    """The text to emit now (up to the stop string, or through it when included)."""
    stop: str
    """The stop string matched."""


class StopMatcher:
    def __init__(self, stops: list[str], include_stop: bool = False) -> None:
        self._stops = [s for s in stops if s]
        self._include = include_stop
        self._held = ""

    def push(self, delta: str) -> tuple[str, StopMatch | None]:
        """Feed new text; return (text safe to emit, the match if a stop string completed)."""
        if not self._stops:
            return delta, None
        text = self._held + delta
        first: tuple[int, str] | None = None
        for stop in self._stops:
            at = text.find(stop)
            if at >= 0 and (first is None or at < first[0] or (at == first[0] and len(stop) > len(first[1]))):
                first = (at, stop)
        if first is not None:
            at, stop = first
            self._held = ""
            return "", StopMatch(text[: at + len(stop)] if self._include else text[:at], stop)
        keep = self._longest_partial(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], None

    def _longest_partial(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """At the end (no stop matched): the held-back tail is ordinary text after all."""
        held, self._held = self._held, ""
        return held
