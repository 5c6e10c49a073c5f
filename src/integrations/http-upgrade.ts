/**
 * `withUpgradeContext`, exported by `contextvars/http`: request-scoped
 * context for a node:http server's `upgrade` listener, where WebSocket
 * servers take their connections.
 *
 * Node emits `upgrade` in the Context the server emits in, and a WebSocket
 * library reads its frames from the socket's `data` listener and ends the
 * connection from its `close`, `end` and `error` listeners, which Node calls
 * from socket callbacks in the connection's Context: without a binding a
 * WebSocket's `message` and `close` events see none of what the upgrade
 * set. The wrapper makes the request's Context as `withContext` does (one
 * `nodeRequestContext`, one `runInRequest`) and binds the socket in place of
 * a response, so every listener added to it later runs in that Context, and
 * so does everything the WebSocket emits from them.
 */
import type { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Context } from "../core/context.ts";
import { argumentError, assertFunction } from "../errors.ts";
import { bindToRequest } from "./request-emitters.ts";
import {
  type RequestContextOptions,
  type ResolvedOptions,
  refuseMisplacedWrapper,
  resolveOptions,
} from "./request-id.ts";
import { type NodeRequestLike, nodeRequestContext, runInRequest } from "./request-scope.ts";

/**
 * Options of `withUpgradeContext`: `withContext`'s, but `echo` may only be
 * `false` or absent. The 101 response is written by the WebSocket library,
 * not by the listener, so there is nothing to echo on; with `ws`, push the
 * header in its server's `headers` event.
 */
export interface UpgradeContextOptions<Req = NodeRequestLike>
  extends Omit<RequestContextOptions<Req>, "echo"> {
  /** Only `false`: an upgrade's id is never echoed by the wrapper. */
  echo?: false | undefined;
}

/**
 * Wraps a server's `upgrade` listener so that each upgrade request runs in
 * its own fresh copy of the root Context: the listener, everything it
 * awaits or schedules, and every listener later added to `req` or to the
 * `socket` (`data`, `end`, `close`, `error`) see the request's values,
 * so a `ws` WebSocket handed this socket emits `message`, `ping`, `pong`,
 * `error` and `close` in that Context (with `perMessageDeflate` on, they may
 * run in another connection's: make them with `bind()`, see
 * docs/integrations.md). `requestId` is set first (from the
 * `x-request-id` header when it is well-formed, else a new UUID), then
 * `seed` runs, then the listener. The id is not echoed (see
 * `UpgradeContextOptions`). Returns what the listener returns.
 *
 * Wrapping twice gives one Context per upgrade, as with `withContext`.
 *
 * @example
 * import { createServer } from "node:http";
 * import { ContextVar } from "contextvars";
 * import { requestId, withUpgradeContext } from "contextvars/http";
 * import { WebSocketServer } from "ws";
 *
 * const user = new ContextVar<string>("user");
 * const wss = new WebSocketServer({ noServer: true });
 * const server = createServer();
 * server.on(
 *   "upgrade",
 *   withUpgradeContext(
 *     (req, socket, head) => {
 *       wss.handleUpgrade(req, socket, head, (ws) => {
 *         ws.on("message", (data) => ws.send(`${user.get()} (${requestId.get()}): ${data}`));
 *       });
 *     },
 *     { seed: (req) => user.set(String(req.headers["x-user"] ?? "anonymous")) },
 *   ),
 * );
 * @throws {TypeError} if listener is not a function, an option has the wrong
 * type (as `withContext`'s), or `options.echo` is `true`; or when given to
 * the server itself (`server.on("upgrade", withUpgradeContext)`), or to a
 * request listener or a framework (as middleware, a hook or route; Fastify's
 * `register` rejects): then at each upgrade or request, naming what to use there.
 * The wrapper throws when called with no request first (given to ws's
 * `connection` event, which passes `(ws, req)`), saying to wrap the upgrade listener.
 */
export function withUpgradeContext(
  listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => unknown,
  options?: UpgradeContextOptions<IncomingMessage>,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
/** The same for other request and socket types (a listener typed with `net.Socket`). */
export function withUpgradeContext<Req extends NodeRequestLike, Socket extends EventEmitter>(
  listener: (req: Req, socket: Socket, head: Buffer) => unknown,
  options?: UpgradeContextOptions<Req>,
): (req: Req, socket: Socket, head: Buffer) => void;
export function withUpgradeContext<Req extends NodeRequestLike, Socket extends EventEmitter>(
  listener: (req: Req, socket: Socket, head: Buffer) => unknown,
  options?: UpgradeContextOptions<Req>,
): (req: Req, socket: Socket, head: Buffer) => void {
  // `server.on("upgrade", withUpgradeContext)`: Node then calls it with each
  // request and socket, and "Expected `listener` to be a function" would
  // name an argument the caller never passed.
  // biome-ignore lint/complexity/noArguments: Fastify's register passes its done third
  if (refuseMisplacedWrapper("withUpgradeContext", listener, options, arguments[2]))
    return undefined as never;
  assertFunction("listener", listener);
  const resolved = resolveUpgradeOptions(options);
  const seed = resolved.seed;
  // Returns what the listener returns, as withContext does, so that an
  // emitter made with `captureRejections` still sees a rejected promise.
  return function contextualUpgradeListener(req: Req, socket: Socket, head: Buffer): unknown {
    // ws's "connection" event calls with (ws, req): one typeof per upgrade
    // turns "reading 'x-request-id'" out of ws's emit into what to do.
    if (typeof (req as { headers?: unknown } | null)?.headers !== "object") throw notAnUpgrade();
    const context = nodeRequestContext(req, socket, resolved, req, bindUpgrade);
    return runInRequest(context, handleUpgrade, listener, seed, req, socket, head);
  } as (req: Req, socket: Socket, head: Buffer) => void;
}

function notAnUpgrade(): TypeError {
  return new TypeError(
    'withUpgradeContext(listener) was called with a first argument that is no request (ws\'s "connection" event passes (ws, req)): it wraps a server\'s "upgrade" listener, so make the WebSocketServer with { noServer: true } and call wss.handleUpgrade(req, socket, head, …) from server.on("upgrade", withUpgradeContext(listener, options))',
  );
}

type ParserHook = "on" | "addListener" | "prependListener";
const parserHooks: readonly ParserHook[] = ["on", "addListener", "prependListener"];

/**
 * Binds `req` and the socket as withContext binds `req` and `res`. Internal:
 * also used by the Hono middleware for @hono/node-ws's upgrades.
 */
export function bindUpgrade(req: NodeRequestLike, socket: EventEmitter, context: Context): void {
  bindToRequest(req, context);
  bindUpgradedSocket(socket, context);
}

/**
 * Binds an upgraded connection's socket to `context`, so that every listener
 * added to it from now on (a WebSocket library's `data`, `end`, `close`,
 * `error`) runs there. Internal: also used by the Fastify plugin, whose
 * upgrade requests reach its hooks through @fastify/websocket.
 *
 * node:http gives each connection's socket its own `on`, `addListener` and
 * `prependListener` (`socketListenerWrap`, lib/_http_server.js, the same on
 * Node 20 to 26) so that a `data` listener stops its parser reading; the
 * first call after the parser is gone, as it is once the request upgraded,
 * puts the prototype's methods back on the socket, over those bindToRequest
 * installs, and every later listener would run unbound. They are put back
 * here first, as that call would do.
 */
export function bindUpgradedSocket(socket: EventEmitter, context: Context): void {
  const own = socket as EventEmitter & { readonly parser?: unknown };
  if (own.parser == null) {
    const methods = own as unknown as Record<ParserHook, (...args: never) => unknown>;
    const prototype = Object.getPrototypeOf(own) as Record<ParserHook, (...args: never) => unknown>;
    for (const name of parserHooks) {
      if (Object.hasOwn(own, name) && methods[name].name === "socketListenerWrap") {
        methods[name] = prototype[name];
      }
    }
  }
  bindToRequest(socket, context);
}

function handleUpgrade<Req, Socket>(
  listener: (req: Req, socket: Socket, head: Buffer) => unknown,
  seed: ((req: Req) => void) | undefined,
  req: Req,
  socket: Socket,
  head: Buffer,
): unknown {
  if (seed !== undefined) seed(req);
  return listener(req, socket, head);
}

// `echo: true` is refused rather than ignored: it asks for a header on a
// response this wrapper never writes, and ignoring it would leave a client
// expecting the id without it and nothing saying why. `false` states what
// happens, and lets one options object serve both wrappers.
function resolveUpgradeOptions<Req>(
  options: UpgradeContextOptions<Req> | undefined,
): ResolvedOptions<Req> & { readonly echo: false } {
  // Read as withContext's options: a caller without types may pass any echo.
  const given = options as RequestContextOptions<Req> | undefined;
  const resolved = resolveOptions(given);
  if (given?.echo === true) {
    throw argumentError(
      "options.echo",
      'false or absent (the WebSocket library writes the 101 response; with ws, add the header in its "headers" event)',
      true,
    );
  }
  return { ...resolved, echo: false };
}
