/**
 * `contextvars/socket.io`: one Context per socket.io connection, from the
 * engine.io request that opened it, whatever the transport.
 *
 * socket.io runs `io.use` middleware, `connection` and every event from the
 * transport that delivered the packet: a polling request, or the
 * WebSocket's upgraded socket. Left alone, that is one Context shared by
 * every connection (the root Context over websocket), and what one
 * client's middleware sets is seen by every other client. engine.io calls
 * its own `handleRequest` and `handleUpgrade` through `this`, from the
 * listeners it puts on the server (for `new Server(httpServer)`,
 * `new Server(port)` and `io.attach(server)` alike), so wrapping them on the
 * engine gives each engine.io request its Context without touching the
 * server's listeners, or the app's requests beside it.
 */
import type { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { bindEmitter } from "../core/bind-emitter.ts";
import { copyContext, currentContext } from "../core/current.ts";
import { argumentError } from "../errors.ts";
import { withContext } from "./http.ts";
import { withUpgradeContext } from "./http-upgrade.ts";
import { type RequestContextOptions, requestId } from "./request-id.ts";
import { requestContextOf } from "./request-scope.ts";

export { type RequestContextOptions, requestId };

/**
 * Options of `withSocketContext`: `withContext`'s, and `seed` and
 * `generateId` receive engine.io's request (node:http's `IncomingMessage`).
 * `echo` applies to polling responses; an upgrade's id is never echoed.
 */
export type SocketContextOptions = RequestContextOptions<IncomingMessage>;

/**
 * What `withSocketContext` needs of socket.io's `Server`, written out so the
 * declarations do not need socket.io's types.
 */
export interface SocketIoServerLike {
  /** engine.io's server, there once socket.io is attached to an HTTP server. */
  readonly engine?: object | undefined;
  /** The main namespace, `/`. */
  readonly sockets: EventEmitter;
  of(name: string): unknown;
}

interface EngineLike extends EventEmitter {
  handleRequest(req: IncomingMessage, res: ServerResponse): unknown;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): unknown;
}

const withContexts = new WeakSet<object>();

/**
 * Gives each socket.io connection its own Context. Call it once, right
 * after `new Server(httpServer)`, `new Server(port)` or
 * `io.attach(httpServer)`, before clients connect (connections already open
 * are left as they are). It covers every namespace, made before the call or
 * after, and each engine a later `io.attach` or `io.listen` makes (a second
 * HTTP server, or listening again after `io.close()`). For node:http and
 * node:https servers; not for uWebSockets.js (`io.attachApp`), whose engine
 * takes no node:http requests. From then on:
 *
 * - each engine.io HTTP request runs as in `withContext` and each upgrade as
 *   in `withUpgradeContext` (contextvars/http), with these options:
 *   `requestId` from a well-formed `x-request-id`, else a new UUID, then
 *   `seed(req)`;
 * - every packet of a connection, whichever transport or request brings
 *   it, runs in a fresh copy of the Context of the request that opened the
 *   connection (the engine.io handshake): `io.use` middleware and the
 *   namespace's `connection` listeners share one copy, so what middleware
 *   sets is seen in `connection`, also for a session recovered by
 *   `connectionStateRecovery` (which skips middleware: restore from
 *   `socket.data` in `connection`);
 * - each socket is bound with `bindEmitter` before the app's `connection`
 *   listeners run: every listener added to it runs in a fresh copy of the
 *   Context `connection` ran in, with what middleware and `connection` set.
 *
 * Acknowledgement callbacks, `socket.use` packet middleware and
 * `socket.onAny` listeners are no socket listeners: bind them with `bind()`
 * where they are made, or they see only the handshake's Context. The app's
 * own requests on the same server are left to the app (`withContext`).
 *
 * @example
 * import { createServer } from "node:http";
 * import { ContextVar } from "contextvars";
 * import { requestId, withSocketContext } from "contextvars/socket.io";
 * import { Server } from "socket.io";
 *
 * const user = new ContextVar<string>("user");
 * const io = new Server(createServer());
 * withSocketContext(io);
 * io.use((socket, next) => {
 *   user.set(String(socket.handshake.auth.user));
 *   next();
 * });
 * io.on("connection", (socket) => {
 *   socket.on("chat", (text: string) => console.log(requestId.get(), user.get(), text));
 * });
 * @throws {TypeError} if io is not a socket.io Server, has no engine yet (made with
 *   `new Server()` and not attached), or was given to withSocketContext before; or if an option
 *   has the wrong type (as `withContext`'s).
 */
export function withSocketContext(io: SocketIoServerLike, options?: SocketContextOptions): void {
  wrapEngine(engineOf(io), options);
  // socket.io makes a new engine.io server at each io.attach (io.listen
  // calls it through `this`): a second HTTP server, or the same io listening
  // again after io.close(). Left unwrapped, its connections would share one
  // Context again, silently, and what middleware sets would reach the root.
  const attach = (io as { attach?: unknown }).attach;
  if (typeof attach === "function") {
    (io as { attach?: unknown }).attach = function (this: unknown, ...args: unknown[]): unknown {
      const result = Reflect.apply(attach, this, args);
      const engine = io.engine as Partial<EngineLike> | undefined;
      if (isEngine(engine) && !withContexts.has(engine)) wrapEngine(engine, options);
      return result;
    };
  }
  bindSocketsOf(io.sockets);
  // socket.io emits "new_namespace" on the main namespace for each other
  // one, children of a dynamic (RegExp or function) namespace included.
  io.sockets.on("new_namespace", bindSocketsOf);
  // Namespaces made before this call: socket.io keeps them in `_nsps`.
  const made = (io as { _nsps?: unknown })._nsps;
  if (made instanceof Map) {
    for (const namespace of made.values()) {
      if (namespace !== io.sockets) bindSocketsOf(namespace as EventEmitter);
    }
  }
}

/**
 * Wraps an engine.io server's `handleRequest` and `handleUpgrade` with
 * `options`, and binds each of its connections: io's engine, then each one
 * io.attach makes.
 */
function wrapEngine(engine: EngineLike, options: SocketContextOptions | undefined): void {
  // Both wrappers made first: an option of the wrong type throws before anything is changed.
  const handleRequest = engine.handleRequest;
  const handleUpgrade = engine.handleUpgrade;
  const onRequest = withContext(
    (req: IncomingMessage, res: ServerResponse) => Reflect.apply(handleRequest, engine, [req, res]),
    options,
  );
  const onUpgrade = withUpgradeContext(
    (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      Reflect.apply(handleUpgrade, engine, [req, socket, head]),
    { ...options, echo: false },
  );
  withContexts.add(engine);
  engine.handleRequest = onRequest;
  engine.handleUpgrade = onUpgrade;
  // engine.io emits "connection" from the handshake, after the request's
  // middleware and `allowRequest` may have called back outside its Context:
  // the Context is taken from the request itself. Prepended, so it binds
  // the connection before socket.io's own listener adds its `data` and
  // `close` listeners to it, through which every packet and the
  // disconnection reach socket.io.
  engine.prependListener("connection", (conn: { readonly request?: object }) => {
    const request = conn.request;
    const context =
      (request === undefined ? undefined : requestContextOf(request)) ?? copyContext();
    bindEmitter(conn as unknown as EventEmitter, context);
  });
}

function isEngine(engine: Partial<EngineLike> | undefined | null): engine is EngineLike {
  return (
    typeof engine === "object" &&
    engine !== null &&
    typeof engine.handleRequest === "function" &&
    typeof engine.handleUpgrade === "function" &&
    typeof engine.prependListener === "function"
  );
}

function bindSocketsOf(namespace: EventEmitter): void {
  namespace.prependListener("connection", bindSocket);
}

// The Context `connection` runs in, itself rather than a copy: each event
// copies it when it runs, so what the app's `connection` listeners set
// after this one (a user restored from socket.data) is seen too.
function bindSocket(socket: EventEmitter): void {
  bindEmitter(socket, currentContext());
}

function engineOf(io: SocketIoServerLike): EngineLike {
  const server = io as Partial<SocketIoServerLike> | null;
  if (
    typeof server !== "object" ||
    server === null ||
    typeof server.of !== "function" ||
    typeof (server.sockets as Partial<EventEmitter> | undefined)?.prependListener !== "function"
  ) {
    throw argumentError("io", "a socket.io Server", io);
  }
  const engine = server.engine as Partial<EngineLike> | undefined | null;
  if (engine === undefined || engine === null) {
    throw new TypeError(
      "withSocketContext(io) was given a socket.io Server with no engine yet: call it after new Server(httpServer), new Server(port) or io.attach(httpServer)",
    );
  }
  if (!isEngine(engine)) {
    throw argumentError("io.engine", "an engine.io Server", engine);
  }
  if (withContexts.has(engine)) {
    throw new TypeError(
      "withSocketContext(io) was already called for this socket.io Server: call it once",
    );
  }
  return engine;
}
