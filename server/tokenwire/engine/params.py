"""What the scheduler runs: a generation request's validated parameters, in domain terms.

The engine knows no wire format: services/generation_params.py turns a GenerateRequest (or a
MultimodalChatRequest) into these, with every rejection naming the request field.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..constraints.compiler import CompiledConstraint
from ..decoding import BeamParams, SamplingParams


class Method(enum.Enum):
    GREEDY = "greedy"
    SAMPLE = "sample"
    BEAM = "beam"


@dataclass(frozen=True)
class GenerationParams:
    """Everything the scheduler needs to run one request."""

    prompt_ids: list[int]
    method: Method
    n: int
    """Sequences returned (rows for SAMPLE/GREEDY; hypotheses for BEAM)."""
    sampling: SamplingParams
    """Edits + selection for SAMPLE/GREEDY rows (greedy=True for GREEDY)."""
    beam: BeamParams | None
    max_new_tokens: int
    min_new_tokens: int
    stop: tuple[str, ...]
    stop_token_ids: frozenset[int]
    eos_token_ids: frozenset[int]
    """Empty when ignore_eos."""
    include_stop: bool
    deadline: float | None
    """time.monotonic() after which the request ends with TIME_LIMIT."""
    logprobs: bool
    top_n: int
    skip_special_tokens: bool
    prefill_inputs: Mapping[str, Any] | None = None
    """Extra forward inputs of the prompt (e.g. LLaVA's `pixel_values`), used by the prefill
    only; such a request is prefilled on its own, then decodes with everyone else."""
    constraint: CompiledConstraint | None = None
    """Structured output: every row of the request is masked to what this grammar allows."""

    @property
    def rows(self) -> int:
        """Batch rows the request occupies while decoding."""
        return self.beam.num_beams if self.beam is not None else self.n
