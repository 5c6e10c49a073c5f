/**
 * `contextvars/koa`: request-scoped context for Koa 3 (and 2).
 */
import type { EventEmitter } from "node:events";
import { format, inspect } from "node:util";
import type { Context, Middleware, Next } from "koa";
import { carrier } from "../carrier/select.ts";
import type { Context as RequestContext } from "../core/context.ts";
import { isErrorOfAnyRealm } from "../errors.ts";
import { bindUpgrade } from "./http-upgrade.ts";
import { bindEarlierListeners } from "./request-emitters.ts";
import {
  assertMountedIn,
  type RequestContextOptions,
  refuseUncalled,
  requestId,
  resolveOptions,
} from "./request-id.ts";
import { type NodeRequestLike, nodeRequestContext, runInRequest } from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/**
 * Options of the Koa middleware; `seed` and `generateId` receive
 * Koa's `ctx`. A throw from either reaches the framework's error handling
 * outside the request's Context (the framework catches it in a frame that
 * began before the request's run): to read request values there, also wrap
 * the server in `withContext` from `contextvars/http` (test/faults).
 */
export type KoaContextOptions = RequestContextOptions<Context>;

/**
 * Koa middleware that runs everything downstream (later middleware, body
 * parsing, routes, and `ctx.req`/`ctx.res` listeners) in the request's own
 * fresh copy of the root Context. Mount it first. `requestId` is set from
 * the `x-request-id` header when well-formed (else a new UUID) and echoed,
 * also on error responses (through `err.headers`, which Koa's error handler
 * applies); then `seed` runs.
 *
 * Values set downstream, also after an `await`, are seen by every later
 * middleware. Koa writes the response after the middleware chain has
 * returned, outside any middleware; a Node stream left in `ctx.body` (a
 * `Readable.from(generator)`, a database cursor) is still read in the
 * request's Context, since its `pipe` is made to run there. For a web
 * `ReadableStream`, `Blob` or `Response` body, which Koa wraps in a stream of
 * its own, and for Koa's `"error"` listeners, also wrap the server,
 * `createServer(withContext(app.callback()))` from `contextvars/http`. The
 * request still gets one Context.
 *
 * Mounted on koa-websocket's `app.ws`, whose contexts have no response, it
 * gives each connection its Context without an echo and binds its socket,
 * so the WebSocket's `message`, `pong` and `close` listeners run there.
 *
 * @example
 * import Koa from "koa";
 * import { bodyParser } from "@koa/bodyparser";
 * import { contextMiddleware, requestId } from "contextvars/koa";
 *
 * const app = new Koa();
 * app.use(contextMiddleware());
 * app.use(bodyParser());
 * app.use(async (ctx) => {
 *   ctx.body = { id: requestId.get(), received: ctx.request.body };
 * });
 * @throws {TypeError} if an option has the wrong type, or when mounted uncalled (`app.use(contextMiddleware)`)
 *   or in another framework (imported from the wrong subpath), on Fastify (a hook or route; `register` rejects)
 *   or as a node:http request or upgrade listener: then at each request, naming what to use there.
 */
export function contextMiddleware(options?: KoaContextOptions): Middleware {
  // biome-ignore lint/complexity/noArguments: a mount of the uncalled factory shows only in its arguments
  if (arguments.length > 1) return refuseUncalled("Koa", arguments) as never;
  const resolved = resolveOptions(options);
  const seed = resolved.seed;
  const header = resolved.header;
  // Attached inside the request's Context, so it runs there and requestId reads its id.
  const echoOnError = resolved.echo
    ? (ctx: Context, error: unknown): never => {
        // Koa replaces anything but a native Error with a new Error of this
        // message, dropping its headers; making that Error here lets it carry them.
        const failed = isErrorOfAnyRealm(error) ? error : new Error(nonErrorMessage(error));
        // The id goes onto the error in this request's own ctx.onerror, just
        // before Koa reads err.headers there, not now: one Error object can be
        // thrown by several requests (a module-level constant), and another
        // failing in the same tick would overwrite it before Koa answers this one.
        const id = requestId.get();
        const onerror = ctx.onerror;
        const replaced = Reflect.set(
          ctx,
          "onerror",
          function onerrorWithId(this: Context, err: unknown) {
            if (isErrorOfAnyRealm(err)) addHeader(err, header, id);
            Reflect.apply(onerror, this, [err]);
          },
        );
        // An app whose ctx.onerror cannot be replaced gets the id on the error now.
        if (!replaced) addHeader(failed, header, id);
        throw failed;
      }
    : undefined;
  const upgradeOptions = { ...resolved, echo: false as const };
  return function contextMiddleware(ctx: Context, next: Next): Promise<unknown> {
    // Express calls middleware with (req, res, next), Hono with a `c` whose
    // `req` is its own HonoRequest (its `raw` the fetch Request): in neither
    // is `ctx.req` Node's request.
    if (typeof (ctx.req as Partial<Context["req"]> | undefined)?.on !== "function") {
      assertMountedIn("Koa", ctx, next);
    }
    // koa-websocket runs `app.ws`'s middleware after the handshake, with a
    // context made from the request alone (no response): see bindUpgraded.
    const res = ctx.res as Context["res"] | undefined;
    const context =
      res === undefined
        ? nodeRequestContext(ctx.req, ctx.req.socket, upgradeOptions, ctx, bindUpgraded)
        : nodeRequestContext(ctx.req, res, resolved, ctx);
    return runInRequest(context, proceed, seed, echoOnError, ctx, next);
  };
}

// koa-websocket's ws completed the handshake before this middleware ran, so
// the WebSocket already listens on the socket, in the connection's Context:
// those listeners are bound as well as later ones, so its message, pong and
// close events run in the request's Context. There is no response to echo on.
function bindUpgraded(req: NodeRequestLike, socket: EventEmitter, context: RequestContext): void {
  bindUpgrade(req, socket, context);
  for (const event of upgradedSocketEvents) bindEarlierListeners(socket, event);
}

// The socket events a WebSocket library listens to (ws's setSocket).
const upgradedSocketEvents = ["data", "end", "close", "error"] as const;

// Koa applies err.headers after clearing the response's headers.
function addHeader(error: Error & { headers?: unknown }, header: string, id: string): void {
  const headers = typeof error.headers === "object" ? error.headers : undefined;
  try {
    error.headers = { ...headers, [header]: id };
  } catch {
    // Headers that cannot be replaced (read-only, or a frozen error) are
    // kept as they are; Koa's response then lacks the id.
  }
}

// A throw from seed propagates to koa-compose, which turns it into a
// rejection; it goes through onError first, so its response carries the id.
function proceed(
  seed: ((ctx: Context) => void) | undefined,
  onError: ((ctx: Context, error: unknown) => never) | undefined,
  ctx: Context,
  next: Next,
): Promise<unknown> {
  if (seed !== undefined) {
    try {
      seed(ctx);
    } catch (error) {
      if (onError === undefined) throw error;
      onError(ctx, error);
    }
  }
  return next().then(
    () => keepStreamInRequest(ctx),
    onError && ((error: unknown) => onError(ctx, error)),
  );
}

// Runs in the request's Context, once the chain has settled. Koa pipes a
// stream body from a promise callback it registered before the chain ran, so
// outside the request: a body produced as it is read would see the Context
// the server listens in, and a var it set would land there (the root
// Context, which every later request copies, for a top-level server). `pipe`
// starts the stream's flow, so run in the request's Context it keeps the
// reads there; once the response waits on the socket, the bound `drain`
// listener resumes them there too. Koa's own test for a stream body.
function keepStreamInRequest(ctx: Context): void {
  const body: unknown = ctx.body;
  if (typeof body !== "object" || body === null) return;
  const pipe: unknown = (body as { pipe?: unknown }).pipe;
  if (typeof pipe !== "function") return;
  const context = carrier.getStore();
  if (context === undefined) return;
  // Reflect.set: a stream whose pipe cannot be replaced is piped as it is.
  Reflect.set(body, "pipe", function pipeInRequest(this: unknown, ...args: unknown[]): unknown {
    return runInRequest(context, Reflect.apply, pipe, this, args);
  });
}

// Koa's own message for a thrown value that is not an Error. Its `%j` throws
// on a BigInt or an object whose toJSON throws, where Koa's onerror then
// rejects unhandled; that TypeError would replace the thrown value and carry
// no id, so such a value is written with inspect instead.
function nonErrorMessage(error: unknown): string {
  try {
    return format("non-error thrown: %j", error);
  } catch {
    try {
      return `non-error thrown: ${inspect(error)}`;
    } catch {
      return "non-error thrown";
    }
  }
}
