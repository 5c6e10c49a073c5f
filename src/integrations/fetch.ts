/**
 * `contextvars/fetch`: request-scoped context for a web-standard fetch
 * handler, `(request: Request, ...rest) => Response`, as Bun.serve,
 * Deno.serve, Cloudflare Workers, Next.js route handlers and itty-router
 * call it, and the `requestId` var every integration sets.
 */

import { NativePromise } from "../core/native-promise.ts";
import { thenOf } from "../core/then-of.ts";
import { argumentError } from "../errors.ts";
import {
  type RequestContextOptions,
  requestId,
  requestIdFor,
  resolveOptions,
} from "./request-id.ts";
import {
  fileRequestContext,
  nodeRequestContext,
  nodeServerBindings,
  openRequestContext,
  requestContextOf,
  runInRequest,
  unfileRequestContext,
} from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/** Options of `withContext`; `seed` and `generateId` receive the handler's `Request`. */
export type FetchContextOptions<Req extends Request = Request> = RequestContextOptions<Req>;

/**
 * Wraps a fetch handler so that each call runs in its own fresh copy of the
 * root Context (never the caller's): the handler and everything it awaits or
 * schedules see the request's values, and nothing leaks between concurrent
 * requests. `requestId` is set first (from the `x-request-id` header when it
 * is well-formed, else a new UUID), then `seed` runs, then the handler, with
 * every argument after the Request passed on as given (Bun's `server`,
 * Deno's `info`, a Worker's `env` and `ctx`, Next.js's `{ params }`).
 *
 * The id is echoed on the returned Response when its status is 200–599 and
 * the handler did not set the header itself; a Response whose headers are
 * immutable (one from `fetch()`, `Response.redirect()`) is copied to add
 * it. Nothing is echoed on `undefined` (Bun after `server.upgrade()`) or on
 * a 101 or a status-0 Response. Served from node:http by
 * `@hono/node-server`, whose bindings (Node's `req` and `res`) follow the
 * Request, the id is echoed with `res.setHeader` instead, and listeners on
 * `req` and `res` run in the request's Context, as under contextvars/http.
 * A Request that already has a Context (Hono's `contextMiddleware` met it,
 * or a second `withContext`) runs in that one. The wrapper returns what the
 * handler returns: a Response as it is, a promise as a Promise.
 *
 * @example
 * import { ContextVar } from "contextvars";
 * import { requestId, withContext } from "contextvars/fetch";
 *
 * const user = new ContextVar<string>("user");
 * export default {
 *   fetch: withContext(
 *     async (request: Request) => {
 *       await audit("hello"); // reads requestId.get() and user.get() itself
 *       return new Response(`hello ${user.get()} (${requestId.get()})`);
 *     },
 *     { seed: (request) => user.set(request.headers.get("x-user") ?? "anonymous") },
 *   ),
 * };
 * declare function audit(message: string): Promise<void>;
 * @throws {TypeError} if handler is not a function (a Hono app given whole is told to pass `app.fetch`)
 *   or an option has the wrong type. The wrapper throws a TypeError when its first argument is not a
 *   Request (a node:http request: use `withContext` from `contextvars/http`), and throws or rejects with
 *   whatever the handler, `seed` or `generateId` throws or rejects with, unchanged.
 */
export function withContext<
  Req extends Request,
  Rest extends unknown[],
  Ret extends MaybeResponse | PromiseLike<MaybeResponse>,
>(
  handler: (request: Req, ...rest: Rest) => Ret,
  options?: FetchContextOptions<Req>,
): (request: Req, ...rest: Rest) => Returned<Ret> {
  if (typeof handler !== "function") throw notAHandler(handler);
  const resolved = resolveOptions(options);
  const { header, echo, trustHeader, seed } = resolved;

  // Runs in the request's Context: seed, then the handler, with its `this`.
  function handle(thisArg: unknown, request: Req, rest: Rest): Ret {
    if (seed !== undefined) seed(request);
    return handler.call(thisArg, request, ...rest);
  }

  return function contextualHandler(this: unknown, request: Req, ...rest: Rest): Returned<Ret> {
    if (!isRequest(request)) throw notARequest(request);
    // Served from node:http by @hono/node-server (getRequestListener), with
    // Node's req and res as its bindings: they are the request's key, as
    // for contextvars/http (a withContext around the listener, or Hono's
    // contextMiddleware inside, finds the one Context), their listeners are
    // bound to it, and the id is echoed with setHeader, which node-server
    // merges into the response; reading the returned Response's headers
    // would take node-server off its fast path.
    const node = nodeServerBindings(rest[0]);
    if (node !== undefined) {
      const context = nodeRequestContext(node.incoming, node.outgoing, resolved, request);
      // Filed for the Request too, for a Hono app the handler passes it to
      // (app.fetch(request), with no bindings); node-server made this
      // Request for this request alone, so it needs no unfiling.
      fileRequestContext(request, context);
      return runInRequest(context, handle, this, request, rest) as Returned<Ret>;
    }
    // One Context per request: Hono's contextMiddleware or another
    // withContext already opened it, and echoes its id itself.
    const known = requestContextOf(request);
    if (known !== undefined) {
      return runInRequest(known, handle, this, request, rest) as Returned<Ret>;
    }
    const id = requestIdFor(
      trustHeader ? request.headers.get(header) : undefined,
      resolved,
      request,
    );
    const context = openRequestContext(id);
    fileRequestContext(request, context);
    // The Request is forgotten when the handler is done: the same Request
    // given to the handler again is another request, with a Context of its own.
    let result: Ret;
    try {
      result = runInRequest(context, handle, this, request, rest);
    } catch (error) {
      unfileRequestContext(request, context);
      throw error;
    }
    // A Response comes back as it is, not in a Promise: @hono/node-server
    // answers a synchronous Response on a faster path.
    if (thenOf(result) === undefined) {
      unfileRequestContext(request, context);
      return (echo ? echoed(result as MaybeResponse, header, id) : result) as Returned<Ret>;
    }
    return NativePromise.resolve(result).then(
      (response) => {
        unfileRequestContext(request, context);
        return echo ? echoed(response as MaybeResponse, header, id) : response;
      },
      (error: unknown) => {
        unfileRequestContext(request, context);
        throw error;
      },
    ) as Returned<Ret>;
  };
}

/** What a fetch handler may return: a Response, or undefined (Bun, after `server.upgrade()`). */
export type MaybeResponse = Response | undefined;

/** The wrapper's result for a handler that returns `Ret`: a Response as it is, a PromiseLike as a Promise. */
export type Returned<Ret> = Ret extends PromiseLike<infer R> ? Promise<R> : Ret;

// What a fetch Request has and node:http's IncomingMessage has not (its
// `headers` is a plain object). Not `instanceof Request`: a Request made by
// another copy of undici, or a framework's own Request class, is one too.
function isRequest(value: unknown): value is Request {
  const headers = (value as { headers?: { get?: unknown } } | null | undefined)?.headers;
  return typeof headers?.get === "function" && typeof (value as Request).url === "string";
}

/**
 * `response` with the id under `header`, if it is a Response of status
 * 200–599 that has no such header yet; copied when its headers are
 * immutable. A 101 (a WebSocket upgrade) or a status-0 network error cannot
 * be made with `new Response`, and `undefined` has nowhere to put it.
 */
function echoed<Result extends MaybeResponse>(
  response: Result,
  header: string,
  id: string,
): Result {
  if (typeof response !== "object" || response === null) return response;
  const { status, headers } = response as Response;
  if (!(status >= 200 && status <= 599) || typeof headers?.has !== "function") return response;
  if (headers.has(header)) return response;
  try {
    headers.set(header, id);
    return response;
  } catch {
    // Immutable headers: a fetch() response, Response.redirect(), Response.error().
    const copy = new Response((response as Response).body, response as Response);
    copy.headers.set(header, id);
    return copy as Result;
  }
}

function notAHandler(value: unknown): TypeError {
  const error = argumentError("handler", "a function", value);
  if (isRequest(value)) {
    error.message +=
      "; withContext was called with a Request, as a fetch handler: it wraps your handler, so pass withContext(handler, options), not withContext itself";
    return error;
  }
  const app = value as { fetch?: unknown; headers?: unknown; on?: unknown } | null;
  if (typeof app !== "object" || app === null) return error;
  if (typeof app.fetch === "function") {
    error.message +=
      "; a Hono app is not a fetch handler, its fetch is: withContext(app.fetch), or use contextMiddleware from contextvars/hono";
  } else if (typeof app.on === "function" && typeof app.headers === "object") {
    error.message +=
      "; node:http called it as a request listener, with (req, res): wrap the listener in withContext(listener, options) from contextvars/http";
  }
  return error;
}

function notARequest(value: unknown): TypeError {
  const error = argumentError("request", "a fetch Request", value);
  const req = value as { headers?: unknown; on?: unknown } | null | undefined;
  if (typeof req?.on === "function" && typeof req.headers === "object") {
    error.message +=
      " (a node:http request): withContext from contextvars/fetch wraps a fetch handler; for a node:http listener use withContext from contextvars/http, or serve the fetch handler through getRequestListener from @hono/node-server";
  } else {
    error.message += ": the wrapper takes a fetch handler's arguments, (request, ...rest)";
  }
  return error;
}
