/**
 * Errors of tokenwire calls: the gRPC status with its google.rpc details decoded from the
 * `grpc-status-details-bin` trailer, and the request id from the `x-request-id` trailer.
 */
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";

import { BadRequest, RetryInfo } from "./gen/google/rpc/error_details.js";
import { Status as RpcStatus } from "./gen/google/rpc/status.js";

/** The trailer every tokenwire response carries (the client's own id when it sends one). */
export const REQUEST_ID_KEY = "x-request-id";
const DETAILS_KEY = "grpc-status-details-bin";
const TYPE_PREFIX = "type.googleapis.com/";

/** One entry of a google.rpc.BadRequest: the request field at fault and why. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed tokenwire call. */
export class TokenwireError extends Error {
  /** gRPC status code (`status.INVALID_ARGUMENT`, …). */
  readonly code: Status;
  /** The server's readable message. */
  readonly details: string;
  /** The x-request-id trailer: quote it in bug reports. */
  readonly requestId: string | undefined;
  /** From a google.rpc.BadRequest detail (INVALID_ARGUMENT). */
  readonly fieldViolations: FieldViolation[];
  /** From a google.rpc.RetryInfo detail (RESOURCE_EXHAUSTED), in milliseconds. */
  readonly retryDelayMs: number | undefined;
  /** The call's trailers. */
  readonly metadata: Metadata;

  constructor(code: Status, details: string, metadata: Metadata = new Metadata()) {
    const codeName = Status[code] ?? String(code);
    const requestId = firstString(metadata, REQUEST_ID_KEY);
    const { violations, retryDelayMs } = decodeDetails(metadata);
    const suffix = violations.map((v) => ` [${v.field}: ${v.description}]`).join("");
    super(`${codeName}: ${details}${suffix}${requestId ? ` (request id ${requestId})` : ""}`);
    this.name = "TokenwireError";
    this.code = code;
    this.details = details;
    this.requestId = requestId;
    this.fieldViolations = violations;
    this.retryDelayMs = retryDelayMs;
    this.metadata = metadata;
  }

  /** The status code's name, e.g. "INVALID_ARGUMENT". */
  get codeName(): string {
    return Status[this.code] ?? String(this.code);
  }

  /** The description of the violation of `field` ("sampling.top_p", "ids[2]"), if any. */
  field(field: string): string | undefined {
    return this.fieldViolations.find((v) => v.field === field)?.description;
  }

  /** Converts a grpc-js ServiceError (or anything thrown by a call) to a TokenwireError. */
  static from(err: unknown): TokenwireError {
    if (err instanceof TokenwireError) return err;
    const e = err as Partial<ServiceError>;
    if (typeof e?.code === "number") {
      return new TokenwireError(e.code, e.details ?? e.message ?? "", e.metadata ?? new Metadata());
    }
    return new TokenwireError(Status.UNKNOWN, err instanceof Error ? err.message : String(err));
  }
}

function firstString(md: Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return v === undefined ? undefined : v.toString();
}

function decodeDetails(md: Metadata): { violations: FieldViolation[]; retryDelayMs?: number } {
  const violations: FieldViolation[] = [];
  let retryDelayMs: number | undefined;
  const raw = md.get(DETAILS_KEY)[0];
  if (raw === undefined) return { violations };
  const bytes = typeof raw === "string" ? Buffer.from(raw, "base64") : raw;
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(bytes);
  } catch {
    return { violations };
  }
  for (const any of status.details) {
    switch (any.typeUrl.slice(TYPE_PREFIX.length)) {
      case "google.rpc.BadRequest":
        for (const v of BadRequest.decode(any.value).fieldViolations) {
          violations.push({ field: v.field, description: v.description });
        }
        break;
      case "google.rpc.RetryInfo": {
        const d = RetryInfo.decode(any.value).retryDelay;
        if (d) retryDelayMs = Number(d.seconds) * 1000 + d.nanos / 1e6;
        break;
      }
    }
  }
  return { violations, retryDelayMs };
}
