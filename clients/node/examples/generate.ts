/**
 * Example: stream a generation from a tokenwire server.
 *
 *   npm run example -- [--target HOST:PORT] [--model M] [--max-new-tokens N] [--temperature T] PROMPT
 */
import { parseArgs } from "node:util";

import { DecodingMethod, TokenwireClient, TokenwireError } from "../src/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string", default: "127.0.0.1:50051" },
    model: { type: "string", default: "tiny-llama" },
    "max-new-tokens": { type: "string", default: "32" },
    temperature: { type: "string", default: "0" },
    "top-p": { type: "string", default: "1" },
  },
});
const prompt = positionals.join(" ") || "Once upon a time";
const temperature = Number(values.temperature);

const client = new TokenwireClient(values.target);
const controller = new AbortController();
process.once("SIGINT", () => controller.abort()); // Ctrl-C cancels the generation server-side

try {
  let usage;
  for await (const msg of client.generateStream(
    {
      model: values.model,
      prompt,
      method: temperature > 0 ? DecodingMethod.DECODING_METHOD_SAMPLE : DecodingMethod.DECODING_METHOD_GREEDY,
      sampling: temperature > 0 ? { temperature, topP: Number(values["top-p"]) } : undefined,
      stopping: { maxNewTokens: Number(values["max-new-tokens"]) },
    },
    { signal: controller.signal, timeoutMs: 60_000 },
  )) {
    process.stdout.write(msg.text);
    usage = msg.usage ?? usage;
  }
  process.stdout.write("\n");
  console.error(`[${usage?.promptTokens} prompt + ${usage?.completionTokens} generated tokens]`);
} catch (err) {
  if (!(err instanceof TokenwireError)) throw err;
  console.error(`error: ${err.codeName}: ${err.details}`);
  for (const v of err.fieldViolations) console.error(`  field ${v.field}: ${v.description}`);
  if (err.requestId) console.error(`  request id: ${err.requestId}`);
  process.exitCode = 1;
} finally {
  client.close();
}
