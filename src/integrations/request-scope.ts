/**
 * The one Context of each request, shared by every integration. Internal:
 * no subpath exports this file.
 *
 * A request's Context is found from the runtime's request object in one of
 * two places. Where `req` is bound by its own methods (node:http, Fastify,
 * Koa, Hono on @hono/node-server), the binding record on `req` holds it.
 * Where nothing may be added to the object, it is filed in a WeakMap: Express
 * has swapped the prototype of `req` by the time its middleware runs, after
 * which V8 adds any property to it on a slow path (about 5 µs on Node 20; see
 * request-emitters.ts), and Hono's fetch `Request` is not ours to extend.
 * The WeakMap is not used for all: its entry costs more than the rest of
 * making the Context (a Hono server on Node 20 spent about 3 µs less CPU per
 * request without it, bench/http, four alternating runs), mostly in the
 * garbage collector, which must trace each entry as an ephemeron.
 * Whichever integration meets the request first makes the Context; any other
 * (the same middleware mounted twice, `withContext` around a framework that
 * has its own middleware) finds it there and enters that same Context, so a
 * request never ends up with two.
 */
import type { EventEmitter } from "node:events";
import type { Carrier } from "../carrier/carrier.ts";
import { carrier } from "../carrier/select.ts";
import { type Context, contextWith, type Mapping, mapOf } from "../core/context.ts";
import type { ContextVar } from "../core/context-var.ts";
import { rootContext } from "../core/current.ts";
import { NOT_FOUND } from "../map/hamt.ts";
import { bindToRequest, boundContextOf } from "./request-emitters.ts";
import { type ResolvedOptions, requestId, requestIdFor } from "./request-id.ts";

const requestContexts = new WeakMap<object, Context>();

// Vars a request takes from the Context it arrives in rather than from the
// root: the OpenTelemetry context, which instrumentation-http makes active
// around the request listener (contextvars/otel registers its var here).
const inherited = new Set<ContextVar<unknown>>();

/** Makes requests opened from now on take `v`'s value from the arriving Context. Internal. */
export function inheritIntoRequests(v: ContextVar<unknown>): () => void {
  inherited.add(v);
  return () => inherited.delete(v);
}

/** The Context filed for a request object, if an integration has met it. */
export function requestContextOf(holder: object): Context | undefined {
  return boundContextOf(holder) ?? requestContexts.get(holder);
}

function withInherited(map: Mapping): Mapping {
  const arriving = mapOf(carrier.getStore() ?? rootContext);
  for (const v of inherited) {
    const value = arriving.get(v);
    if (value !== NOT_FOUND) map = map.set(v, value);
  }
  return map;
}

/**
 * Files `context` for `holder` where nothing may be added to the object
 * (Express's `req`, a fetch `Request`): `requestContextOf(holder)` finds it
 * there. Objects bound by `bindToRequest` need no filing: their record holds it.
 */
export function fileRequestContext(holder: object, context: Context): void {
  requestContexts.set(holder, context);
}

/**
 * Forgets `context` for `holder` once its request is over, so that the same
 * object met again (a fetch `Request` passed to `app.fetch` twice) is a new
 * request; a later filing of another Context is left as it is.
 */
export function unfileRequestContext(holder: object, context: Context): void {
  if (requestContexts.get(holder) === context) requestContexts.delete(holder);
}

/**
 * A fresh copy of the root Context (never the Context the server was created
 * or listening in) where `requestId` is `id`; vars registered with
 * `inheritIntoRequests` keep their arriving values. The caller makes it
 * findable: `bindToRequest` or `fileRequestContext`.
 */
export function openRequestContext(id: string): Context {
  // Built as ContextVar#run builds its copy: one map insert, no Token.
  const map = mapOf(rootContext).set(requestId as ContextVar<unknown>, id);
  return contextWith(inherited.size === 0 ? map : withInherited(map), undefined);
}

/**
 * What `@hono/node-server` passes beside a fetch Request (Hono's `c.env`,
 * the second argument of a fetch handler): Node's own req and res.
 */
export interface NodeBindings {
  readonly incoming?: NodeRequestLike;
  readonly outgoing?: NodeResponseLike;
}

/**
 * The bindings themselves when they are `@hono/node-server`'s with both a
 * Node request and a response (not @hono/node-ws's upgrade, which has no
 * response), else undefined: the request is then keyed on them and the id
 * echoed through the response, as under contextvars/http. Internal.
 */
export function nodeServerBindings(bindings: unknown): Required<NodeBindings> | undefined {
  if (typeof bindings !== "object" || bindings === null) return undefined;
  const { incoming, outgoing } = bindings as NodeBindings;
  return typeof incoming?.on === "function" && typeof outgoing?.setHeader === "function"
    ? (bindings as Required<NodeBindings>)
    : undefined;
}

/** What the Node-based integrations need of `req`. */
export interface NodeRequestLike extends EventEmitter {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly rawHeaders?: readonly string[];
}

/**
 * The value of header `name` (lower-case) if it was sent exactly once, else
 * undefined (a header sent twice is malformed as an id). Scans `rawHeaders`
 * rather than reading `req.headers`, which Node builds lazily from all of
 * them on first access: a request whose own code never reads it never pays.
 */
function singleHeader(req: NodeRequestLike, name: string): unknown {
  const raw = req.rawHeaders;
  // An IncomingMessage built in process rather than parsed from a socket
  // (serverless-http's, from a Lambda event) has `headers` assigned and
  // rawHeaders left empty; a parsed request with none has `headers` empty too.
  if (raw === undefined || raw.length === 0) return req.headers[name];
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i] as string;
    if (key.length === name.length && key.toLowerCase() === name) {
      if (found !== undefined) return undefined;
      found = raw[i + 1];
    }
  }
  return found;
}

/** What the Node-based integrations need of `res`. */
export interface NodeResponseLike extends EventEmitter {
  setHeader(name: string, value: string): unknown;
  readonly headersSent?: boolean;
}

function bindBoth(req: NodeRequestLike, res: EventEmitter, context: Context): void {
  bindToRequest(req, context);
  bindToRequest(res, context);
}

/**
 * The request's Context: the one already filed on `req`, or a fresh one
 * (its id from the header or from the options' generator, which receives
 * `request`, what the framework calls the request), with `req` and `res`
 * bound (by `bind`; default: own methods, see request-emitters.ts) so that
 * their listeners (`data`, `end`, `finish`, `close`, a pipe's `drain`) run
 * in it, and the id echoed. `bind` also makes the Context findable from
 * `req` (the default's record on `req` holds it; a `bind` that adds nothing
 * to `req` must `fileRequestContext` it).
 */
export function nodeRequestContext<R, Req extends NodeRequestLike, Res extends NodeResponseLike>(
  req: Req,
  res: Res,
  options: ResolvedOptions<R>,
  request: R,
  bind?: (req: Req, res: Res, context: Context) => void,
): Context;
/**
 * The same for an upgrade request (http-upgrade.ts): `res` is the request's
 * socket, bound like a response, with no headers to echo the id on, so the
 * options must not ask for an echo.
 */
export function nodeRequestContext<R, Req extends NodeRequestLike, Res extends EventEmitter>(
  req: Req,
  res: Res,
  options: ResolvedOptions<R> & { readonly echo: false },
  request: R,
  bind?: (req: Req, res: Res, context: Context) => void,
): Context;
export function nodeRequestContext<
  R,
  Req extends NodeRequestLike,
  Res extends NodeResponseLike | EventEmitter,
>(
  req: Req,
  res: Res,
  options: ResolvedOptions<R>,
  request: R,
  bind: (req: Req, res: Res, context: Context) => void = bindBoth,
): Context {
  const existing = requestContextOf(req);
  if (existing !== undefined) return existing;
  const incoming = options.trustHeader ? singleHeader(req, options.header) : undefined;
  const id = requestIdFor(incoming, options, request);
  const context = openRequestContext(id);
  bind(req, res, context);
  // A listener or middleware that runs after the response was sent (one before
  // it answered and went on) can no longer echo; setHeader would throw. Only
  // the first overload lets `echo` be true, and its `res` is a response.
  if (options.echo && (res as NodeResponseLike).headersSent !== true) {
    (res as NodeResponseLike).setHeader(options.header, id);
  }
  return context;
}

/**
 * Calls `fn(...args)` with `context` current, for fn and all it schedules:
 * the carrier's own `run` (one AsyncLocalStorage#run, which skips the switch
 * when the Context is current already), bound rather than wrapped so the
 * arguments are not collected twice.
 */
export const runInRequest: Carrier["run"] = carrier.run.bind(carrier);
