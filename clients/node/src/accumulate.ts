/**
 * Folds GenerateStreamResponse deltas into the GenerateResponse that Generate would have
 * returned: text, token ids and logprobs concatenated per sequence index; finish reason,
 * matched stop and scores from each sequence's last message; usage, seed and model from
 * the stream.
 */
import { FinishReason, Sequence } from "./gen/tokenwire/v1/common.js";
import { GenerateResponse, type GenerateStreamResponse } from "./gen/tokenwire/v1/generation.js";

export class Accumulator {
  readonly response: GenerateResponse = GenerateResponse.create();

  add(m: GenerateStreamResponse): void {
    const seqs = this.response.sequences;
    while (seqs.length <= m.index) seqs.push(Sequence.create());
    const s = seqs[m.index];
    s.text += m.text;
    s.tokenIds.push(...m.tokenIds);
    s.logprobs.push(...m.logprobs);
    if (m.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) {
      s.finishReason = m.finishReason;
      s.matchedStop = m.matchedStop;
    }
    if (m.cumulativeLogprob !== undefined) s.cumulativeLogprob = m.cumulativeLogprob;
    if (m.score !== undefined) s.score = m.score;
    if (m.usage !== undefined) this.response.usage = m.usage;
    if (m.seed !== undefined) this.response.seed = m.seed;
    if (m.model) this.response.model = m.model;
  }
}

/** Reads a stream to its end and returns it folded. */
export async function collect(stream: AsyncIterable<GenerateStreamResponse>): Promise<GenerateResponse> {
  const acc = new Accumulator();
  for await (const m of stream) acc.add(m);
  return acc.response;
}
