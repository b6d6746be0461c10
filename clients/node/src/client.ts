/**
 * A typed client for the tokenwire server on @grpc/grpc-js: promise-returning unary calls,
 * streaming generation as an async iterator, and errors as TokenwireError.
 *
 *   const c = new TokenwireClient("127.0.0.1:50051");
 *   for await (const msg of c.generateStream({ model: "tiny-llama", prompt: "Once" })) {
 *     process.stdout.write(msg.text);
 *   }
 *   c.close();
 */
import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
  type StatusObject,
} from "@grpc/grpc-js";

import {
  HealthCheckRequest,
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from "./gen/grpc/health/v1/health.js";
import {
  GenerateRequest,
  type GenerateResponse,
  type GenerateStreamResponse,
  GenerationClient,
} from "./gen/tokenwire/v1/generation.js";
import {
  DetokenizeRequest,
  type DetokenizeResponse,
  GetModelInfoRequest,
  ListModelsRequest,
  type ListModelsResponse,
  type ModelInfo,
  ModelsClient,
  TokenizeRequest,
  type TokenizeResponse,
} from "./gen/tokenwire/v1/models.js";
import {
  ClassifyImageRequest,
  type ClassifyImageResponse,
  EmbedRequest,
  type EmbedResponse,
  MultimodalChatRequest,
  MultimodalClient,
} from "./gen/tokenwire/v1/multimodal.js";
import {
  AnswerQuestionRequest,
  type AnswerQuestionResponse,
  ClassifyTextRequest,
  type ClassifyTextResponse,
  ClassifyTokensRequest,
  type ClassifyTokensResponse,
  EmbedTextRequest,
  type EmbedTextResponse,
  FillMaskRequest,
  type FillMaskResponse,
  NextSentenceRequest,
  type NextSentenceResponse,
  RerankRequest,
  type RerankResponse,
  UnderstandingClient,
} from "./gen/tokenwire/v1/understanding.js";
import { REQUEST_ID_KEY, TokenwireError } from "./errors.js";
import type { DeepPartial } from "./partial.js";

/** Where `tokenwire serve` listens by default. */
export const DEFAULT_TARGET = "127.0.0.1:50051";
/** The server's default max_receive_message_bytes (64 MiB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface ClientOptions {
  /** Default: plaintext (`credentials.createInsecure()`). */
  credentials?: ChannelCredentials;
  /** grpc-js channel options, merged over 64 MiB message limits. */
  channelOptions?: ChannelOptions;
}

/** Per-call options. */
export interface CallOpts {
  /** Deadline, in milliseconds from now. */
  timeoutMs?: number;
  /** Request metadata. */
  metadata?: Metadata | Record<string, string>;
  /** Sent as x-request-id; the server uses it in its logs and echoes it back. */
  requestId?: string;
  /** Aborting cancels the call (the server stops generating at its next step). */
  signal?: AbortSignal;
  /** Receives the call's trailers (x-request-id, timing) when it ends, OK or not. */
  onTrailers?: (trailers: Metadata) => void;
}

type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  options: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => ClientUnaryCall;

export class TokenwireClient {
  readonly generation: GenerationClient;
  readonly understanding: UnderstandingClient;
  readonly multimodal: MultimodalClient;
  readonly models: ModelsClient;
  readonly health: HealthClient;

  constructor(target: string = DEFAULT_TARGET, options: ClientOptions = {}) {
    const creds = options.credentials ?? grpcCredentials.createInsecure();
    const channelOptions: ChannelOptions = {
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
      ...options.channelOptions,
    };
    this.models = new ModelsClient(target, creds, channelOptions);
    // One channel for all services: the other stubs share the first one's.
    const shared = { ...channelOptions, channelOverride: this.models.getChannel() };
    this.generation = new GenerationClient(target, creds, shared);
    this.understanding = new UnderstandingClient(target, creds, shared);
    this.multimodal = new MultimodalClient(target, creds, shared);
    this.health = new HealthClient(target, creds, shared);
  }

  close(): void {
    this.models.close();
  }

  /** Whether health says `service` ("" = the whole server) is SERVING. */
  async isServing(service = "", timeoutMs = 2000): Promise<boolean> {
    try {
      const reply = await this.unary(this.health, this.health.check, HealthCheckRequest.fromPartial({ service }), {
        timeoutMs,
      });
      return reply.status === HealthCheckResponse_ServingStatus.SERVING;
    } catch {
      return false;
    }
  }

  /** Polls health until `service` is SERVING. The port opens before the models load; "" turns
   * SERVING once every model has settled. */
  async waitServing(service = "", timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.isServing(service))) {
      if (Date.now() > deadline) throw new Error(`health of "${service}" never turned SERVING`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // Models
  listModels(req: DeepPartial<ListModelsRequest> = {}, opts?: CallOpts): Promise<ListModelsResponse> {
    return this.unary(this.models, this.models.listModels, ListModelsRequest.fromPartial(req), opts);
  }
  getModelInfo(req: DeepPartial<GetModelInfoRequest>, opts?: CallOpts): Promise<ModelInfo> {
    return this.unary(this.models, this.models.getModelInfo, GetModelInfoRequest.fromPartial(req), opts);
  }
  tokenize(req: DeepPartial<TokenizeRequest>, opts?: CallOpts): Promise<TokenizeResponse> {
    return this.unary(this.models, this.models.tokenize, TokenizeRequest.fromPartial(req), opts);
  }
  detokenize(req: DeepPartial<DetokenizeRequest>, opts?: CallOpts): Promise<DetokenizeResponse> {
    return this.unary(this.models, this.models.detokenize, DetokenizeRequest.fromPartial(req), opts);
  }

  // Generation
  generate(req: DeepPartial<GenerateRequest>, opts?: CallOpts): Promise<GenerateResponse> {
    return this.unary(this.generation, this.generation.generate, GenerateRequest.fromPartial(req), opts);
  }
  /** GenerateStream as an async iterator of deltas. Breaking out of the loop, or aborting
   * `opts.signal`, cancels the call; a failure is thrown as a TokenwireError. */
  generateStream(req: DeepPartial<GenerateRequest>, opts: CallOpts = {}): AsyncGenerator<GenerateStreamResponse> {
    const [md, options] = callParams(opts);
    return iterate(this.generation.generateStream(GenerateRequest.fromPartial(req), md, options), opts);
  }

  // Understanding
  fillMask(req: DeepPartial<FillMaskRequest>, opts?: CallOpts): Promise<FillMaskResponse> {
    return this.unary(this.understanding, this.understanding.fillMask, FillMaskRequest.fromPartial(req), opts);
  }
  nextSentence(req: DeepPartial<NextSentenceRequest>, opts?: CallOpts): Promise<NextSentenceResponse> {
    return this.unary(this.understanding, this.understanding.nextSentence, NextSentenceRequest.fromPartial(req), opts);
  }
  answerQuestion(req: DeepPartial<AnswerQuestionRequest>, opts?: CallOpts): Promise<AnswerQuestionResponse> {
    return this.unary(
      this.understanding,
      this.understanding.answerQuestion,
      AnswerQuestionRequest.fromPartial(req),
      opts,
    );
  }
  classifyText(req: DeepPartial<ClassifyTextRequest>, opts?: CallOpts): Promise<ClassifyTextResponse> {
    return this.unary(this.understanding, this.understanding.classifyText, ClassifyTextRequest.fromPartial(req), opts);
  }
  classifyTokens(req: DeepPartial<ClassifyTokensRequest>, opts?: CallOpts): Promise<ClassifyTokensResponse> {
    return this.unary(
      this.understanding,
      this.understanding.classifyTokens,
      ClassifyTokensRequest.fromPartial(req),
      opts,
    );
  }
  embedText(req: DeepPartial<EmbedTextRequest>, opts?: CallOpts): Promise<EmbedTextResponse> {
    return this.unary(this.understanding, this.understanding.embedText, EmbedTextRequest.fromPartial(req), opts);
  }
  rerank(req: DeepPartial<RerankRequest>, opts?: CallOpts): Promise<RerankResponse> {
    return this.unary(this.understanding, this.understanding.rerank, RerankRequest.fromPartial(req), opts);
  }

  // Multimodal
  multimodalChat(req: DeepPartial<MultimodalChatRequest>, opts?: CallOpts): Promise<GenerateResponse> {
    return this.unary(this.multimodal, this.multimodal.multimodalChat, MultimodalChatRequest.fromPartial(req), opts);
  }
  multimodalChatStream(
    req: DeepPartial<MultimodalChatRequest>,
    opts: CallOpts = {},
  ): AsyncGenerator<GenerateStreamResponse> {
    const [md, options] = callParams(opts);
    return iterate(this.multimodal.multimodalChatStream(MultimodalChatRequest.fromPartial(req), md, options), opts);
  }
  classifyImage(req: DeepPartial<ClassifyImageRequest>, opts?: CallOpts): Promise<ClassifyImageResponse> {
    return this.unary(this.multimodal, this.multimodal.classifyImage, ClassifyImageRequest.fromPartial(req), opts);
  }
  embed(req: DeepPartial<EmbedRequest>, opts?: CallOpts): Promise<EmbedResponse> {
    return this.unary(this.multimodal, this.multimodal.embed, EmbedRequest.fromPartial(req), opts);
  }

  private unary<Req, Res>(stub: object, method: UnaryMethod<Req, Res>, req: Req, opts: CallOpts = {}): Promise<Res> {
    const [md, options] = callParams(opts);
    return new Promise<Res>((resolve, reject) => {
      const call = method.call(stub, req, md, options, (err, res) => {
        if (err) reject(TokenwireError.from(err));
        else resolve(res);
      });
      if (opts.onTrailers) call.on("status", (s: StatusObject) => opts.onTrailers!(s.metadata));
      if (opts.signal) {
        if (opts.signal.aborted) call.cancel();
        else opts.signal.addEventListener("abort", () => call.cancel(), { once: true });
      }
    });
  }
}

function callParams(opts: CallOpts): [Metadata, Partial<CallOptions>] {
  let md: Metadata;
  if (opts.metadata instanceof Metadata) {
    md = opts.metadata.clone();
  } else {
    md = new Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  }
  if (opts.requestId) md.set(REQUEST_ID_KEY, opts.requestId);
  const options: Partial<CallOptions> = {};
  if (opts.timeoutMs !== undefined) options.deadline = Date.now() + opts.timeoutMs;
  return [md, options];
}

async function* iterate<T>(call: ClientReadableStream<T>, opts: CallOpts): AsyncGenerator<T> {
  // The iterator below sees errors through the stream's end-of-stream tracking; this
  // listener only keeps a late 'error' (after the consumer left) from being unhandled.
  call.on("error", () => {});
  if (opts.onTrailers) call.on("status", (s: StatusObject) => opts.onTrailers!(s.metadata));
  const abort = () => call.cancel();
  opts.signal?.addEventListener("abort", abort, { once: true });
  if (opts.signal?.aborted) call.cancel();
  try {
    for await (const msg of call) yield msg as T;
  } catch (err) {
    throw TokenwireError.from(err);
  } finally {
    opts.signal?.removeEventListener("abort", abort);
    call.cancel(); // no-op once the call has ended; stops generation after an early break
  }
}
