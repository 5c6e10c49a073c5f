import { randomUUID } from "node:crypto";
import { ContextVar } from "../core/context-var.ts";
import { argumentError } from "../errors.ts";

/**
 * The id of the request being handled: set by every integration (http,
 * express, fastify, hono, koa) before the first middleware or hook below it
 * runs, from the incoming id header when that is well-formed, else a fresh
 * `crypto.randomUUID()`. It has no default: outside a request `get()` throws.
 *
 * @example
 * import { requestId } from "contextvars/http";
 * function log(message: string): void {
 *   console.log(`[${requestId.get("-")}] ${message}`);
 * }
 * @throws {LookupError} from `requestId.get()` outside a request (pass a fallback to avoid it).
 */
export const requestId: ContextVar<string> = new ContextVar<string>("requestId");

/**
 * Options every integration takes. `R` is what the framework calls the
 * request: `IncomingMessage` (http), `Request` (express), `FastifyRequest`,
 * Hono's `Context`, Koa's `Context`.
 */
export interface RequestContextOptions<R> {
  /** Header the incoming id is read from and echoed on (case-insensitive). Default `"x-request-id"`. */
  header?: string;
  /** Whether the id goes back on the response under `header`. Default `true`. */
  echo?: boolean;
  /**
   * Called once per request inside the request's fresh Context, before any
   * later middleware, hook or handler: set more vars from the request here
   * (a tenant from a header, a user from a verified token). Synchronous; an
   * error it throws fails the request as the framework fails a throwing middleware.
   */
  seed?: (request: R) => void;
}

/** Options with their defaults filled in and checked. Internal. */
export interface ResolvedOptions<R> {
  readonly header: string;
  readonly echo: boolean;
  readonly seed: ((request: R) => void) | undefined;
}

// Hono's requestId middleware accepts `[\w\-=]` up to 255 characters; we also
// let `.`, `:`, `+` and `/` through (dotted trace ids, base64) and cap at 200.
// Anything else (spaces, quotes, control characters, CR/LF, non-ASCII, a
// duplicated header joined with ", ") could forge or break a log line.
const WELL_FORMED_ID = /^[\w.:=+/-]{1,200}$/;

// RFC 9110 `token`: what a header name may be.
const HEADER_NAME = /^[!#$%&'*+.^`|~\w-]+$/;

/**
 * The incoming id if it is well-formed (1–200 characters of letters, digits
 * and `_ - . : = + /`), else a fresh `crypto.randomUUID()`: a malformed id
 * is replaced, never passed through.
 *
 * @example
 * acceptRequestId("req-42"); // "req-42"
 * acceptRequestId("a\nFAKE LOG LINE"); // a new UUID
 */
export function acceptRequestId(incoming: unknown): string {
  return typeof incoming === "string" && WELL_FORMED_ID.test(incoming) ? incoming : randomUUID();
}

/**
 * Checks the options and fills in the defaults; the header name comes back
 * lower-cased, as Node keys `req.headers`. Internal.
 * @throws {TypeError} if an option has the wrong type or the header is not a valid header name.
 */
export function resolveOptions<R>(
  options: RequestContextOptions<R> | undefined,
): ResolvedOptions<R> {
  if (options === undefined) return { header: "x-request-id", echo: true, seed: undefined };
  if (typeof options !== "object" || options === null) {
    throw argumentError("options", "an object", options);
  }
  const { header = "x-request-id", echo = true, seed } = options;
  if (typeof header !== "string" || !HEADER_NAME.test(header)) {
    throw argumentError("options.header", "a header name", header);
  }
  if (typeof echo !== "boolean") throw argumentError("options.echo", "a boolean", echo);
  if (seed !== undefined && typeof seed !== "function") {
    throw argumentError("options.seed", "a function", seed);
  }
  return { header: header.toLowerCase(), echo, seed };
}
