/**
 * `contextvars/fastify`: request-scoped context for Fastify 5.
 */
import type { EventEmitter } from "node:events";
import type {
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
} from "fastify";
import fp from "fastify-plugin";
import type { Context } from "../core/context.ts";
import { bindUpgradedSocket } from "./http-upgrade.ts";
import { bindEarlierListeners, bindToRequest } from "./request-emitters.ts";
import {
  notMounted,
  type RequestContextOptions,
  type ResolvedOptions,
  requestId,
  resolveOptions,
} from "./request-id.ts";
import {
  fileRequestContext,
  type NodeRequestLike,
  type NodeResponseLike,
  nodeRequestContext,
  requestContextOf,
  runInRequest,
} from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/** Options of the Fastify plugin; `seed` and `generateId` receive the `FastifyRequest`. */
export type FastifyContextOptions = RequestContextOptions<FastifyRequest>;

function contextvars(
  fastify: FastifyInstance,
  options: FastifyContextOptions,
  done: (error?: Error) => void,
): void {
  // Called as the other integrations' factories are, contextPlugin(options):
  // without this, the first use of `fastify` fails with "addHook is not a function".
  if (typeof (fastify as { addHook?: unknown } | undefined)?.addHook !== "function") {
    // Given to another framework or to node:http, which has no register.
    const misplaced = notMounted("contextPlugin", fastify, options);
    if (misplaced !== undefined) throw misplaced;
    throw new TypeError(
      "contextPlugin is a Fastify plugin, not a factory: register it with its options, await app.register(contextPlugin, options), rather than calling it",
    );
  }
  let resolved: ResolvedOptions<FastifyRequest>;
  try {
    resolved = resolveOptions(options);
  } catch (error) {
    // Avvio does not catch a callback plugin's throw: hand it to `done`, which fails register().
    done(error as Error);
    return;
  }
  const seed = resolved.seed;

  // One Context per request, made and entered here. Fastify calls the next
  // hook from inside this `done()` (or, for an async hook, from a `then` on its
  // promise, registered inside it), so every later hook and the handler run in
  // this same Context: a value set after an `await` in an async onRequest or
  // preHandler hook lands in it and is seen downstream. A fresh Context per
  // hook would lose exactly those values.
  fastify.addHook(
    "onRequest",
    function enterRequestContext(
      request: FastifyRequest,
      reply: FastifyReply,
      next: HookHandlerDoneFunction,
    ): void {
      const context = nodeRequestContext(request.raw, reply.raw, resolved, request, bindRaw);
      runInRequest(context, proceed, seed, request, next);
    },
  );

  // Body parsing resumes from the payload's `end` event. The raw request's
  // listeners are bound, and Fastify 5.12 also carries the Context across
  // (an AsyncResource in content-type-parser.js), but a preParsing hook may
  // hand the parser another stream (a decompressor) whose events are not
  // bound: re-enter the request's Context before validation, preHandler hooks
  // and the handler, as @fastify/request-context does.
  fastify.addHook(
    "preValidation",
    function reenterRequestContext(
      request: FastifyRequest,
      _reply: FastifyReply,
      next: HookHandlerDoneFunction,
    ): void {
      const context = requestContextOf(request.raw);
      if (context === undefined) next();
      else runInRequest(context, next);
    },
  );
  done();
}

type RawRequest = NodeRequestLike & {
  readonly httpVersionMajor?: number;
  readonly upgrade?: boolean;
  readonly socket?: EventEmitter | null;
};
type RawResponse = NodeResponseLike & { readonly socket?: EventEmitter | null };

// Fastify adds its own `finish` and `error` listeners to the response (they
// run the onResponse hooks) before any onRequest hook, so before the
// request's Context exists. On HTTP/1, Node emits `finish` from the write
// the request's own code started, in the request's Context. On HTTP/2,
// node:http2's compatibility layer emits it from the stream's `close`, in
// the session's Context: onResponse hooks would see no request values, and
// a var one of them set would land there (the root Context, on Node), which
// every later request copies. There the two listeners are bound now; on
// HTTP/1 that would be work for nothing.
function bindRaw(req: RawRequest, res: RawResponse, context: Context): void {
  bindToRequest(res, context);
  // @fastify/websocket's injectWS routes a plain object, not an emitter, as
  // the request, and assigns its response the in-memory stream the
  // WebSocket will read: that stream is the socket to bind. The object is
  // not bound, so the Context is filed for it: a second registration and
  // the preValidation hook find it there, as they find a bound request's.
  if (typeof req.listenerCount !== "function") {
    fileRequestContext(req, context);
    if (res.socket != null) bindUpgradedSocket(res.socket, context);
    return;
  }
  bindToRequest(req, context);
  // An upgrade that reached the hooks: @fastify/websocket routes node:http's
  // "upgrade" through Fastify, and the WebSocket it makes reads its frames
  // from the socket's own listeners, which Node calls in the connection's
  // Context; bound, its message, pong and close events run in the
  // request's. Node sets `upgrade` only on a request it hands to an
  // "upgrade" listener, whose connection serves no other request: on every
  // other request this is one property read.
  if (req.upgrade === true && req.socket != null) bindUpgradedSocket(req.socket, context);
  // With `handlerTimeout`, Fastify has added the request's `close` listener
  // that aborts `request.signal` when the client goes away: its abort
  // listeners would run in the connection's Context. Without it there is none
  // to rebind, and the count costs next to nothing.
  if (req.listenerCount("close") !== 0) bindEarlierListeners(req, "close");
  if (req.httpVersionMajor === 2) {
    bindEarlierListeners(res, "finish");
    bindEarlierListeners(res, "error");
  }
}

// A throw from seed is handed to the hook's done(err) here, inside the
// request's run, so onError hooks and the error handler see the request's
// values (had it propagated, Fastify's hook runner would catch it after the
// run has ended, outside the request).
function proceed(
  seed: ((request: FastifyRequest) => void) | undefined,
  request: FastifyRequest,
  next: HookHandlerDoneFunction,
): void {
  if (seed !== undefined) {
    try {
      seed(request);
    } catch (error) {
      next(error as Error);
      return;
    }
  }
  next();
}

/**
 * Fastify 5 plugin, wrapped with `fastify-plugin` (an optional peer, 5 or 6:
 * install it beside Fastify), so it is not encapsulated: its hooks apply to
 * the whole app, not just one scope; named "contextvars" for `hasPlugin`
 * and other plugins' `dependencies`. It runs each request in its
 * own fresh copy of the root Context: every hook registered after it
 * (onRequest, preParsing, preValidation, preHandler, preSerialization,
 * onSend, onError, onResponse), the handler, error handlers and streamed
 * replies; not what Fastify arms before onRequest (`handlerTimeout`'s
 * reply, onTimeout hooks: see docs/integrations.md). An upgrade routed
 * through the hooks by @fastify/websocket has its socket bound too, so a
 * WebSocket's `message`, `pong` and `close` listeners run in the request's
 * Context (not with `perMessageDeflate` on: see docs/integrations.md).
 * Register it before other plugins and hooks. `requestId` is set from the
 * `x-request-id` header when well-formed (else a new UUID) and echoed; then
 * `seed` runs.
 *
 * Registered twice, or with `withContext` from `contextvars/http` in a
 * `serverFactory`, the request still has exactly one Context.
 *
 * @example
 * import Fastify from "fastify";
 * import { ContextVar } from "contextvars";
 * import { contextPlugin, requestId } from "contextvars/fastify";
 *
 * const user = new ContextVar<string>("user");
 * const app = Fastify();
 * await app.register(contextPlugin, { header: "x-correlation-id" });
 * app.addHook("preHandler", async (request) => {
 *   user.set(await lookUpUser(request.headers.authorization));
 * });
 * app.get("/me", async () => ({ id: requestId.get(), user: user.get() }));
 * declare function lookUpUser(authorization: string | undefined): Promise<string>;
 * @throws {TypeError} when registered with an option of the wrong type (the error fails `register`); when
 *   called rather than registered; when given to another framework or to node:http (then at each request,
 *   naming what to use there).
 */
export const contextPlugin: FastifyPluginCallback<FastifyContextOptions> = fp(contextvars, {
  fastify: "5.x",
  name: "contextvars",
});
