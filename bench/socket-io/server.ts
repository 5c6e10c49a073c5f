/**
 * One socket.io benchmark server, in its own process: `server.ts <mode>`.
 * A socket.io `Server` on a node:http server, with an `io.use` middleware
 * that takes the user from the handshake's `x-user` header, and an "echo"
 * event whose handler reads the user once and acknowledges with the payload.
 * The modes differ only in where the middleware puts the user and how the
 * handler reads it:
 *
 *   bare   no context at all: the middleware sets `socket.data.user`, the
 *          handler reads it from there
 *   bare2  the same again: the bare-vs-bare control (noise floor)
 *   als    a hand-written AsyncLocalStorage: the middleware makes one store
 *          per connection, and each event handler runs in
 *          `als.run(store, …)` and reads `als.getStore().user`. The
 *          like-for-like baseline for ours: each event enters its
 *          connection's store once
 *   ours   `withSocketContext(io)`; the middleware does `user.set(…)` on a
 *          ContextVar and the handler `user.get()`, which finds it because
 *          withSocketContext binds each socket: each event runs in a fresh
 *          copy of the Context the middleware set it in
 *
 * Tells the parent its port, then answers each "mark" message with the
 * process's CPU time so far (process.cpuUsage, user + system, and system
 * alone, µs), the events acknowledged so far and how many of their reads
 * found a user. The package is loaded from the tsc build that run.ts makes
 * (CONTEXTVARS_BUILD), as in bench/http and bench/ws.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Server, type Socket } from "socket.io";

type SocketIoModule = typeof import("../../src/integrations/socket-io.ts");
type CoreModule = typeof import("../../src/index.ts");

export const MODES = ["bare", "bare2", "als", "ours"] as const;
export type Mode = (typeof MODES)[number];

const mode = process.argv[2] as Mode;
if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
if (process.send === undefined) throw new Error("run me through bench/socket-io/run.ts");
// The runner gone (killed, or crashed before its finally), the channel closes:
// leave with it, rather than listen on loopback for good with nobody to stop us.
process.on("disconnect", () => process.exit(0));

async function fromBuild<M>(path: string): Promise<M> {
  const build = process.env.CONTEXTVARS_BUILD;
  if (build === undefined)
    throw new Error("CONTEXTVARS_BUILD is not set; run bench/socket-io/run.ts");
  return (await import(pathToFileURL(join(build, path)).href)) as M;
}

let events = 0;
/** Uses the value read, so the read cannot be optimised away. */
let seen = 0;
function use(user: unknown): void {
  if (user !== undefined) seen++;
}

type Ack = (payload: unknown) => void;
const userOf = (socket: Socket) => String(socket.handshake.headers["x-user"] ?? "anonymous");

const server = createServer((_req, res) => res.writeHead(404).end());
const io = new Server(server);

if (mode === "bare" || mode === "bare2") {
  io.use((socket, next) => {
    socket.data.user = userOf(socket);
    next();
  });
  io.on("connection", (socket) => {
    socket.on("echo", (payload: unknown, ack: Ack) => {
      events++;
      use(socket.data.user);
      ack(payload);
    });
  });
} else if (mode === "als") {
  const als = new AsyncLocalStorage<{ user: string }>();
  io.use((socket, next) => {
    socket.data.store = { user: userOf(socket) };
    next();
  });
  const onEcho = (payload: unknown, ack: Ack) => {
    events++;
    use(als.getStore()?.user);
    ack(payload);
  };
  io.on("connection", (socket) => {
    const store = socket.data.store as { user: string };
    socket.on("echo", (payload: unknown, ack: Ack) => als.run(store, onEcho, payload, ack));
  });
} else {
  const { ContextVar } = await fromBuild<CoreModule>("index.js");
  const { withSocketContext } = await fromBuild<SocketIoModule>("integrations/socket-io.js");
  const user = new ContextVar<string>("user");
  withSocketContext(io);
  io.use((socket, next) => {
    user.set(userOf(socket));
    next();
  });
  io.on("connection", (socket) => {
    socket.on("echo", (payload: unknown, ack: Ack) => {
      events++;
      const u = user.get();
      if (u === undefined) throw new Error("context lost");
      use(u);
      ack(payload);
    });
  });
}

await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));

process.on("message", (message) => {
  if (message === "mark") {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpu: user + system, system, events, seen });
  } else if (message === "exit") {
    process.exit(0);
  }
});
process.send({ port: (server.address() as AddressInfo).port });
