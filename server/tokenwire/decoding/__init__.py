"""Typed wrapper over tokenwire's C++ decoding core (``tokenwire._core``).

The Generate engine calls it once per decode step for the whole batch:

    sampler = BatchSampler(vocab_size=len(tokenizer), num_threads=1)
    seed = sampler.add(request_id, SamplingParams(temperature=0.8, top_p=0.9), prompt_ids)
    result = sampler.step(outputs.logits[:, -1, :], rows=[...request ids in batch order...])
    result.token_ids, result.logprobs, result.ranks, result.top_token_ids, result.top_logprobs
    sampler.remove(request_id)            # between steps, when a request leaves

and, for beam search, one ``BeamSearch`` per request (batched with ``BeamStepper``).

Pipeline order (each stage absent when its parameter is neutral):

    0. vocabulary guard — ids >= vocab_size (the tokenizer's size) are never produced, even
       when the model's output layer is wider
    1. logit_bias  2. repetition_penalty  3. frequency/presence_penalty
    4. no_repeat_ngram_size  5. bad_words_ids  6. min_new_tokens (EOS banned)
    6b. token mask (structured output: ``step(..., token_mask=, mask_rows=)``, per step, only
        rows given one; disallowed ids -inf, greedy and beam rows too; if 1-6 banned every
        allowed id, the row falls back to the allowed ids' unedited logits)
    — sampling rows only (argmax-invariant, so greedy rows skip them) —
    7. temperature  8. top_k  9. top_p  10. min_p  11. typical_p
    12. selector: greedy argmax (lowest id on ties) or categorical draw from
        Philox(seed, stream, position)

Steps 1-2 and 4-11 are transformers' order, so each chain equals transformers'
LogitsProcessorList with the same settings.

Log-probabilities (asked for per row with ``logprobs`` / ``top_logprobs``):

* ``logprobs_mode="processed"`` (default): the distribution the token was chosen from —
  softmax of the fully processed logits for sampling rows (temperature and truncation
  included: ids cut by top-k/top-p have no probability), softmax of the edited logits
  (steps 0-6) for greedy rows. Free for sampling rows; one extra pass over the row for greedy.
* ``logprobs_mode="raw"``: log_softmax of the model's logits over [0, vocab_size), before any
  stage (one extra pass over the row).

``rank`` is the 1-based rank of the chosen token in that same distribution.
"""

from tokenwire.decoding.beam import BeamSearch, BeamStep, BeamStepper, Hypothesis
from tokenwire.decoding.errors import InvalidParameter
from tokenwire.decoding.params import MAX_TOP_LOGPROBS, BeamParams, EditParams, SamplingParams
from tokenwire.decoding.sampler import BatchSampler, StepResult

__all__ = [
    "MAX_TOP_LOGPROBS",
    "BatchSampler",
    "BeamParams",
    "BeamSearch",
    "BeamStep",
    "BeamStepper",
    "EditParams",
    "Hypothesis",
    "InvalidParameter",
    "SamplingParams",
    "StepResult",
]
