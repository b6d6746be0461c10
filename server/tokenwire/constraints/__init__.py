"""Structured output: constraints on what Generate / MultimodalChat may produce, enforced by
masking tokens in the C++ core.

A request's ``constraint`` (JSON Schema, any JSON value, a regex, an EBNF grammar, or one of a
list of strings) goes through three steps, each in its own module:

1. **compile** (``compiler.py``), on the event loop's side, before the request is queued: the
   constraint is compiled by xgrammar against the model's tokenizer into a token-level
   automaton. Compiling runs on a small pool of its own threads with a time limit (a
   pathological grammar fails its own request with INVALID_ARGUMENT and never reaches the
   scheduler), and compiled grammars are cached per model (bounded LRU; identical constraints
   share one compilation, even while it runs).
2. **match** (``matcher.py``): every sequence (each of n samples, each beam) keeps a matcher
   that follows the tokens it accepted. Before each step the scheduler asks the matchers of the
   constrained rows for their token bitmasks, filled on the CPU into one [rows, V/32] int32
   array; beams fork their parent's matcher when they follow it.
3. **mask** (the C++ core, ``decoding/sampler.py`` / ``beam.py``): the bitmask is a stage of the
   sampler chain, after the logit edits and before temperature, for greedy rows too, so the
   chosen token is always one the grammar allows. EOS is allowed only where the grammar may
   end; a grammar that has nothing left to add allows only EOS, which ends the sequence.
"""
