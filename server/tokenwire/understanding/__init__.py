"""Encoder tasks of the Understanding service: fill-mask, next-sentence, extractive QA.

Every request goes through the same four steps, each in its own place:

1. **prepare** (``fill_mask.prepare`` / ``next_sentence.prepare`` / ``qa_windows.encode``), in a
   worker thread because tokenizing a long text takes milliseconds: validate against the
   model's limits (``InvalidArgument`` naming the field), tokenize, find what the heads must
   read (mask positions, the pooled output, span logits).
2. **batch** (``runner.EncoderRunner``): the rows of concurrent requests to one model are
   gathered by the ``DynamicBatcher`` into right-padded forwards (rows of similar length
   together) on the model's own thread; ``heads.EncoderHeads`` runs only the heads the rows
   need, and each row reads only its own, unpadded, slice of the outputs.
3. **select** (``fill_mask.select`` / ``next_sentence.probabilities`` /
   ``qa_spans.span_logits``), still on the model thread while the tensors are at hand:
   softmax and top-k, so only a few numbers per row leave it (QA: the window's logits).
4. **finish** (``fill_mask.candidates`` / ``qa_spans.best_answers``), in a worker thread
   again: decode candidate sequences, score and merge answer spans over windows.

Results follow transformers' ``fill-mask`` and (4.x) ``question-answering`` pipelines
exactly, where the protocol does not say otherwise (see each module).
"""
