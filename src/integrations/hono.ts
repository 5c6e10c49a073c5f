/**
 * `contextvars/hono`: request-scoped context for Hono 4, on any runtime
 * (on Cloudflare Workers with the `nodejs_compat` flag, for
 * `node:async_hooks`, `node:crypto` and `node:events`).
 */
import type { EventEmitter } from "node:events";
import type { Context, Env, MiddlewareHandler, Next } from "hono";
import type { Context as RequestContext } from "../core/context.ts";
import { bindUpgrade } from "./http-upgrade.ts";
import {
  assertMountedIn,
  type RequestContextOptions,
  refuseUncalled,
  requestId,
  requestIdFor,
  resolveOptions,
} from "./request-id.ts";
import {
  fileRequestContext,
  type NodeBindings,
  type NodeRequestLike,
  nodeRequestContext,
  nodeServerBindings,
  openRequestContext,
  requestContextOf,
  runInRequest,
  unfileRequestContext,
} from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/**
 * Options of the Hono middleware; `seed` and `generateId` receive
 * Hono's `c`. A throw from either reaches the framework's error handling
 * outside the request's Context (the framework catches it in a frame that
 * began before the request's run): to read request values there, also wrap
 * the server in `withContext` from `contextvars/http` (test/faults).
 */
export type HonoContextOptions<E extends Env = Env> = RequestContextOptions<Context<E>>;

/** A Node upgrade request, as @hono/node-ws passes it as `c.env.incoming`. */
interface UpgradeRequest extends NodeRequestLike {
  readonly upgrade?: boolean;
  readonly socket?: EventEmitter | null;
}

/**
 * Hono middleware that runs everything after it (later middleware, the
 * handler, `c.req.json()` and other body reads, `app.onError`, streaming
 * callbacks started by the handler) in the request's own fresh copy of the
 * root Context. Mount it first. `requestId` is set from the `x-request-id`
 * header when well-formed (else a new UUID) and echoed; then `seed` runs.
 *
 * Unlike Hono's `contextStorage()`, which stores `c` itself, this gives
 * every ContextVar a per-request value, readable without `c` anywhere below.
 * On `@hono/node-server` the header is read from, and echoed through, the
 * Node request and response (`c.env.incoming`/`outgoing`), whose listeners
 * then run in the request's Context too, and a request that `withContext`
 * from `contextvars/http` already handles keeps its one Context. On any
 * path, a sub-app's own `contextMiddleware` (`app.route()`) enters the
 * Context the app's opened, also after middleware gave `c` a new Request.
 *
 * @example
 * import { Hono } from "hono";
 * import { ContextVar } from "contextvars";
 * import { contextMiddleware, requestId } from "contextvars/hono";
 *
 * const user = new ContextVar<string>("user");
 * const app = new Hono();
 * app.use(contextMiddleware({ seed: (c) => user.set(c.req.header("x-user") ?? "anonymous") }));
 * app.post("/echo", async (c) => c.json({ id: requestId.get(), user: user.get(), body: await c.req.json() }));
 * @throws {TypeError} if an option has the wrong type, or when mounted uncalled (`app.use(contextMiddleware)`)
 *   or in another framework (imported from the wrong subpath), on Fastify (a hook or route; `register` rejects)
 *   or as a node:http request or upgrade listener: then at each request, naming what to use there.
 */
export function contextMiddleware<E extends Env = Env>(
  options?: HonoContextOptions<E>,
): MiddlewareHandler<E> {
  // biome-ignore lint/complexity/noArguments: a mount of the uncalled factory shows only in its arguments
  if (arguments.length > 1) return refuseUncalled("Hono", arguments) as never;
  const resolved = resolveOptions(options);
  const { header, echo, seed } = resolved;
  const upgradeOptions = { ...resolved, echo: false as const };

  // Any runtime: Hono's `c` and the fetch Request are the request's keys,
  // Hono's header API reads and echoes. Both: middleware may give `c` a new
  // Request (bodyLimit() does, for a body sent in chunks) before a sub-app's
  // own mount, and a handler may pass the Request on to another app's fetch.
  // Returns the Context one of them already has, if any.
  function knownRequestContext(c: Context<E>, raw: Request): RequestContext | undefined {
    const known = requestContextOf(c);
    if (known !== undefined) return known;
    const existing = requestContextOf(raw);
    // Another app's `c` for the same Request (mount with replaceRequest:
    // false): filed too, for its sub-apps behind a new Request of its own.
    if (existing !== undefined) fileRequestContext(c, existing);
    return existing;
  }

  return function contextMiddleware(c: Context<E>, next: Next): Promise<void> {
    // Express calls middleware with (req, res, next).
    if (typeof next !== "function") assertMountedIn("Hono", c, next);
    // @hono/node-server: Node's req/res are the key, as for the http
    // integration (bound, and shared with withContext around the listener),
    // and `c.req` is never touched (Hono builds it on first access). Node's
    // setHeader merges into node-server's writeHead and skips building a
    // fetch Headers object per request.
    const node = nodeServerBindings(c.env);
    if (node !== undefined) {
      const context = nodeRequestContext(node.incoming, node.outgoing, resolved, c);
      return runInRequest(context, proceed, seed, c, next);
    }
    const env = c.env as NodeBindings | null | undefined;
    const incoming = typeof env === "object" && env !== null ? env.incoming : undefined;
    // @hono/node-ws runs the app for each upgrade with the Node request and
    // no response, then completes the handshake outside it: the upgrade's
    // socket, whose listeners carry the WebSocket's events, is bound to the
    // request's Context here. The 101 is written by ws: no echo.
    if (incoming !== undefined && (incoming as UpgradeRequest).upgrade === true) {
      const socket = (incoming as UpgradeRequest).socket;
      if (typeof socket?.on === "function") {
        const context = nodeRequestContext(incoming, socket, upgradeOptions, c, bindUpgrade);
        return runInRequest(context, proceed, seed, c, next);
      }
    }
    const raw = c.req.raw;
    // Koa's ctx: its `req` is Node's request, which has no `raw`.
    if (raw === undefined) assertMountedIn("Hono", c, next);
    const known = knownRequestContext(c, raw);
    if (known !== undefined) return runInRequest(known, proceed, seed, c, next);
    const id = requestIdFor(resolved.trustHeader ? c.req.header(header) : undefined, resolved, c);
    if (echo) c.header(header, id);
    const context = openRequestContext(id);
    fileRequestContext(c, context);
    fileRequestContext(raw, context);
    // The Request is forgotten when the request is over: one passed to
    // app.fetch again (app.request(request) twice) is another request, and
    // must not enter this one's Context, with its values and its id.
    let handled: Promise<void>;
    try {
      handled = runInRequest(context, proceed, seed, c, next);
    } catch (error) {
      // seed threw: Hono hands the error to onError.
      unfileRequestContext(raw, context);
      throw error;
    }
    return handled.then(
      () => {
        unfileRequestContext(raw, context);
        if (!echo) return;
        // A handler that returns a Response of its own replaces the headers
        // prepared with c.header() before next(): echo the id onto it, unless
        // the handler gave the header a value of its own. Not onto a 101 (a
        // WebSocket upgrade) or a network error (status 0): Hono would copy the
        // response to add a header, and a Response cannot be made with those.
        const res = c.res;
        if (res.status >= 200 && res.status <= 599 && !res.headers.has(header))
          c.header(header, id);
      },
      (error: unknown) => {
        unfileRequestContext(raw, context);
        throw error;
      },
    );
  };
}

// A throw from seed is caught by Hono's compose, which hands it to app.onError.
function proceed<C>(seed: ((c: C) => void) | undefined, c: C, next: Next): Promise<void> {
  if (seed !== undefined) seed(c);
  return next();
}
