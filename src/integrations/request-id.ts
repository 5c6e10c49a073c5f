import { randomUUID } from "node:crypto";
import { adviseWhenUnset, ContextVar } from "../core/context-var.ts";
import { type Synchronous, thenOf } from "../core/then-of.ts";
import { argumentError } from "../errors.ts";

/**
 * The id of the request being handled: set by every integration (http,
 * fetch, express, fastify, hono, koa) before the first middleware or hook
 * below it runs, from the incoming id header when that is well-formed, else
 * a fresh `crypto.randomUUID()`. It has no default: outside a request
 * `get()` throws.
 *
 * @example
 * import { requestId } from "contextvars/http";
 * function log(message: string): void {
 *   console.log(`[${requestId.get("-")}] ${message}`);
 * }
 * @throws {LookupError} from `requestId.get()` outside a request (pass a fallback to avoid it).
 */
export const requestId: ContextVar<string> = new ContextVar<string>("requestId");

// The requestId of every copy of the package loaded in this process, held
// weakly, under a key all copies share. A copy that a bundler evaluates
// again (Vite's ssr.noExternal, a bundle beside an import) has its own
// requestId, which no request's integration sets: read inside a request
// that another copy serves, it is unset, and "mount the integration" would
// send the reader looking for a mistake that is not there.
// A frozen globalThis (SES's lockdown and harden), or a runtime without
// WeakRef (Cloudflare Workers before enable_weak_ref's date), keeps the list
// to this copy: the import must not throw for the sake of a better message.
// The list is shared with copies of other versions, so an entry is read as
// anything until shown to be a WeakRef of a var with get().
const copiesKey = Symbol.for("contextvars.requestIds");
const copies = registerCopy(globalThis as { [copiesKey]?: unknown });

/** Adds this copy's requestId to the shared list, and returns the list (or an empty one of its own). */
function registerCopy(shared: { [copiesKey]?: unknown }): unknown[] {
  if (typeof WeakRef !== "function") return [];
  let list: unknown;
  try {
    shared[copiesKey] ??= [];
    list = shared[copiesKey];
  } catch {
    return []; // Not extensible, or a getter that throws.
  }
  if (!Array.isArray(list)) return [];
  // Dead refs go; what another version keeps there stays.
  for (let i = list.length - 1; i >= 0; i--) {
    const ref: unknown = list[i];
    if (ref instanceof WeakRef && ref.deref() === undefined) list.splice(i, 1);
  }
  list.push(new WeakRef(requestId));
  return list;
}

/** What entry of the shared list refers to, if it is a live copy's var. */
function varOf(entry: unknown): { get: (fallback: unknown) => unknown } | undefined {
  try {
    const ref = entry as { deref?: unknown } | null | undefined;
    if (typeof ref?.deref !== "function") return undefined;
    const other = ref.deref() as { get?: unknown } | null | undefined;
    return typeof other?.get === "function"
      ? (other as { get: (fallback: unknown) => unknown })
      : undefined;
  } catch {
    return undefined;
  }
}

const none: unique symbol = Symbol("none");

/** Whether another copy's requestId is set in that copy's current Context. */
function servedByAnotherCopy(): boolean {
  for (const entry of copies) {
    const other = varOf(entry);
    if (other === undefined || other === requestId) continue;
    try {
      if (other.get(none) !== none) return true;
    } catch {
      // A copy whose get() takes no fallback: nothing to tell from it.
    }
  }
  return false;
}

adviseWhenUnset(requestId as ContextVar<unknown>, () =>
  servedByAnotherCopy()
    ? "this code runs in a request served from another copy of contextvars, whose own requestId is set: the package is loaded twice in this process (a bundler that evaluates it again, such as Vite's ssr.noExternal or Next.js without serverExternalPackages, or two versions installed), and each copy knows only its own vars and its own current Context; load it once, left external to the bundle"
    : "each request's id is set by the integration (withContext, withUpgradeContext for a server's upgrade listener, contextMiddleware or contextPlugin), so this code runs outside a request's Context: mount the integration first, before other middleware and hooks, or pass a fallback to get() where no request may be active",
);

/**
 * Options every integration takes. `R` is what the framework calls the
 * request: `IncomingMessage` (http), `Request` (express), `FastifyRequest`,
 * Hono's `Context`, Koa's `Context`.
 */
export interface RequestContextOptions<R> {
  /**
   * Header the incoming id is read from and echoed on (case-insensitive).
   * Default `"x-request-id"`. Not a connection-specific header, which
   * HTTP/2 forbids (Connection, Keep-Alive, Proxy-Connection,
   * Transfer-Encoding, Upgrade, TE, HTTP2-Settings), nor Content-Length.
   */
  header?: string | undefined;
  /** Whether the id goes back on the response under `header` (not onto one already sent). Default `true`. */
  echo?: boolean | undefined;
  /**
   * Whether a well-formed incoming id is used. `false`: every request gets a
   * generated id, whatever it sends (a server facing clients that should not
   * pick the ids in your logs); it is still echoed. Default `true`.
   */
  trustHeader?: boolean | undefined;
  /**
   * Makes the id of a request that brings no usable one. Default
   * `crypto.randomUUID()`. Its result is held to the incoming rule (1–200
   * characters of letters, digits and `_ - . : = + /`): anything else is
   * replaced by a fresh UUID, as a malformed incoming id is. A throw from it
   * fails the request as a throwing middleware does.
   */
  generateId?: ((request: R) => string) | undefined;
  /**
   * Called once per request inside the request's fresh Context, before any
   * later middleware, hook or handler: set more vars from the request here
   * (a tenant from a header, a user from a verified token). Synchronous; an
   * error it throws fails the request as the framework fails a throwing
   * middleware, and so does returning a promise (a TypeError: do async work
   * in your own async middleware).
   */
  seed?: ((request: R) => Synchronous) | undefined;
}

/** Options with their defaults filled in and checked. Internal. */
export interface ResolvedOptions<R> {
  readonly header: string;
  readonly echo: boolean;
  readonly trustHeader: boolean;
  /** undefined: `crypto.randomUUID()`, called directly. */
  readonly generateId: ((request: R) => string) | undefined;
  readonly seed: ((request: R) => void) | undefined;
}

// Hono's requestId middleware accepts `[\w\-=]` up to 255 characters; we also
// let `.`, `:`, `+` and `/` through (dotted trace ids, base64) and cap at 200.
// Anything else (spaces, quotes, control characters, CR/LF, non-ASCII, a
// duplicated header joined with ", ") could forge or break a log line.
const WELL_FORMED_ID = /^[\w.:=+/-]{1,200}$/;

// RFC 9110 `token`: what a header name may be.
const HEADER_NAME = /^[!#$%&'*+.^`|~\w-]+$/;

// Names an id must not be read from or echoed on. HTTP/2 forbids the
// connection-specific headers (RFC 9113 §8.2.2; Node's http2 also refuses
// HTTP2-Settings): setHeader throws from inside the request listener, on
// every request. An id as Content-Length breaks the response on any protocol.
const FORBIDDEN_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "http2-settings",
  "content-length",
]);

/**
 * The id of a request: `incoming` if it is well-formed (1–200 characters of
 * letters, digits and `_ - . : = + /`; the caller passes undefined when the
 * header is not trusted), else `options.generateId(request)` if that is
 * well-formed, else a fresh `crypto.randomUUID()`. An id that is not
 * well-formed, whichever its source, is replaced and never passed through: a
 * generator may read what the client sent (Fastify's `request.id` can be a
 * header), so a malformed result must not fail the request. Internal.
 *
 * @example
 * const defaults = resolveOptions(undefined);
 * requestIdFor("req-42", defaults, req); // "req-42"
 * requestIdFor("a\nFAKE LOG LINE", defaults, req); // a new UUID
 * @throws whatever `generateId` throws.
 */
export function requestIdFor<R>(
  incoming: unknown,
  options: ResolvedOptions<R>,
  request: R,
): string {
  if (typeof incoming === "string" && WELL_FORMED_ID.test(incoming)) return incoming;
  const generate = options.generateId;
  if (generate === undefined) return randomUUID();
  const id = generate(request);
  return typeof id === "string" && WELL_FORMED_ID.test(id) ? id : randomUUID();
}

/**
 * Refuses a middleware factory mounted without being called, given the
 * arguments it was called with: throws mountedUncalled's TypeError, or, when
 * Fastify registered it as a plugin, hands it to `done` (failedRegister) and
 * returns. Internal.
 * @throws {TypeError} saying to call the factory, or what to use where it was mounted.
 */
export function refuseUncalled(ours: MiddlewareFramework, args: ArrayLike<unknown>): undefined {
  const error = mountedUncalled(ours, args[0], args[1]);
  if (failedRegister(error, args[0], args[2])) return undefined;
  throw error;
}

/**
 * The TypeError for a middleware factory mounted without being called
 * (`app.use(contextMiddleware)`): the framework then calls the factory with
 * its request, whose own `header` method or object the option check would
 * otherwise report as a bad `options.header`. A factory given to another
 * framework or to a node:http server is told what to use there instead, as
 * a made middleware would be (assertMountedIn). Internal.
 */
function mountedUncalled(ours: MiddlewareFramework, first: unknown, second: unknown): TypeError {
  const theirs = hostOf(first, second);
  if (theirs !== undefined && theirs !== ours) return misplaced(ours, theirs);
  return new TypeError(
    "contextMiddleware was called as middleware, with the framework's request arguments: it makes the middleware, so mount app.use(contextMiddleware(options)), not contextMiddleware itself",
  );
}

/** A framework whose subpath exports a contextMiddleware. Internal. */
export type MiddlewareFramework = "Express" | "Koa" | "Hono";

/** What called an integration's function, by its arguments. Internal. */
type Host = MiddlewareFramework | "Fastify" | "node:http" | "node:http upgrade";

// Which framework made a function's first two arguments, by what only it
// passes: Express a request that inherits its app (`req.app`) and a response
// (with setHeader) second; node:http, calling a request listener, the same
// two without the app, and calling an upgrade listener, its request and a
// socket (which writes, with no setHeader); Fastify a hook or route handler
// its FastifyRequest (whose `raw` is Node's request) and FastifyReply (which
// sends), and a plugin its instance (which adds hooks); Hono a `c` whose
// `req` is its HonoRequest (whose `raw` is the fetch Request); Koa a ctx
// whose `req` is Node's request (which has no `raw`).
function hostOf(first: unknown, second: unknown): Host | undefined {
  const request = first as
    | { app?: unknown; raw?: { on?: unknown }; addHook?: unknown; on?: unknown }
    | undefined
    | null;
  const response = second as { setHeader?: unknown; send?: unknown; write?: unknown } | undefined;
  if (typeof response?.setHeader === "function") {
    return typeof request?.app === "function" ? "Express" : "node:http";
  }
  if (
    typeof request?.addHook === "function" ||
    (typeof request?.raw?.on === "function" && typeof response?.send === "function")
  ) {
    return "Fastify";
  }
  if (typeof request?.on === "function" && typeof response?.write === "function") {
    return "node:http upgrade";
  }
  const req = (first as { req?: { on?: unknown; raw?: unknown } } | undefined)?.req;
  if (typeof req?.raw === "object") return "Hono";
  if (typeof req?.on === "function") return "Koa";
  return undefined;
}

// What to use in `host` instead, for a function that was given to it by mistake.
const useInstead: Readonly<Record<Host, string>> = {
  Express: "import contextMiddleware from contextvars/express instead",
  Koa: "import contextMiddleware from contextvars/koa instead",
  Hono: "import contextMiddleware from contextvars/hono instead",
  Fastify:
    "register contextPlugin from contextvars/fastify instead, await app.register(contextPlugin, options)",
  "node:http": "wrap the listener in withContext(listener, options) from contextvars/http",
  "node:http upgrade":
    'wrap the upgrade listener in withUpgradeContext(listener, options) from contextvars/http: server.on("upgrade", withUpgradeContext(listener, options))',
};

// How `host` called a function it was given by mistake.
function calledBy(host: Host): string {
  if (host === "node:http") return "node:http called it as a request listener, with (req, res)";
  if (host === "node:http upgrade") {
    return "node:http called it as an upgrade listener, with (req, socket, head)";
  }
  return `${host} called it`;
}

function misplaced(ours: MiddlewareFramework, theirs: Host): TypeError {
  // Express's own middleware also fits a plain node:http server, inside an app.
  const mount =
    ours === "Express" && theirs === "node:http"
      ? "mount it in an Express app with app.use(contextMiddleware(options)), or "
      : "";
  return new TypeError(
    `contextMiddleware from contextvars/${ours.toLowerCase()} is ${ours} middleware, but ${calledBy(theirs)}: ${mount}${useInstead[theirs]}`,
  );
}

/**
 * Throws when another framework called `ours`'s contextMiddleware (imported
 * from the wrong subpath, as every subpath names it contextMiddleware), or
 * Fastify called it as a hook or route handler, or node:http as a request or
 * upgrade listener, which would otherwise fail inside it with a TypeError
 * about a property of undefined or about `next`; anything else is left to
 * fail as it did. Called only once a middleware has found its arguments are
 * not its framework's. Internal.
 * @throws {TypeError} naming what to use there instead (the subpath to import from, contextPlugin, withContext or withUpgradeContext).
 */
export function assertMountedIn(ours: MiddlewareFramework, first: unknown, second: unknown): void {
  const theirs = hostOf(first, second);
  if (theirs === undefined || theirs === ours) return;
  throw misplaced(ours, theirs);
}

/**
 * The TypeError for withContext, withUpgradeContext or contextPlugin itself
 * given to a server or framework that is not its own
 * (`app.use(withContext)`, `createServer(contextPlugin)`), which then calls it
 * with its request arguments in place of what it takes, or undefined when
 * the arguments are not a known host's, or (contextPlugin) are Fastify's. It
 * names what that server or framework takes instead, where "Expected
 * `listener` to be a function" would name an argument the caller never
 * passed, and "register it with app.register" a method the host has not.
 * Called only once the arguments are found not to be what the function
 * takes. Internal.
 */
export function notMounted(
  wrapper: "withContext" | "withUpgradeContext" | "contextPlugin",
  first: unknown,
  second: unknown,
): TypeError | undefined {
  const host = hostOf(first, second);
  if (host === undefined || (host === "Fastify" && wrapper === "contextPlugin")) return undefined;
  const ownHost =
    wrapper === "withContext"
      ? "node:http"
      : wrapper === "withUpgradeContext"
        ? "node:http upgrade"
        : undefined;
  // Express's request and response are node:http's, so createServer(withContext(...)) is right there too.
  if (host === ownHost || (host === "Express" && wrapper === "withContext")) {
    return new TypeError(
      wrapper === "withContext"
        ? "withContext was called as a request listener, with (req, res): it wraps your listener, so pass createServer(withContext(listener, options)), not withContext itself"
        : 'withUpgradeContext was called as an upgrade listener, with (req, socket, head): it wraps your listener, so pass server.on("upgrade", withUpgradeContext(listener, options)), not withUpgradeContext itself',
    );
  }
  const what =
    wrapper === "withContext"
      ? "withContext wraps a request listener"
      : wrapper === "withUpgradeContext"
        ? "withUpgradeContext wraps a server's upgrade listener"
        : "contextPlugin is a Fastify plugin";
  return new TypeError(`${what}, but ${calledBy(host)}: ${useInstead[host]}`);
}

/**
 * For withContext and withUpgradeContext, called with what they were given:
 * when that is a host's request arguments rather than (listener, options),
 * throws notMounted's TypeError, or hands it to Fastify's `done` (registered
 * as a plugin) and returns true, for the wrapper to return nothing. Returns
 * false otherwise. Internal.
 * @throws {TypeError} naming what to use there instead.
 */
export function refuseMisplacedWrapper(
  wrapper: "withContext" | "withUpgradeContext",
  listener: unknown,
  options: unknown,
  done: unknown,
): boolean {
  // A listener and an options object: the way it is meant to be called.
  if (
    typeof listener === "function" &&
    typeof (options as { write?: unknown } | undefined)?.write !== "function"
  ) {
    return false;
  }
  // `withContext(fastifyApp)` by hand, with no `done` after it: the listener
  // check says what to pass instead of a Fastify instance.
  if (typeof done !== "function" && typeof (listener as Fastifyish)?.addHook === "function") {
    return false;
  }
  const error = notMounted(wrapper, listener, options);
  if (error === undefined) return false;
  if (failedRegister(error, listener, done)) return true;
  throw error;
}

// What tells a Fastify instance apart, as a first argument.
type Fastifyish = { addHook?: unknown } | null | undefined;

/**
 * Hands `error` to `done` when `first` is a Fastify instance, that is when
 * the function that found it was registered as a plugin
 * (`app.register(withContext)`), and says whether it did: avvio does not
 * catch a callback plugin's throw, which would end the process, but fails
 * register() with the error given to `done`. Internal.
 */
function failedRegister(error: Error, first: unknown, done: unknown): boolean {
  if (typeof (first as Fastifyish)?.addHook !== "function") {
    return false;
  }
  if (typeof done !== "function") return false;
  done(error);
  return true;
}

/**
 * Checks the options and fills in the defaults; the header name comes back
 * lower-cased, as Node keys `req.headers`. Internal.
 * @throws {TypeError} if an option has the wrong type, or the header is not a valid header
 * name, or is connection-specific (HTTP/2 forbids it) or Content-Length.
 */
export function resolveOptions<R>(
  options: RequestContextOptions<R> | undefined,
): ResolvedOptions<R> {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw argumentError("options", "an object", options);
  }
  const {
    header = "x-request-id",
    echo = true,
    trustHeader = true,
    generateId,
    seed,
  } = options ?? {};
  if (typeof header !== "string" || !HEADER_NAME.test(header)) {
    throw argumentError("options.header", "a header name", header);
  }
  if (FORBIDDEN_HEADERS.has(header.toLowerCase())) {
    throw argumentError(
      "options.header",
      "a header name that is neither connection-specific (HTTP/2 forbids those) nor Content-Length",
      header,
    );
  }
  if (typeof echo !== "boolean") throw argumentError("options.echo", "a boolean", echo);
  if (typeof trustHeader !== "boolean") {
    throw argumentError("options.trustHeader", "a boolean", trustHeader);
  }
  if (generateId !== undefined && typeof generateId !== "function") {
    throw argumentError("options.generateId", "a function", generateId);
  }
  if (seed !== undefined && typeof seed !== "function") {
    throw argumentError("options.seed", "a function", seed);
  }
  return {
    header: header.toLowerCase(),
    echo,
    trustHeader,
    generateId,
    seed: seed === undefined ? undefined : synchronous(seed),
  };
}

// seed runs synchronously: values it sets after an await may land after the
// handler read them, and a rejection would be unhandled, which ends a Node
// process. A seed that returns a promise fails its request with a TypeError
// instead (the promise is marked handled: the TypeError says what happened).
function synchronous<R>(seed: (request: R) => void): (request: R) => void {
  return (request) => {
    const returned: unknown = seed(request);
    const then = thenOf(returned);
    if (then !== undefined) {
      Reflect.apply(then, returned, [undefined, ignore]);
      throw argumentError(
        "options.seed",
        "synchronous (set values that need an await in your own async middleware)",
        returned,
      );
    }
  };
}

const ignore = (): void => {};
