/** The tokenwire TypeScript client: see TokenwireClient. */
export { status, Metadata, credentials } from "@grpc/grpc-js";
export { TokenwireClient, DEFAULT_TARGET, MAX_MESSAGE_BYTES, type CallOpts, type ClientOptions } from "./client.js";
export { TokenwireError, REQUEST_ID_KEY, type FieldViolation } from "./errors.js";
export { Accumulator, collect } from "./accumulate.js";
export type { DeepPartial } from "./partial.js";
export * from "./gen/tokenwire/v1/common.js";
export * from "./gen/tokenwire/v1/generation.js";
export * from "./gen/tokenwire/v1/models.js";
export * from "./gen/tokenwire/v1/understanding.js";
export * from "./gen/tokenwire/v1/multimodal.js";
