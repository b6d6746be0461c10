package dev.tokenwire.client;

import dev.tokenwire.v1.FinishReason;
import dev.tokenwire.v1.GenerateResponse;
import dev.tokenwire.v1.GenerateStreamResponse;
import dev.tokenwire.v1.Sequence;
import java.util.ArrayList;
import java.util.List;

/**
 * Folds GenerateStreamResponse deltas into a GenerateResponse: text, token ids and logprobs
 * concatenated per sequence index; finish reason, matched stop and scores from each
 * sequence's last message; usage, seed and model from the stream.
 */
public final class StreamAccumulator {
  private final List<Sequence.Builder> sequences = new ArrayList<>();
  private final GenerateResponse.Builder response = GenerateResponse.newBuilder();

  public void add(GenerateStreamResponse m) {
    while (sequences.size() <= m.getIndex()) {
      sequences.add(Sequence.newBuilder());
    }
    Sequence.Builder s = sequences.get(m.getIndex());
    s.setText(s.getText() + m.getText())
        .addAllTokenIds(m.getTokenIdsList())
        .addAllLogprobs(m.getLogprobsList());
    if (m.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED) {
      s.setFinishReason(m.getFinishReason()).setMatchedStop(m.getMatchedStop());
    }
    if (m.hasCumulativeLogprob()) {
      s.setCumulativeLogprob(m.getCumulativeLogprob());
    }
    if (m.hasScore()) {
      s.setScore(m.getScore());
    }
    if (m.hasUsage()) {
      response.setUsage(m.getUsage());
    }
    if (m.hasSeed()) {
      response.setSeed(m.getSeed());
    }
    if (!m.getModel().isEmpty()) {
      response.setModel(m.getModel());
    }
  }

  /** What was folded so far. */
  public GenerateResponse response() {
    GenerateResponse.Builder out = response.clone().clearSequences();
    sequences.forEach(s -> out.addSequences(s.build()));
    return out.build();
  }
}
