package dev.tokenwire.client;

import dev.tokenwire.v1.GenerateRequest;
import dev.tokenwire.v1.GenerateResponse;
import dev.tokenwire.v1.GenerateStreamResponse;
import dev.tokenwire.v1.GenerationGrpc;
import dev.tokenwire.v1.ModelsGrpc;
import dev.tokenwire.v1.MultimodalChatRequest;
import dev.tokenwire.v1.MultimodalGrpc;
import dev.tokenwire.v1.UnderstandingGrpc;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.time.Duration;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.function.Predicate;

/**
 * One channel to a tokenwire server and the generated stub of every service.
 *
 * <pre>{@code
 * try (TokenwireClient c = TokenwireClient.connect("127.0.0.1:50051")) {
 *   GenerateResponse r = c.generation.generate(GenerateRequest.newBuilder()
 *       .setModel("tiny-llama").setPrompt("Once upon a time").build());
 *   c.generateStream(request, msg -> { System.out.print(msg.getText()); return true; });
 * }
 * }</pre>
 *
 * Failed calls throw {@link StatusRuntimeException}; {@link TokenwireErrors} decodes its
 * field violations and request id.
 */
public final class TokenwireClient implements AutoCloseable {
  public static final String DEFAULT_TARGET = "127.0.0.1:50051";
  /** The server's default max_receive_message_bytes (64 MiB). */
  public static final int MAX_MESSAGE_BYTES = 64 << 20;

  private final ManagedChannel channel;
  public final GenerationGrpc.GenerationBlockingStub generation;
  public final GenerationGrpc.GenerationStub generationAsync;
  public final UnderstandingGrpc.UnderstandingBlockingStub understanding;
  public final MultimodalGrpc.MultimodalBlockingStub multimodal;
  public final ModelsGrpc.ModelsBlockingStub models;
  public final HealthGrpc.HealthBlockingStub health;

  /** A plaintext channel to target ("host:port") with 64 MiB message limits. */
  public static TokenwireClient connect(String target) {
    return new TokenwireClient(ManagedChannelBuilder.forTarget(target)
        .usePlaintext()
        .maxInboundMessageSize(MAX_MESSAGE_BYTES)
        .build());
  }

  /** Wraps a channel built elsewhere (TLS, interceptors, ...); close() shuts it down. */
  public TokenwireClient(ManagedChannel channel) {
    this.channel = channel;
    this.generation = GenerationGrpc.newBlockingStub(channel);
    this.generationAsync = GenerationGrpc.newStub(channel);
    this.understanding = UnderstandingGrpc.newBlockingStub(channel);
    this.multimodal = MultimodalGrpc.newBlockingStub(channel);
    this.models = ModelsGrpc.newBlockingStub(channel);
    this.health = HealthGrpc.newBlockingStub(channel);
  }

  public ManagedChannel channel() {
    return channel;
  }

  /** Whether health says service ("" = the whole server) is SERVING. */
  public boolean isServing(String service) {
    try {
      return health.withDeadlineAfter(2, TimeUnit.SECONDS)
          .check(HealthCheckRequest.newBuilder().setService(service).build())
          .getStatus() == HealthCheckResponse.ServingStatus.SERVING;
    } catch (StatusRuntimeException e) {
      return false;
    }
  }

  /**
   * Polls health until service is SERVING. The port opens before the models load; ""
   * turns SERVING once every model has settled.
   */
  public void waitServing(String service, Duration timeout) throws InterruptedException, TimeoutException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!isServing(service)) {
      if (System.nanoTime() > deadline) {
        throw new TimeoutException("health of \"" + service + "\" never turned SERVING");
      }
      Thread.sleep(100);
    }
  }

  /**
   * Runs GenerateStream, hands each message to onMessage and returns the stream folded into
   * the GenerateResponse that Generate would have returned. When onMessage returns false the
   * call is cancelled (the server stops generating at its next step) and the partial result
   * is returned. A failure throws StatusRuntimeException.
   */
  public GenerateResponse generateStream(GenerateRequest request, Predicate<GenerateStreamResponse> onMessage) {
    return stream(stub -> stub.generation.generateStream(request), onMessage);
  }

  /** As generateStream, for Multimodal.MultimodalChatStream. */
  public GenerateResponse multimodalChatStream(MultimodalChatRequest request,
      Predicate<GenerateStreamResponse> onMessage) {
    return stream(stub -> stub.multimodal.multimodalChatStream(request), onMessage);
  }

  private GenerateResponse stream(Function<TokenwireClient, Iterator<GenerateStreamResponse>> open,
      Predicate<GenerateStreamResponse> onMessage) {
    StreamAccumulator acc = new StreamAccumulator();
    // A blocking stream's call belongs to the context it starts in: cancelling the context
    // cancels the call, also when the caller stops early or onMessage throws.
    Context.CancellableContext ctx = Context.current().withCancellation();
    try {
      return ctx.call(() -> {
        Iterator<GenerateStreamResponse> it = open.apply(this);
        while (it.hasNext()) {
          GenerateStreamResponse msg = it.next();
          acc.add(msg);
          if (!onMessage.test(msg)) {
            break;
          }
        }
        return acc.response();
      });
    } catch (RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    } finally {
      ctx.cancel(null);
    }
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdown();
    if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
      channel.shutdownNow();
    }
  }
}
