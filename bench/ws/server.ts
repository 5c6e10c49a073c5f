/**
 * One WebSocket benchmark server, in its own process: `server.ts <mode>`.
 * A `ws` `WebSocketServer({ noServer: true })` on a node:http server, taking
 * its connections from the server's `upgrade` listener and echoing every
 * message. The modes differ only in that listener and in what the message
 * handler reads:
 *
 *   bare   the plain upgrade listener; the handler echoes
 *   bare2  the same again: the bare-vs-bare control (noise floor)
 *   als    a minimal hand-written AsyncLocalStorage upgrade listener,
 *          `als.run(store, () => wss.handleUpgrade(…))`; the handler reads
 *          the store 3 times. ws reads its frames from the socket's `data`
 *          listener, which Node calls in the connection's async context,
 *          so these reads find no store: this is what an ALS costs per
 *          message when nothing carries it to the messages
 *   alsbound  the same listener, with the message handler bound by hand
 *          (`AsyncResource.bind` inside the run): its 3 reads find the
 *          store. The like-for-like baseline for `ours`: each message
 *          enters the upgrade's store once, as ours enters its Context
 *   ours   `withUpgradeContext` with a `seed` that sets two vars; the handler
 *          does 3 `get()` (the two vars and `requestId`), which see the
 *          upgrade's values because the socket is bound: each frame's
 *          `data` listener runs inside one `carrier.run`
 *
 * Tells the parent its port, then answers each "mark" message with the
 * process's CPU time so far (process.cpuUsage, user + system, and system
 * alone, µs) and the
 * messages echoed so far. The package is loaded from the tsc build that
 * run.ts makes (CONTEXTVARS_BUILD), as in bench/http.
 */
import { AsyncLocalStorage, AsyncResource } from "node:async_hooks";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { pathToFileURL } from "node:url";
import { type RawData, type WebSocket, WebSocketServer } from "ws";

type HttpModule = typeof import("../../src/integrations/http.ts");
type CoreModule = typeof import("../../src/index.ts");

export const MODES = ["bare", "bare2", "als", "alsbound", "ours"] as const;
export type Mode = (typeof MODES)[number];

const mode = process.argv[2] as Mode;
if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
if (process.send === undefined) throw new Error("run me through bench/ws/run.ts");
// The runner gone (killed, or crashed before its finally), the channel closes:
// leave with it, rather than listen on loopback for good with nobody to stop us.
process.on("disconnect", () => process.exit(0));

async function fromBuild<M>(path: string): Promise<M> {
  const build = process.env.CONTEXTVARS_BUILD;
  if (build === undefined) throw new Error("CONTEXTVARS_BUILD is not set; run bench/ws/run.ts");
  return (await import(pathToFileURL(join(build, path)).href)) as M;
}

let messages = 0;
/** Uses the three values read, so the reads cannot be optimised away. */
let seen = 0;
function use(a: unknown, b: unknown, c: unknown): void {
  if (a !== undefined) seen++;
  if (b !== undefined) seen++;
  if (c !== undefined) seen++;
}

const wss = new WebSocketServer({ noServer: true });
type Upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
let upgrade: Upgrade;

if (mode === "bare" || mode === "bare2") {
  const onMessage = function (this: WebSocket, data: RawData, isBinary: boolean) {
    messages++;
    this.send(data, { binary: isBinary });
  };
  upgrade = (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", onMessage));
} else if (mode === "als" || mode === "alsbound") {
  const als = new AsyncLocalStorage<{ user: string; room: string }>();
  const onMessage = function (this: WebSocket, data: RawData, isBinary: boolean) {
    messages++;
    use(als.getStore()?.user, als.getStore()?.room, als.getStore()?.user);
    this.send(data, { binary: isBinary });
  };
  // Bound inside the run, so each message enters the upgrade's store.
  // (AsyncResource.bind types `this` as unknown; the bound function passes its own on.)
  type OnMessage = (this: unknown, data: RawData, isBinary: boolean) => void;
  const handler =
    mode === "als"
      ? () => onMessage
      : () => AsyncResource.bind(onMessage as OnMessage) as typeof onMessage;
  upgrade = (req, socket, head) =>
    als.run({ user: String(req.headers["x-user"] ?? "anonymous"), room: "lobby" }, () =>
      wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", handler())),
    );
} else {
  const { ContextVar } = await fromBuild<CoreModule>("index.js");
  const { requestId, withUpgradeContext } = await fromBuild<HttpModule>("integrations/http.js");
  const user = new ContextVar<string>("user");
  const room = new ContextVar<string>("room");
  const onMessage = function (this: WebSocket, data: RawData, isBinary: boolean) {
    messages++;
    const a = user.get();
    const b = room.get();
    const c = requestId.get();
    if (a === undefined || b === undefined || c === undefined) throw new Error("context lost");
    use(a, b, c);
    this.send(data, { binary: isBinary });
  };
  upgrade = withUpgradeContext(
    (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", onMessage)),
    {
      seed: (req) => {
        user.set(String(req.headers["x-user"] ?? "anonymous"));
        room.set("lobby");
      },
    },
  );
}

const server = createServer((_req, res) => res.writeHead(426).end());
server.on("upgrade", upgrade);
await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));

process.on("message", (message) => {
  if (message === "mark") {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpu: user + system, system, messages, seen });
  } else if (message === "exit") {
    process.exit(0);
  }
});
process.send({ port: (server.address() as AddressInfo).port });
