/**
 * `contextvars/http`: request-scoped context for a `node:http` or
 * `node:https` request listener and for its server's `upgrade` listener
 * (WebSockets), and the `requestId` var every integration sets.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { argumentError } from "../errors.ts";
import {
  type RequestContextOptions,
  refuseMisplacedWrapper,
  requestId,
  resolveOptions,
} from "./request-id.ts";
import {
  type NodeRequestLike,
  type NodeResponseLike,
  nodeRequestContext,
  runInRequest,
} from "./request-scope.ts";

export { type UpgradeContextOptions, withUpgradeContext } from "./http-upgrade.ts";
export type { NodeRequestLike, NodeResponseLike };
export { type RequestContextOptions, requestId };

/** Options of `withContext`; `seed` and `generateId` receive the listener's `req`. */
export type HttpContextOptions<Req = NodeRequestLike> = RequestContextOptions<Req>;

// The wrapped listener takes what the listener takes: Koa's callback also
// takes http2-compat requests, and wrapped must still fit http2.createServer.
// Read by assignability, not `infer`, which would see only the last call
// signature of an overloaded listener (Express's app ends with its router's).
// A listener of no parameters fits either; it gets node:http's, the usual server.
type Http2Compat = (req: Http2ServerRequest, res: Http2ServerResponse) => unknown;
type ListenerRequest<L> = L extends () => unknown
  ? IncomingMessage
  : L extends Http2Compat
    ? IncomingMessage | Http2ServerRequest
    : IncomingMessage;
type ListenerResponse<L> = L extends () => unknown
  ? ServerResponse
  : L extends Http2Compat
    ? ServerResponse | Http2ServerResponse
    : ServerResponse;

/**
 * Wraps a request listener so that each request runs in its own fresh copy
 * of the root Context: the listener, everything it awaits or schedules, and
 * every listener later added to `req` or `res` (`data`, `end`, `finish`,
 * `close`) see the request's values, and nothing leaks between concurrent
 * requests. `requestId` is set first (from the `x-request-id` header when it
 * is well-formed, else a new UUID) and echoed on the response; then `seed`
 * runs, then the listener.
 *
 * Wrapping a framework that has its own contextvars middleware (Express,
 * Koa, Fastify's `serverFactory`, Hono's node adapter) is safe: the request
 * still gets exactly one Context, which the middleware finds and enters.
 * Wrapping the framework is also what keeps Koa's response phase (after the
 * middleware chain has returned) in the request's Context.
 *
 * @example
 * import { createServer } from "node:http";
 * import { ContextVar } from "contextvars";
 * import { requestId, withContext } from "contextvars/http";
 *
 * const user = new ContextVar<string>("user");
 * const server = createServer(
 *   withContext(
 *     async (req, res) => {
 *       await audit("hello"); // reads requestId.get() and user.get() itself
 *       res.end(`hello ${user.get()} (${requestId.get()})`);
 *     },
 *     { seed: (req) => user.set(String(req.headers["x-user"] ?? "anonymous")) },
 *   ),
 * );
 * declare function audit(message: string): Promise<void>;
 * @throws {TypeError} if listener is not a function (a Koa, Hono or Fastify app given whole is told what to
 *   pass instead) or an option has the wrong type, or when given to
 *   createServer itself (`createServer(withContext)`), or to an upgrade listener or a framework (as middleware,
 *   a hook or route; Fastify's `register` rejects): then at each request, naming what to use there; or when
 *   given as Fastify's `serverFactory` itself.
 */
export function withContext<L extends (req: IncomingMessage, res: ServerResponse) => unknown>(
  listener: L,
  options?: HttpContextOptions<ListenerRequest<L>>,
): (req: ListenerRequest<L>, res: ListenerResponse<L>) => void;
/** The same for other request and response types (an https or http2-compat server's). */
export function withContext<Req extends NodeRequestLike, Res extends NodeResponseLike>(
  listener: (req: Req, res: Res) => unknown,
  options?: HttpContextOptions<Req>,
): (req: Req, res: Res) => void;
export function withContext<Req extends NodeRequestLike, Res extends NodeResponseLike>(
  listener: (req: Req, res: Res) => unknown,
  options?: HttpContextOptions<Req>,
): (req: Req, res: Res) => void {
  // `createServer(withContext)`, `app.use(withContext)`: the server or
  // framework then calls it with each request's arguments.
  // biome-ignore lint/complexity/noArguments: Fastify's register passes its done third
  if (refuseMisplacedWrapper("withContext", listener, options, arguments[2]))
    return undefined as never;
  // `Fastify({ serverFactory: withContext })`: Fastify calls it with its
  // handler and its own options, and needs a server back.
  if ((options as { serverFactory?: unknown } | undefined)?.serverFactory === withContext) {
    throw new TypeError(
      "withContext was called as Fastify's serverFactory, with (handler, options): it wraps a listener and makes no server, so pass serverFactory: (handler) => createServer(withContext(handler, options))",
    );
  }
  if (typeof listener !== "function") throw notAListener(listener);
  const resolved = resolveOptions(options);
  const seed = resolved.seed;
  // Returns what the listener returns: with `captureRejections`, Node's
  // server answers a rejected promise from a request listener with a 500.
  return function contextualListener(req: Req, res: Res): unknown {
    const context = nodeRequestContext(req, res, resolved, req);
    return runInRequest(context, handleRequest, listener, seed, req, res);
  } as (req: Req, res: Res) => void;
}

// A framework's app given whole, as `createServer(withContext(app))` is for
// Express, whose app is a listener: Koa's and Hono's apps are not, and
// Fastify makes its own server. The TypeError says what to pass instead.
function notAListener(value: unknown): TypeError {
  const error = argumentError("listener", "a function", value);
  const app = value as { callback?: unknown; fetch?: unknown; register?: unknown } | null;
  if (typeof app !== "object" || app === null) return error;
  if (typeof app.register === "function") {
    error.message +=
      "; a Fastify instance makes its own server: register contextPlugin from contextvars/fastify, or wrap its handler with serverFactory: (handler) => createServer(withContext(handler))";
  } else if (typeof app.callback === "function") {
    error.message += "; a Koa app is not a listener, its callback is: withContext(app.callback())";
  } else if (typeof app.fetch === "function") {
    error.message +=
      "; a Hono app is not a listener: use contextMiddleware from contextvars/hono, or withContext(getRequestListener(app.fetch)) with @hono/node-server";
  }
  return error;
}

function handleRequest<Req, Res>(
  listener: (req: Req, res: Res) => unknown,
  seed: ((req: Req) => void) | undefined,
  req: Req,
  res: Res,
): unknown {
  if (seed !== undefined) seed(req);
  return listener(req, res);
}
