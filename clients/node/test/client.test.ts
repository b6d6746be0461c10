/**
 * The TypeScript client against a real `tokenwire serve --demo --port 0`: every RPC of the
 * protocol, a stream read to its end, cancelled streams, and INVALID_ARGUMENT decoding.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";

import {
  Accumulator,
  Aggregation,
  ClassifyFunction,
  collect,
  type Constraint,
  DecodingMethod,
  FinishReason,
  type GenerateRequest,
  Metadata,
  ModelState,
  Pooling,
  status,
  Task,
  TokenwireClient,
  TokenwireError,
  REQUEST_ID_KEY,
  type DeepPartial,
} from "../src/index.js";
import { gradientPng } from "./png.js";
import { startServer, type TestServer } from "./server.js";

let server: TestServer;
let client: TokenwireClient;

before(async () => {
  server = await startServer();
  client = new TokenwireClient(server.target);
  await client.waitServing("", 180_000);
});

after(async () => {
  client?.close();
  await server?.stop();
});

function greedy(prompt: string, maxNewTokens: number): DeepPartial<GenerateRequest> {
  return {
    model: "tiny-llama",
    prompt,
    method: DecodingMethod.DECODING_METHOD_GREEDY,
    stopping: { maxNewTokens, ignoreEos: true },
  };
}

/** The call must succeed; a failure names the RPC. */
async function ok<T>(t: TestContext, rpc: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    t.diagnostic(`${rpc} failed: ${err}`);
    throw err;
  }
}

async function rejectsWith(promise: Promise<unknown>, code: status): Promise<TokenwireError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TokenwireError, `expected a TokenwireError, got ${err}`);
    assert.equal(err.codeName, status[code]);
    return err;
  }
  assert.fail(`expected ${status[code]}, the call succeeded`);
}

describe("health and models", () => {
  it("reports SERVING for the server and its services", async () => {
    for (const service of ["", "tokenwire.v1.Models", "tokenwire.v1.Generation"]) {
      assert.ok(await client.isServing(service), `health of "${service}"`);
    }
  });

  it("lists, describes and tokenizes", async () => {
    const list = await client.listModels();
    assert.deepEqual(
      list.models.map((m) => m.name),
      [
        "tiny-bert",
        "tiny-bert-classifier",
        "tiny-bert-embed",
        "tiny-bert-ner",
        "tiny-bert-qa",
        "tiny-bert-reranker",
        "tiny-bert-sentiment",
        "tiny-clip",
        "tiny-gpt2",
        "tiny-llama",
        "tiny-llava",
      ],
    );
    const gen = await client.listModels({ task: Task.TASK_GENERATE });
    assert.deepEqual(gen.models.map((m) => m.name), ["tiny-gpt2", "tiny-llama"]);

    const info = await client.getModelInfo({ model: "tiny-llama" });
    assert.equal(info.state, ModelState.MODEL_STATE_READY);
    assert.deepEqual(info.tasks, [Task.TASK_GENERATE]);
    assert.ok(info.vocabSize > 0 && info.maxNewTokens > 0);
    assert.equal(typeof info.memoryFootprintBytes, "bigint");

    const text = "naïve café";
    const tok = await client.tokenize({ model: "tiny-gpt2", text });
    assert.ok(tok.ids.length > 0);
    assert.equal(tok.tokens.length, tok.ids.length);
    assert.equal(tok.offsets.at(-1)!.end, [...text].length); // code points, not UTF-16 units
    const detok = await client.detokenize({ model: "tiny-gpt2", ids: tok.ids });
    assert.equal(detok.text, text);
  });

  it("returns the x-request-id trailer, the client's own when sent", async () => {
    let trailers: Metadata | undefined;
    await client.listModels({}, { onTrailers: (md) => (trailers = md) });
    assert.ok(String(trailers?.get(REQUEST_ID_KEY)[0] ?? "").length > 0);
    await client.listModels({}, { requestId: "node-client-test-1", onTrailers: (md) => (trailers = md) });
    assert.equal(String(trailers?.get(REQUEST_ID_KEY)[0]), "node-client-test-1");
  });
});

describe("generation", () => {
  it("generates greedily and samples reproducibly with a seed", async () => {
    const resp = await client.generate(greedy("Once upon a time", 16));
    assert.equal(resp.sequences.length, 1);
    assert.equal(resp.sequences[0].tokenIds.length, 16);
    assert.equal(resp.sequences[0].finishReason, FinishReason.FINISH_REASON_LENGTH);
    assert.equal(resp.usage?.completionTokens, 16);
    assert.equal(resp.model, "tiny-llama");

    // A seed above 2^53 round-trips exactly (uint64 as bigint).
    const seed = 2n ** 63n + 12345n;
    const req = {
      ...greedy("The weather", 8),
      method: DecodingMethod.DECODING_METHOD_SAMPLE,
      sampling: { seed },
      numReturnSequences: 2,
    };
    const [a, b] = await Promise.all([client.generate(req), client.generate(req)]);
    assert.equal(a.seed, seed);
    assert.equal(a.sequences.length, 2);
    assert.deepEqual(a.sequences[0].tokenIds, b.sequences[0].tokenIds);
  });

  it("streams a generation to its end, folding into what Generate returns", async () => {
    const req = greedy("It was a dark and stormy night", 24);
    const want = await client.generate(req);
    const acc = new Accumulator();
    let messages = 0;
    for await (const msg of client.generateStream(req)) {
      if (messages === 0) assert.equal(msg.model, "tiny-llama");
      messages++;
      acc.add(msg);
    }
    assert.ok(messages >= 2, `${messages} messages`);
    const got = acc.response;
    assert.equal(got.usage?.completionTokens, 24);
    assert.equal(got.sequences[0].text, want.sequences[0].text);
    assert.deepEqual(got.sequences[0].tokenIds, want.sequences[0].tokenIds);
    assert.equal(got.sequences[0].finishReason, FinishReason.FINISH_REASON_LENGTH);

    const folded = await collect(client.generateStream(req));
    assert.equal(folded.sequences[0].text, want.sequences[0].text);
  });

  it("cancels a stream with an AbortSignal (CANCELLED), and the server stays healthy", async () => {
    const controller = new AbortController();
    let tokens = 0;
    const started = Date.now();
    const err = await rejectsWith(
      (async () => {
        for await (const msg of client.generateStream(greedy("A very long story", 2000), { signal: controller.signal })) {
          if (msg.tokenIds.length > 0 && ++tokens === 2) controller.abort();
        }
      })(),
      status.CANCELLED,
    );
    assert.equal(tokens, 2);
    assert.ok(Date.now() - started < 30_000);
    assert.equal(err.code, status.CANCELLED);
    const after = await client.generate(greedy("still alive?", 4));
    assert.equal(after.sequences[0].tokenIds.length, 4);
  });

  it("cancels a stream when the loop breaks early", async () => {
    let seen = 0;
    for await (const msg of client.generateStream(greedy("Break early", 2000))) {
      if (msg.tokenIds.length > 0 && ++seen === 3) break;
    }
    assert.equal(seen, 3);
    const resp = await client.generate(greedy("still alive?", 4));
    assert.equal(resp.sequences[0].tokenIds.length, 4);
  });

  it("decodes INVALID_ARGUMENT's field violation, unary and streamed", async () => {
    const bad = { ...greedy("x", 4), method: DecodingMethod.DECODING_METHOD_SAMPLE, sampling: { topP: 1.5 } };
    const err = await rejectsWith(client.generate(bad), status.INVALID_ARGUMENT);
    assert.match(err.field("sampling.top_p") ?? "", /top_p/);
    assert.ok(err.requestId, "request id");
    assert.match(err.message, /INVALID_ARGUMENT.*sampling\.top_p/);

    const streamed = await rejectsWith(collect(client.generateStream(bad)), status.INVALID_ARGUMENT);
    assert.ok(streamed.field("sampling.top_p"));
    assert.ok(streamed.requestId);

    const detok = await rejectsWith(
      client.detokenize({ model: "tiny-gpt2", ids: [1, 2, 2 ** 30] }),
      status.INVALID_ARGUMENT,
    );
    assert.ok(detok.field("ids[2]"), JSON.stringify(detok.fieldViolations));
  });

  it("maps unknown models and missing tasks to NOT_FOUND and FAILED_PRECONDITION", async () => {
    const nf = await rejectsWith(client.generate({ model: "no-such-model", prompt: "x" }), status.NOT_FOUND);
    assert.ok(nf.requestId);
    await rejectsWith(client.generate({ model: "tiny-bert", prompt: "x" }), status.FAILED_PRECONDITION);
  });
});

// Structured output (docs/structured-output.md): the random-weight demo models produce valid
// output only because of the mask, so a sequence that ended with EOS must satisfy its
// constraint; one cut short by maxNewTokens (LENGTH) may be a partial prefix.
describe("structured output", () => {
  const constrained = (
    prompt: string,
    maxNewTokens: number,
    constraint: DeepPartial<Constraint>,
  ): DeepPartial<GenerateRequest> => ({ model: "tiny-llama", prompt, constraint, stopping: { maxNewTokens } });

  it("keeps to a list of choices, greedy and sampled", async () => {
    const choices = ["yes", "no", "maybe"];
    const greedyReq = constrained("Is it raining?", 16, { choices: { values: choices } });
    const sampled = {
      ...greedyReq,
      method: DecodingMethod.DECODING_METHOD_SAMPLE,
      sampling: { temperature: 1.5, seed: 11 },
      numReturnSequences: 3,
    };
    for (const [req, n] of [[greedyReq, 1], [sampled, 3]] as const) {
      const resp = await client.generate(req);
      assert.equal(resp.sequences.length, n);
      for (const s of resp.sequences) {
        // The longest choice is a few tokens: after it the grammar allows only EOS.
        assert.equal(s.finishReason, FinishReason.FINISH_REASON_EOS_TOKEN, JSON.stringify(s.text));
        assert.ok(choices.includes(s.text), `${JSON.stringify(s.text)} is not one of ${choices}`);
      }
    }
  });

  it("samples JSON valid against a schema", async () => {
    const jsonSchema = '{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}';
    const resp = await client.generate({
      ...constrained("A status record:", 32, { jsonSchema }),
      method: DecodingMethod.DECODING_METHOD_SAMPLE,
      sampling: { temperature: 1.5, seed: 5 },
      numReturnSequences: 3,
    });
    assert.equal(resp.sequences.length, 3);
    const finished = resp.sequences.filter((s) => s.finishReason === FinishReason.FINISH_REASON_EOS_TOKEN);
    assert.ok(finished.length > 0, `none finished with EOS: ${JSON.stringify(resp.sequences.map((s) => s.text))}`);
    for (const s of finished) {
      const doc = JSON.parse(s.text) as unknown;
      assert.ok(doc !== null && typeof doc === "object" && !Array.isArray(doc), s.text);
      assert.deepEqual(Object.keys(doc), ["ok"], s.text);
      assert.equal(typeof (doc as { ok: unknown }).ok, "boolean", s.text);
    }
  });

  it("streams text that fully matches a regex", async () => {
    const regex = "(red|green|blue)-[0-9]{2,4}";
    const req = constrained("The code is", 24, { regex });
    let text = "";
    let finishReason = FinishReason.FINISH_REASON_UNSPECIFIED;
    for await (const msg of client.generateStream(req)) {
      text += msg.text;
      if (msg.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) finishReason = msg.finishReason;
    }
    // The regex is bounded (at most 10 characters), so greedy decoding reaches its end and EOS.
    assert.equal(finishReason, FinishReason.FINISH_REASON_EOS_TOKEN, JSON.stringify(text));
    assert.match(text, new RegExp(`^(?:${regex})$`));
    const unary = await client.generate(req);
    assert.equal(unary.sequences[0].text, text);
  });

  it("rejects a regex that does not compile, naming constraint.regex", async () => {
    const err = await rejectsWith(client.generate(constrained("x", 4, { regex: "((" })), status.INVALID_ARGUMENT);
    assert.ok(err.field("constraint.regex"), JSON.stringify(err.fieldViolations));
  });
});

describe("understanding", () => {
  it("fills masks, scores sentence pairs, answers questions", async (t) => {
    const fill = await ok(t, "FillMask", () =>
      client.fillMask({ model: "tiny-bert", text: "The capital of France is [MASK].", topK: 3 }),
    );
    if (fill) {
      assert.equal(fill.masks.length, 1);
      assert.equal(fill.masks[0].candidates.length, 3);
    }
    const nsp = await ok(t, "NextSentence", () =>
      client.nextSentence({ model: "tiny-bert", sentenceA: "I went to the store.", sentenceB: "I bought milk." }),
    );
    if (nsp) assert.ok(Math.abs(nsp.isNextProbability + nsp.notNextProbability - 1) < 1e-4);

    const context = "Paris is the capital of France. It has the Eiffel Tower.";
    const qa = await ok(t, "AnswerQuestion", () =>
      client.answerQuestion({ model: "tiny-bert-qa", question: "What is the capital of France?", context, topK: 2 }),
    );
    for (const a of qa?.answers ?? []) {
      assert.equal([...context].slice(a.start, a.end).join(""), a.text);
    }
  });
});

describe("encoder tasks", () => {
  const descending = (xs: number[]) => xs.every((x, i) => i === 0 || xs[i - 1] >= x);
  const unitNorm = (xs: number[]) => Math.abs(Math.hypot(...xs) - 1) < 1e-3;

  it("classifies texts and text pairs", async (t) => {
    const cls = await ok(t, "ClassifyText", () =>
      client.classifyText({
        model: "tiny-bert-classifier",
        inputs: [{ text: "What a lovely day." }, { text: "A man eats food.", textPair: "A man is eating." }],
      }),
    );
    assert.equal(cls.results.length, 2);
    for (const r of cls.results) {
      assert.deepEqual(r.labels.map((l) => l.label).sort(), ["negative", "neutral", "positive"]);
      assert.ok(Math.abs(r.labels.reduce((s, l) => s + l.score, 0) - 1) < 1e-4);
      assert.ok(descending(r.labels.map((l) => l.score)));
    }
    const top = await ok(t, "ClassifyText(topK, sigmoid)", () =>
      client.classifyText({
        model: "tiny-bert-classifier",
        inputs: [{ text: "fine" }],
        topK: 1,
        function: ClassifyFunction.CLASSIFY_FUNCTION_SIGMOID,
      }),
    );
    assert.equal(top.results[0].labels.length, 1);
  });

  it("tags tokens and groups them into entities", async (t) => {
    const text = "John Smith lives in Paris and works for the United Nations.";
    // "-" is no label: every token comes back, "O" included.
    const tokens = await ok(t, "ClassifyTokens", () =>
      client.classifyTokens({ model: "tiny-bert-ner", text, ignoreLabels: ["-"] }),
    );
    assert.ok(tokens.entities.length >= 10, `${tokens.entities.length} tokens`);
    for (const e of tokens.entities) {
      assert.ok(e.start < e.end && e.end <= [...text].length && e.index > 0, JSON.stringify(e));
    }
    const grouped = await ok(t, "ClassifyTokens(simple)", () =>
      client.classifyTokens({ model: "tiny-bert-ner", text, aggregation: Aggregation.AGGREGATION_SIMPLE }),
    );
    for (const e of grouped.entities) assert.ok(["PER", "LOC", "ORG"].includes(e.label), e.label);
  });

  it("embeds texts", async (t) => {
    const emb = await ok(t, "EmbedText", () =>
      client.embedText({ model: "tiny-bert-embed", texts: ["a sentence", "another, longer sentence"] }),
    );
    assert.equal(emb.dimensions, 64);
    assert.equal(emb.embeddings.length, 2);
    for (const e of emb.embeddings) {
      assert.equal(e.values.length, 64);
      assert.ok(unitNorm(e.values)); // the checkpoint normalizes
    }
    const cut = await ok(t, "EmbedText(dimensions)", () =>
      client.embedText({
        model: "tiny-bert-embed",
        texts: ["a sentence"],
        pooling: Pooling.POOLING_CLS,
        dimensions: 16,
        normalize: true,
      }),
    );
    assert.equal(cut.dimensions, 16);
    assert.equal(cut.embeddings[0].values.length, 16);
    assert.ok(unitNorm(cut.embeddings[0].values));
    const err = await rejectsWith(
      client.embedText({ model: "tiny-bert-embed", texts: ["ok", ""] }),
      status.INVALID_ARGUMENT,
    );
    assert.ok(err.field("texts[1]"), JSON.stringify(err.fieldViolations));
  });

  it("reranks documents", async (t) => {
    const documents = [
      "Marie Curie was born in Warsaw.",
      "The Eiffel Tower is in Paris.",
      "Bananas are rich in potassium.",
    ];
    const rr = await ok(t, "Rerank", () =>
      client.rerank({ model: "tiny-bert-reranker", query: "Where was Marie Curie born?", documents, topN: 2 }),
    );
    assert.equal(rr.results.length, 2);
    assert.ok(descending(rr.results.map((r) => r.score)));
    assert.notEqual(rr.results[0].index, rr.results[1].index);
    for (const r of rr.results) assert.ok(r.index < documents.length && r.score >= 0 && r.score <= 1);
    await rejectsWith(
      client.rerank({ model: "tiny-bert-ner", query: "q", documents: ["d"] }),
      status.FAILED_PRECONDITION,
    );
  });
});

describe("multimodal", () => {
  const image = { data: gradientPng(), mimeType: "image/png" };
  const chat = {
    model: "tiny-llava",
    messages: [{ role: "user", parts: [{ image }, { text: "What is in this picture?" }] }],
    stopping: { maxNewTokens: 8 },
  };

  it("chats about an image, unary and streamed", async (t) => {
    const reply = await ok(t, "MultimodalChat", () => client.multimodalChat(chat));
    if (reply) {
      assert.equal(reply.sequences.length, 1);
      assert.notEqual(reply.sequences[0].finishReason, FinishReason.FINISH_REASON_UNSPECIFIED);
    }
    const streamed = await ok(t, "MultimodalChatStream", () => collect(client.multimodalChatStream(chat)));
    if (streamed) {
      assert.equal(streamed.sequences.length, 1);
      assert.notEqual(streamed.sequences[0].finishReason, FinishReason.FINISH_REASON_UNSPECIFIED);
    }
  });

  it("classifies and embeds", async (t) => {
    const labels = ["a cat", "a dog", "a gradient"];
    const cls = await ok(t, "ClassifyImage", () => client.classifyImage({ model: "tiny-clip", image, labels }));
    if (cls) {
      assert.equal(cls.scores.length, labels.length);
      assert.ok(Math.abs(cls.scores.reduce((s, x) => s + x.score, 0) - 1) < 1e-3);
      for (let i = 1; i < cls.scores.length; i++) assert.ok(cls.scores[i - 1].score >= cls.scores[i].score);
    }
    const emb = await ok(t, "Embed", () =>
      client.embed({ model: "tiny-clip", texts: ["a photo of a cat"], images: [image], normalize: true }),
    );
    if (emb) {
      assert.equal(emb.embeddings.length, 2);
      for (const e of emb.embeddings) {
        assert.equal(e.values.length, emb.dimensions);
        assert.ok(Math.abs(Math.hypot(...e.values) - 1) < 1e-3);
      }
    }
  });
});
