package dev.tokenwire.client.example;

import dev.tokenwire.client.TokenwireClient;
import dev.tokenwire.client.TokenwireErrors;
import dev.tokenwire.v1.ChoiceList;
import dev.tokenwire.v1.Constraint;
import dev.tokenwire.v1.DecodingMethod;
import dev.tokenwire.v1.GenerateRequest;
import dev.tokenwire.v1.GenerateResponse;
import dev.tokenwire.v1.SamplingParams;
import dev.tokenwire.v1.StoppingParams;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Example: list the models, then stream a generation, optionally constrained (structured
 * output, docs/structured-output.md: at most one of -json-schema, -regex, -choice).
 *
 * <pre>
 * mvn -q compile exec:java -Dexec.args="[-target HOST:PORT] [-model M] [-max-new-tokens N] [-temperature T]
 *     [-json-schema FILE | -regex RE | -choice S ...] PROMPT"
 * </pre>
 */
public final class Generate {
  public static void main(String[] args) throws Exception {
    String target = TokenwireClient.DEFAULT_TARGET;
    String model = "tiny-llama";
    int maxNewTokens = 32;
    float temperature = 0;
    List<String> prompt = new ArrayList<>();
    List<Constraint> constraints = new ArrayList<>();
    ChoiceList.Builder choices = ChoiceList.newBuilder();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "-target" -> target = args[++i];
        case "-model" -> model = args[++i];
        case "-max-new-tokens" -> maxNewTokens = Integer.parseInt(args[++i]);
        case "-temperature" -> temperature = Float.parseFloat(args[++i]);
        case "-json-schema" -> constraints.add(Constraint.newBuilder()
            .setJsonSchema(Files.readString(Path.of(args[++i]))).build());
        case "-regex" -> constraints.add(Constraint.newBuilder().setRegex(args[++i]).build());
        case "-choice" -> choices.addValues(args[++i]);
        default -> prompt.add(args[i]);
      }
    }
    GenerateRequest.Builder request = GenerateRequest.newBuilder()
        .setModel(model)
        .setPrompt(prompt.isEmpty() ? "Once upon a time" : String.join(" ", prompt))
        .setStopping(StoppingParams.newBuilder().setMaxNewTokens(maxNewTokens));
    if (choices.getValuesCount() > 0) {
      constraints.add(Constraint.newBuilder().setChoices(choices).build());
    }
    if (constraints.size() > 1) {
      System.err.println("-json-schema, -regex and -choice exclude each other");
      System.exit(2);
    }
    if (!constraints.isEmpty()) {
      request.setConstraint(constraints.get(0));
    }
    if (temperature > 0) {
      request.setMethod(DecodingMethod.DECODING_METHOD_SAMPLE)
          .setSampling(SamplingParams.newBuilder().setTemperature(temperature));
    }

    try (TokenwireClient client = TokenwireClient.connect(target)) {
      client.models.listModels(dev.tokenwire.v1.ListModelsRequest.getDefaultInstance()).getModelsList()
          .forEach(m -> System.err.printf("%-20s %s %s%n", m.getName(), m.getState(), m.getTasksList()));
      GenerateResponse folded = client.generateStream(request.build(), msg -> {
        System.out.print(msg.getText());
        System.out.flush();
        return true;
      });
      System.out.println();
      System.err.printf("[%s, %d prompt + %d generated tokens]%n",
          folded.getSequences(0).getFinishReason(),
          folded.getUsage().getPromptTokens(), folded.getUsage().getCompletionTokens());
    } catch (StatusRuntimeException e) {
      System.err.println("error: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      TokenwireErrors.fieldViolations(e)
          .forEach(v -> System.err.println("  field " + v.field() + ": " + v.description()));
      TokenwireErrors.requestId(e).ifPresent(id -> System.err.println("  request id: " + id));
      System.exit(1);
    }
  }
}
