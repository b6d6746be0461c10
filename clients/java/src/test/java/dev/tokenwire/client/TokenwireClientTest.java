package dev.tokenwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.ByteString;
import dev.tokenwire.v1.Aggregation;
import dev.tokenwire.v1.AnswerQuestionRequest;
import dev.tokenwire.v1.AnswerQuestionResponse;
import dev.tokenwire.v1.ChatMessage;
import dev.tokenwire.v1.ChoiceList;
import dev.tokenwire.v1.ClassifyFunction;
import dev.tokenwire.v1.ClassifyImageRequest;
import dev.tokenwire.v1.ClassifyImageResponse;
import dev.tokenwire.v1.ClassifyTextRequest;
import dev.tokenwire.v1.ClassifyTextResponse;
import dev.tokenwire.v1.ClassifyTokensRequest;
import dev.tokenwire.v1.ClassifyTokensResponse;
import dev.tokenwire.v1.Constraint;
import dev.tokenwire.v1.ContentPart;
import dev.tokenwire.v1.DecodingMethod;
import dev.tokenwire.v1.DetokenizeRequest;
import dev.tokenwire.v1.EmbedRequest;
import dev.tokenwire.v1.EmbedResponse;
import dev.tokenwire.v1.EmbedTextRequest;
import dev.tokenwire.v1.EmbedTextResponse;
import dev.tokenwire.v1.Embedding;
import dev.tokenwire.v1.FillMaskRequest;
import dev.tokenwire.v1.FillMaskResponse;
import dev.tokenwire.v1.FinishReason;
import dev.tokenwire.v1.GenerateRequest;
import dev.tokenwire.v1.GenerateResponse;
import dev.tokenwire.v1.GenerateStreamResponse;
import dev.tokenwire.v1.GetModelInfoRequest;
import dev.tokenwire.v1.Image;
import dev.tokenwire.v1.ListModelsRequest;
import dev.tokenwire.v1.ModelInfo;
import dev.tokenwire.v1.ModelState;
import dev.tokenwire.v1.MultimodalChatRequest;
import dev.tokenwire.v1.NextSentenceRequest;
import dev.tokenwire.v1.NextSentenceResponse;
import dev.tokenwire.v1.Pooling;
import dev.tokenwire.v1.RerankRequest;
import dev.tokenwire.v1.RerankResponse;
import dev.tokenwire.v1.RerankResult;
import dev.tokenwire.v1.SamplingParams;
import dev.tokenwire.v1.Sequence;
import dev.tokenwire.v1.StoppingParams;
import dev.tokenwire.v1.Task;
import dev.tokenwire.v1.TextClassification;
import dev.tokenwire.v1.TextEmbedding;
import dev.tokenwire.v1.TextInput;
import dev.tokenwire.v1.TextLabel;
import dev.tokenwire.v1.TokenEntity;
import dev.tokenwire.v1.TokenizeRequest;
import dev.tokenwire.v1.TokenizeResponse;
import io.grpc.Context;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.MetadataUtils;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import java.util.regex.Pattern;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The Java client against a real `tokenwire serve --demo --port 0`: every RPC of the
 * protocol, a stream read to its end, cancelled streams, and INVALID_ARGUMENT decoding.
 */
class TokenwireClientTest {
  private static TestServer server;
  private static TokenwireClient client;

  @BeforeAll
  static void startServer() throws Exception {
    server = TestServer.start();
    client = TokenwireClient.connect(server.target);
    client.waitServing("", Duration.ofMinutes(3));
  }

  @AfterAll
  static void stopServer() throws Exception {
    if (client != null) {
      client.close();
    }
    if (server != null) {
      server.close();
    }
  }

  private static GenerateRequest greedy(String prompt, int maxNewTokens) {
    return GenerateRequest.newBuilder()
        .setModel("tiny-llama")
        .setPrompt(prompt)
        .setMethod(DecodingMethod.DECODING_METHOD_GREEDY)
        .setStopping(StoppingParams.newBuilder().setMaxNewTokens(maxNewTokens).setIgnoreEos(true))
        .build();
  }

  /** The call must succeed; a failure names the RPC. */
  private static <T> T ok(String rpc, Supplier<T> call) {
    try {
      return call.get();
    } catch (StatusRuntimeException e) {
      throw new AssertionError(rpc + " failed: " + e.getStatus(), e);
    }
  }

  private static ByteString gradientPng() throws Exception {
    BufferedImage img = new BufferedImage(32, 32, BufferedImage.TYPE_INT_RGB);
    for (int y = 0; y < 32; y++) {
      for (int x = 0; x < 32; x++) {
        img.setRGB(x, y, (8 * x) << 16 | (8 * y) << 8 | 128);
      }
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ImageIO.write(img, "png", out);
    return ByteString.copyFrom(out.toByteArray());
  }

  @Test
  void healthIsServing() {
    for (String service : List.of("", "tokenwire.v1.Models", "tokenwire.v1.Generation")) {
      assertTrue(client.isServing(service), "health of \"" + service + "\"");
    }
  }

  @Test
  void modelsListDescribeTokenize() {
    List<String> names = client.models.listModels(ListModelsRequest.getDefaultInstance())
        .getModelsList().stream().map(ModelInfo::getName).toList();
    assertEquals(List.of("tiny-bert", "tiny-bert-classifier", "tiny-bert-embed", "tiny-bert-ner", "tiny-bert-qa",
        "tiny-bert-reranker", "tiny-bert-sentiment", "tiny-clip", "tiny-gpt2", "tiny-llama", "tiny-llava"), names);
    assertEquals(2, client.models.listModels(ListModelsRequest.newBuilder().setTask(Task.TASK_GENERATE).build())
        .getModelsCount());

    ModelInfo info = client.models.getModelInfo(GetModelInfoRequest.newBuilder().setModel("tiny-llama").build());
    assertEquals(ModelState.MODEL_STATE_READY, info.getState());
    assertEquals(List.of(Task.TASK_GENERATE), info.getTasksList());
    assertTrue(info.getVocabSize() > 0 && info.getMaxNewTokens() > 0);

    String text = "naïve café";
    TokenizeResponse tok = client.models.tokenize(TokenizeRequest.newBuilder().setModel("tiny-gpt2").setText(text).build());
    assertTrue(tok.getIdsCount() > 0);
    assertEquals(tok.getIdsCount(), tok.getOffsetsCount());
    assertEquals(text.codePointCount(0, text.length()), tok.getOffsets(tok.getOffsetsCount() - 1).getEnd());
    String back = client.models.detokenize(DetokenizeRequest.newBuilder().setModel("tiny-gpt2")
        .addAllIds(tok.getIdsList()).build()).getText();
    assertEquals(text, back);
  }

  @Test
  void requestIdTrailerOnSuccess() {
    AtomicReference<Metadata> headers = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    client.models.withInterceptors(MetadataUtils.newCaptureMetadataInterceptor(headers, trailers))
        .listModels(ListModelsRequest.getDefaultInstance());
    String id = trailers.get().get(TokenwireErrors.REQUEST_ID);
    assertTrue(id != null && !id.isEmpty(), "x-request-id trailer");

    Metadata mine = new Metadata();
    mine.put(TokenwireErrors.REQUEST_ID, "java-client-test-1");
    client.models.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(mine),
            MetadataUtils.newCaptureMetadataInterceptor(headers, trailers))
        .listModels(ListModelsRequest.getDefaultInstance());
    assertEquals("java-client-test-1", trailers.get().get(TokenwireErrors.REQUEST_ID));
  }

  @Test
  void generateGreedyAndSeededSampling() {
    GenerateResponse r = client.generation.generate(greedy("Once upon a time", 16));
    assertEquals(1, r.getSequencesCount());
    assertEquals(16, r.getSequences(0).getTokenIdsCount());
    assertEquals(FinishReason.FINISH_REASON_LENGTH, r.getSequences(0).getFinishReason());
    assertEquals(16, r.getUsage().getCompletionTokens());
    assertEquals("tiny-llama", r.getModel());

    long seed = Long.parseUnsignedLong("9223372036854788153"); // above 2^63: uint64 round-trips
    GenerateRequest sample = greedy("The weather", 8).toBuilder()
        .setMethod(DecodingMethod.DECODING_METHOD_SAMPLE)
        .setSampling(SamplingParams.newBuilder().setSeed(seed))
        .setNumReturnSequences(2).build();
    GenerateResponse a = client.generation.generate(sample);
    GenerateResponse b = client.generation.generate(sample);
    assertEquals(seed, a.getSeed());
    assertEquals(2, a.getSequencesCount());
    assertEquals(a.getSequences(0).getTokenIdsList(), b.getSequences(0).getTokenIdsList());
  }

  @Test
  void streamReadToTheEndFoldsIntoGenerate() {
    GenerateRequest req = greedy("It was a dark and stormy night", 24);
    GenerateResponse want = client.generation.generate(req);
    AtomicInteger messages = new AtomicInteger();
    GenerateResponse got = client.generateStream(req, msg -> {
      if (messages.getAndIncrement() == 0) {
        assertEquals("tiny-llama", msg.getModel());
      }
      return true;
    });
    assertTrue(messages.get() >= 2, messages + " messages");
    assertEquals(24, got.getUsage().getCompletionTokens());
    assertEquals(want.getSequences(0).getText(), got.getSequences(0).getText());
    assertEquals(want.getSequences(0).getTokenIdsList(), got.getSequences(0).getTokenIdsList());
    assertEquals(FinishReason.FINISH_REASON_LENGTH, got.getSequences(0).getFinishReason());

    // The plain blocking iterator, read to its end, gives the same.
    StreamAccumulator acc = new StreamAccumulator();
    client.generation.generateStream(req).forEachRemaining(acc::add);
    assertEquals(want.getSequences(0).getText(), acc.response().getSequences(0).getText());
  }

  @Test
  void streamStoppedByTheCallbackIsCancelled() {
    AtomicInteger seen = new AtomicInteger();
    GenerateResponse partial = client.generateStream(greedy("Stop early", 2000),
        msg -> msg.getTokenIdsCount() == 0 || seen.incrementAndGet() < 3);
    assertEquals(3, seen.get());
    assertFalse(partial.getSequences(0).getTokenIdsList().isEmpty());
    assertEquals(4, client.generation.generate(greedy("still alive?", 4)).getSequences(0).getTokenIdsCount());
  }

  @Test
  void cancelledBlockingStreamThrowsCancelled() {
    Context.CancellableContext ctx = Context.current().withCancellation();
    long start = System.nanoTime();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> ctx.run(() -> {
      Iterator<GenerateStreamResponse> it = client.generation.generateStream(greedy("A very long story", 2000));
      int tokens = 0;
      while (it.hasNext()) {
        if (it.next().getTokenIdsCount() > 0 && ++tokens == 2) {
          ctx.cancel(null);
        }
      }
    }));
    assertEquals(Status.Code.CANCELLED, e.getStatus().getCode());
    assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(30));
    assertEquals(4, client.generation.generate(greedy("still alive?", 4)).getSequences(0).getTokenIdsCount());
  }

  @Test
  void cancelledAsyncStreamEndsWithCancelled() throws Exception {
    CompletableFuture<Status> done = new CompletableFuture<>();
    AtomicInteger tokens = new AtomicInteger();
    client.generationAsync.generateStream(greedy("A very long story", 2000),
        new ClientResponseObserver<GenerateRequest, GenerateStreamResponse>() {
          private ClientCallStreamObserver<GenerateRequest> call;

          @Override
          public void beforeStart(ClientCallStreamObserver<GenerateRequest> requestStream) {
            call = requestStream;
          }

          @Override
          public void onNext(GenerateStreamResponse msg) {
            if (msg.getTokenIdsCount() > 0 && tokens.incrementAndGet() == 2) {
              call.cancel("client has seen enough", null);
            }
          }

          @Override
          public void onError(Throwable t) {
            done.complete(Status.fromThrowable(t));
          }

          @Override
          public void onCompleted() {
            done.complete(Status.OK);
          }
        });
    assertEquals(Status.Code.CANCELLED, done.get(30, TimeUnit.SECONDS).getCode());
    assertTrue(tokens.get() >= 2);
  }

  @Test
  void invalidArgumentCarriesFieldViolation() {
    GenerateRequest bad = greedy("x", 4).toBuilder()
        .setMethod(DecodingMethod.DECODING_METHOD_SAMPLE)
        .setSampling(SamplingParams.newBuilder().setTopP(1.5f)).build();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.generation.generate(bad));
    assertEquals(Status.Code.INVALID_ARGUMENT, TokenwireErrors.code(e));
    assertTrue(TokenwireErrors.fieldViolation(e, "sampling.top_p").orElse("").contains("top_p"),
        () -> "violations: " + TokenwireErrors.fieldViolations(e));
    assertTrue(TokenwireErrors.requestId(e).isPresent());

    StatusRuntimeException streamed = assertThrows(StatusRuntimeException.class,
        () -> client.generateStream(bad, msg -> true));
    assertEquals(Status.Code.INVALID_ARGUMENT, TokenwireErrors.code(streamed));
    assertTrue(TokenwireErrors.fieldViolation(streamed, "sampling.top_p").isPresent());
    assertTrue(TokenwireErrors.requestId(streamed).isPresent());

    StatusRuntimeException detok = assertThrows(StatusRuntimeException.class, () -> client.models.detokenize(
        DetokenizeRequest.newBuilder().setModel("tiny-gpt2").addIds(1).addIds(2).addIds(1 << 30).build()));
    assertTrue(TokenwireErrors.fieldViolation(detok, "ids[2]").isPresent(),
        () -> "violations: " + TokenwireErrors.fieldViolations(detok));
  }

  @Test
  void unknownModelAndMissingTask() {
    StatusRuntimeException nf = assertThrows(StatusRuntimeException.class, () -> client.generation.generate(
        GenerateRequest.newBuilder().setModel("no-such-model").setPrompt("x").build()));
    assertEquals(Status.Code.NOT_FOUND, TokenwireErrors.code(nf));
    assertTrue(TokenwireErrors.requestId(nf).isPresent());
    StatusRuntimeException fp = assertThrows(StatusRuntimeException.class, () -> client.generation.generate(
        GenerateRequest.newBuilder().setModel("tiny-bert").setPrompt("x").build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, TokenwireErrors.code(fp));
  }

  // Structured output (docs/structured-output.md): the random-weight demo models produce valid
  // output only because of the mask, so a sequence that ended with EOS must satisfy its
  // constraint; one cut short by max_new_tokens (LENGTH) may be a partial prefix.
  private static GenerateRequest constrained(String prompt, int maxNewTokens, Constraint constraint) {
    return GenerateRequest.newBuilder()
        .setModel("tiny-llama")
        .setPrompt(prompt)
        .setConstraint(constraint)
        .setStopping(StoppingParams.newBuilder().setMaxNewTokens(maxNewTokens))
        .build();
  }

  @Test
  void constraintChoices() {
    List<String> choices = List.of("yes", "no", "maybe");
    Constraint constraint = Constraint.newBuilder().setChoices(ChoiceList.newBuilder().addAllValues(choices)).build();
    GenerateRequest greedyReq = constrained("Is it raining?", 16, constraint);
    GenerateRequest sampled = greedyReq.toBuilder()
        .setMethod(DecodingMethod.DECODING_METHOD_SAMPLE)
        .setSampling(SamplingParams.newBuilder().setTemperature(1.5f).setSeed(11))
        .setNumReturnSequences(3).build();
    for (GenerateRequest req : List.of(greedyReq, sampled)) {
      GenerateResponse r = client.generation.generate(req);
      assertEquals(Math.max(1, req.getNumReturnSequences()), r.getSequencesCount());
      for (Sequence s : r.getSequencesList()) {
        // The longest choice is a few tokens: after it the grammar allows only EOS.
        assertEquals(FinishReason.FINISH_REASON_EOS_TOKEN, s.getFinishReason(), s.getText());
        assertTrue(choices.contains(s.getText()), () -> s.getText() + " is not one of " + choices);
      }
    }
  }

  @Test
  void constraintJsonSchemaSampled() {
    String schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"}},\"required\":[\"ok\"]}";
    GenerateRequest req = constrained("A status record:", 32, Constraint.newBuilder().setJsonSchema(schema).build())
        .toBuilder()
        .setMethod(DecodingMethod.DECODING_METHOD_SAMPLE)
        .setSampling(SamplingParams.newBuilder().setTemperature(1.5f).setSeed(5))
        .setNumReturnSequences(3).build();
    GenerateResponse r = client.generation.generate(req);
    assertEquals(3, r.getSequencesCount());
    List<Sequence> finished = r.getSequencesList().stream()
        .filter(s -> s.getFinishReason() == FinishReason.FINISH_REASON_EOS_TOKEN).toList();
    assertFalse(finished.isEmpty(), () -> "none finished with EOS: " + r.getSequencesList());
    for (Sequence s : finished) {
      JsonElement doc = JsonParser.parseString(s.getText()); // throws JsonSyntaxException if not JSON
      assertTrue(doc.isJsonObject(), s.getText());
      JsonObject obj = doc.getAsJsonObject();
      assertEquals(Set.of("ok"), obj.keySet(), s.getText());
      assertTrue(obj.get("ok").isJsonPrimitive() && obj.get("ok").getAsJsonPrimitive().isBoolean(), s.getText());
    }
  }

  @Test
  void constraintRegexStreamed() {
    String regex = "(red|green|blue)-[0-9]{2,4}";
    GenerateRequest req = constrained("The code is", 24, Constraint.newBuilder().setRegex(regex).build());
    StringBuilder text = new StringBuilder();
    AtomicReference<FinishReason> reason = new AtomicReference<>(FinishReason.FINISH_REASON_UNSPECIFIED);
    GenerateResponse folded = client.generateStream(req, msg -> {
      text.append(msg.getText());
      if (msg.getFinishReason() != FinishReason.FINISH_REASON_UNSPECIFIED) {
        reason.set(msg.getFinishReason());
      }
      return true;
    });
    // The regex is bounded (at most 10 characters), so greedy decoding reaches its end and EOS.
    assertEquals(FinishReason.FINISH_REASON_EOS_TOKEN, reason.get(), text.toString());
    assertTrue(Pattern.matches(regex, text), () -> text + " does not fully match " + regex);
    assertEquals(text.toString(), folded.getSequences(0).getText());
    assertEquals(text.toString(), client.generation.generate(req).getSequences(0).getText());
  }

  @Test
  void constraintInvalidRegex() {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.generation.generate(
        constrained("x", 4, Constraint.newBuilder().setRegex("((").build())));
    assertEquals(Status.Code.INVALID_ARGUMENT, TokenwireErrors.code(e));
    assertTrue(TokenwireErrors.fieldViolation(e, "constraint.regex").isPresent(),
        () -> "violations: " + TokenwireErrors.fieldViolations(e));
  }

  @Test
  void understanding() {
    FillMaskResponse fill = ok("FillMask", () -> client.understanding.fillMask(FillMaskRequest.newBuilder()
        .setModel("tiny-bert").setText("The capital of France is [MASK].").setTopK(3).build()));
    if (fill != null) {
      assertEquals(1, fill.getMasksCount());
      assertEquals(3, fill.getMasks(0).getCandidatesCount());
    }
    NextSentenceResponse nsp = ok("NextSentence", () -> client.understanding.nextSentence(
        NextSentenceRequest.newBuilder().setModel("tiny-bert")
            .setSentenceA("I went to the store.").setSentenceB("I bought milk.").build()));
    if (nsp != null) {
      assertEquals(1.0, nsp.getIsNextProbability() + nsp.getNotNextProbability(), 1e-4);
    }
    String context = "Paris is the capital of France. It has the Eiffel Tower.";
    AnswerQuestionResponse qa = ok("AnswerQuestion", () -> client.understanding.answerQuestion(
        AnswerQuestionRequest.newBuilder().setModel("tiny-bert-qa")
            .setQuestion("What is the capital of France?").setContext(context).setTopK(2).build()));
    if (qa != null) {
      int[] cps = context.codePoints().toArray();
      qa.getAnswersList().forEach(a ->
          assertEquals(new String(cps, a.getStart(), a.getEnd() - a.getStart()), a.getText()));
    }
  }

  private static boolean descending(List<Float> scores) {
    for (int i = 1; i < scores.size(); i++) {
      if (scores.get(i - 1) < scores.get(i)) {
        return false;
      }
    }
    return true;
  }

  private static double norm(List<Float> values) {
    return Math.sqrt(values.stream().mapToDouble(v -> v * v).sum());
  }

  @Test
  void encoderTasks() {
    ClassifyTextResponse cls = ok("ClassifyText", () -> client.understanding.classifyText(
        ClassifyTextRequest.newBuilder().setModel("tiny-bert-classifier")
            .addInputs(TextInput.newBuilder().setText("What a lovely day."))
            .addInputs(TextInput.newBuilder().setText("A man eats food.").setTextPair("A man is eating."))
            .build()));
    assertEquals(2, cls.getResultsCount());
    for (TextClassification r : cls.getResultsList()) {
      assertEquals(List.of("negative", "neutral", "positive"),
          r.getLabelsList().stream().map(TextLabel::getLabel).sorted().toList());
      assertEquals(1.0, r.getLabelsList().stream().mapToDouble(TextLabel::getScore).sum(), 1e-4);
      assertTrue(descending(r.getLabelsList().stream().map(TextLabel::getScore).toList()), r.toString());
    }
    ClassifyTextResponse top = ok("ClassifyText(top_k, sigmoid)", () -> client.understanding.classifyText(
        ClassifyTextRequest.newBuilder().setModel("tiny-bert-classifier")
            .addInputs(TextInput.newBuilder().setText("fine")).setTopK(1)
            .setFunction(ClassifyFunction.CLASSIFY_FUNCTION_SIGMOID).build()));
    assertEquals(1, top.getResults(0).getLabelsCount());

    String text = "John Smith lives in Paris and works for the United Nations.";
    // "-" is no label: every token comes back, "O" included.
    ClassifyTokensResponse tokens = ok("ClassifyTokens", () -> client.understanding.classifyTokens(
        ClassifyTokensRequest.newBuilder().setModel("tiny-bert-ner").setText(text).addIgnoreLabels("-").build()));
    assertTrue(tokens.getEntitiesCount() >= 10, "tokens: " + tokens.getEntitiesCount());
    long codePoints = text.codePoints().count();
    for (TokenEntity e : tokens.getEntitiesList()) {
      assertTrue(e.getStart() < e.getEnd() && e.getEnd() <= codePoints && e.getIndex() > 0, e.toString());
    }
    ClassifyTokensResponse grouped = ok("ClassifyTokens(simple)", () -> client.understanding.classifyTokens(
        ClassifyTokensRequest.newBuilder().setModel("tiny-bert-ner").setText(text)
            .setAggregation(Aggregation.AGGREGATION_SIMPLE).build()));
    for (TokenEntity e : grouped.getEntitiesList()) {
      assertTrue(List.of("PER", "LOC", "ORG").contains(e.getLabel()), e.toString());
    }

    EmbedTextResponse emb = ok("EmbedText", () -> client.understanding.embedText(EmbedTextRequest.newBuilder()
        .setModel("tiny-bert-embed").addTexts("a sentence").addTexts("another, longer sentence").build()));
    assertEquals(64, emb.getDimensions());
    assertEquals(2, emb.getEmbeddingsCount());
    for (TextEmbedding e : emb.getEmbeddingsList()) {
      assertEquals(64, e.getValuesCount());
      assertEquals(1.0, norm(e.getValuesList()), 1e-3); // the checkpoint normalizes
    }
    EmbedTextResponse cut = ok("EmbedText(dimensions)", () -> client.understanding.embedText(
        EmbedTextRequest.newBuilder().setModel("tiny-bert-embed").addTexts("a sentence")
            .setPooling(Pooling.POOLING_CLS).setDimensions(16).setNormalize(true).build()));
    assertEquals(16, cut.getDimensions());
    assertEquals(16, cut.getEmbeddings(0).getValuesCount());
    assertEquals(1.0, norm(cut.getEmbeddings(0).getValuesList()), 1e-3);
    StatusRuntimeException empty = assertThrows(StatusRuntimeException.class, () -> client.understanding.embedText(
        EmbedTextRequest.newBuilder().setModel("tiny-bert-embed").addTexts("ok").addTexts("").build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, TokenwireErrors.code(empty));
    assertTrue(TokenwireErrors.fieldViolation(empty, "texts[1]").isPresent(),
        () -> "violations: " + TokenwireErrors.fieldViolations(empty));

    List<String> documents = List.of(
        "Marie Curie was born in Warsaw.", "The Eiffel Tower is in Paris.", "Bananas are rich in potassium.");
    RerankResponse rr = ok("Rerank", () -> client.understanding.rerank(RerankRequest.newBuilder()
        .setModel("tiny-bert-reranker").setQuery("Where was Marie Curie born?").addAllDocuments(documents)
        .setTopN(2).build()));
    assertEquals(2, rr.getResultsCount());
    assertTrue(descending(rr.getResultsList().stream().map(RerankResult::getScore).toList()), rr.toString());
    assertNotEquals(rr.getResults(0).getIndex(), rr.getResults(1).getIndex());
    for (RerankResult r : rr.getResultsList()) {
      assertTrue(r.getIndex() < documents.size() && r.getScore() >= 0 && r.getScore() <= 1, r.toString());
    }
    StatusRuntimeException wrongTask = assertThrows(StatusRuntimeException.class, () -> client.understanding.rerank(
        RerankRequest.newBuilder().setModel("tiny-bert-ner").setQuery("q").addDocuments("d").build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, TokenwireErrors.code(wrongTask));
  }

  @Test
  void multimodal() throws Exception {
    Image image = Image.newBuilder().setData(gradientPng()).setMimeType("image/png").build();
    MultimodalChatRequest chat = MultimodalChatRequest.newBuilder()
        .setModel("tiny-llava")
        .addMessages(ChatMessage.newBuilder().setRole("user")
            .addParts(ContentPart.newBuilder().setImage(image))
            .addParts(ContentPart.newBuilder().setText("What is in this picture?")))
        .setStopping(StoppingParams.newBuilder().setMaxNewTokens(8))
        .build();
    GenerateResponse reply = ok("MultimodalChat", () -> client.multimodal.multimodalChat(chat));
    if (reply != null) {
      assertEquals(1, reply.getSequencesCount());
      assertNotEquals(FinishReason.FINISH_REASON_UNSPECIFIED, reply.getSequences(0).getFinishReason());
    }
    GenerateResponse streamed = ok("MultimodalChatStream",
        () -> client.multimodalChatStream(chat, msg -> true));
    if (streamed != null) {
      assertEquals(1, streamed.getSequencesCount());
      assertNotEquals(FinishReason.FINISH_REASON_UNSPECIFIED, streamed.getSequences(0).getFinishReason());
    }

    List<String> labels = List.of("a cat", "a dog", "a gradient");
    ClassifyImageResponse cls = ok("ClassifyImage", () -> client.multimodal.classifyImage(
        ClassifyImageRequest.newBuilder().setModel("tiny-clip").setImage(image).addAllLabels(labels).build()));
    if (cls != null) {
      assertEquals(labels.size(), cls.getScoresCount());
      assertEquals(1.0, cls.getScoresList().stream().mapToDouble(s -> s.getScore()).sum(), 1e-3);
      for (int i = 1; i < cls.getScoresCount(); i++) {
        assertTrue(cls.getScores(i - 1).getScore() >= cls.getScores(i).getScore());
      }
    }
    EmbedResponse emb = ok("Embed", () -> client.multimodal.embed(EmbedRequest.newBuilder()
        .setModel("tiny-clip").addTexts("a photo of a cat").addImages(image).setNormalize(true).build()));
    if (emb != null) {
      assertEquals(2, emb.getEmbeddingsCount());
      for (Embedding e : emb.getEmbeddingsList()) {
        assertEquals(emb.getDimensions(), e.getValuesCount());
        assertEquals(1.0, Math.sqrt(e.getValuesList().stream().mapToDouble(v -> v * v).sum()), 1e-3);
      }
    }
  }
}
