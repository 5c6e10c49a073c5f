/**
 * The WebSocket scenario every framework's WebSocket plugin runs through:
 * real `ws` clients against a server on 127.0.0.1. The server's route sends
 * what its handler sees as the first message, answers each message after
 * random delays with what the `message` listener saw at each step, pings
 * on `/ping`, and records what its `pong` and `close` listeners see.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { after, before } from "node:test";
import { bindEmitter } from "contextvars";
import { requestId, withUpgradeContext } from "contextvars/http";
import { WebSocket, type WebSocketServer } from "ws";
import { close, listen, randomDelay, send } from "./http.ts";
import { leak, seedUser, stage, user } from "./request-scenario.ts";

/**
 * Starts `server` on 127.0.0.1 from inside a run with `leak` set (upgrades
 * must not see it); resolves to its `ws://` base.
 */
export async function listenWs(server: Server): Promise<string> {
  return (await leak.run("listen", () => listen(server))).replace("http", "ws");
}

/**
 * A node:http server, made in a Context with `leak` set, whose upgrades run
 * under `withUpgradeContext` (with `user` from `x-user`) and are handed to
 * `wss` as its `connection`: a library's WebSocket server on `ws`. `bound`
 * binds each socket with `bindEmitter` first, before the library's
 * connection listener adds its `message` listener.
 */
export function upgradeServer(wss: WebSocketServer, bound: boolean): Server {
  const server = leak.run("the server's own Context", () => createServer());
  server.on(
    "upgrade",
    withUpgradeContext(
      (req, socket, head) => {
        wss.handleUpgrade(req, socket, head, (ws) => {
          if (bound) bindEmitter(ws);
          wss.emit("connection", ws, req);
        });
      },
      { seed: (req) => seedUser(req.headers["x-user"]) },
    ),
  );
  return server;
}

/**
 * For a describe block: listens on `server` (as `listenWs`) before its tests,
 * terminates every client and closes the server after them. The returned
 * object's `base` is the ws:// base once listening.
 */
export function serveWsForSuite(server: Server): { readonly base: string } {
  const served = { base: "" };
  before(async () => {
    served.base = await listenWs(server);
  });
  after(async () => {
    terminateClients();
    await close(server);
  });
  return served;
}

/**
 * 20 concurrent ordinary requests to `${http}/plain` (a route answering
 * `wsValues()`), beside the WebSockets: each sees its own id, user and hook
 * stage, and gets its id echoed.
 */
export async function expectPlainRequests(http: string): Promise<void> {
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      send(http, "/plain", { headers: { "x-request-id": `plain-${i}`, "x-user": `u${i}` } }),
    ),
  );
  for (const [i, reply] of replies.entries()) {
    assert.equal(reply.body, `plain-${i}|u${i}|hook:u${i}|unset`);
    assert.equal(reply.headers["x-request-id"], `plain-${i}`);
  }
}

/** What a listener reads: `<id>|<user>|<stage>|<leak>`. */
export function wsValues(): string {
  return `${requestId.get("<none>")}|${user.get("<none>")}|${stage.get("<none>")}|${leak.get("unset")}`;
}

/** What connection `i` of `expectConnections` must see everywhere on the server. */
export function expectedOf(i: number): string {
  return `conn-${i}|user-${i}|hook:user-${i}|unset`;
}

export interface Seen {
  readonly expected: string;
  readonly seen: string;
}

/** What the server's pong and close listeners recorded. */
export interface Sink {
  readonly pongs: Seen[];
  readonly closes: Seen[];
}

export function sink(): Sink {
  return { pongs: [], closes: [] };
}

/** The minimum of a server-side WebSocket the route uses (ws's, or a framework's wrapper). */
export interface ServerSocket {
  send(data: string): void;
  ping(): void;
  on(event: "message" | "pong" | "close", listener: (data: unknown) => void): unknown;
}

/**
 * The route's handler, given the connection's `ws` and what it must see
 * (read from the request, not from the vars): greets, then listens.
 */
export function serveSocket(ws: ServerSocket, expected: string, into: Sink, ping: boolean): void {
  ws.send(wsValues());
  ws.on("message", async (data) => {
    const seen = [wsValues()];
    await randomDelay();
    seen.push(wsValues());
    await new Promise((resolve) => setImmediate(resolve));
    seen.push(wsValues());
    setTimeout(
      () => ws.send(JSON.stringify({ echo: String(data), seen: [...seen, wsValues()] })),
      Math.random() * 3,
    );
  });
  ws.on("pong", () => into.pongs.push({ expected, seen: wsValues() }));
  ws.on("close", () => into.closes.push({ expected, seen: wsValues() }));
  if (ping) ws.ping();
}

/** What the server must see for a request: from its headers, as the seed and hook set them. */
export function expectedFor(req: Pick<IncomingMessage, "headers">): string {
  const u = req.headers["x-user"];
  return `${req.headers["x-request-id"]}|${u}|hook:${u}|unset`;
}

/** Every client opened, terminated by `terminateClients`. */
const opened = new Set<WebSocket>();

export function terminateClients(): void {
  for (const ws of opened) ws.terminate();
  opened.clear();
}

/** Opens a client; resolves once open, with the first message (what the handler saw). */
export async function open(url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers });
  opened.add(ws);
  // Listened for before "open": the server may send it in the same packet as the 101.
  const greeting = new Promise<string>((resolve) => {
    ws.once("message", (data: Buffer) => resolve(String(data)));
  });
  await once(ws, "open");
  return { ws, greeting: await greeting };
}

async function ask(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, "message");
  ws.send(text);
  const [data] = (await reply) as [Buffer];
  return String(data);
}

export async function closeClient(ws: WebSocket): Promise<void> {
  const closed = once(ws, "close");
  ws.close();
  await closed;
}

/**
 * `count` concurrent connections to `${base}${path}`, each with its own
 * x-request-id and x-user, five messages each at random delays, then a
 * close: each handler, message listener, timer, pong and close listener
 * must see its own connection's values, and nothing reaches the caller.
 * `base` is a ws:// URL; the route pings when `ping` is true.
 */
export async function expectConnections(
  base: string,
  path: string,
  into: Sink,
  count = 60,
): Promise<void> {
  const pongsBefore = into.pongs.length;
  const closesBefore = into.closes.length;
  const clients = Array.from({ length: count }, async (_, i) => {
    await randomDelay();
    const headers = { "x-request-id": `conn-${i}`, "x-user": `user-${i}` };
    const { ws, greeting } = await open(`${base}${path}`, headers);
    assert.equal(greeting, expectedOf(i), "the route's handler");
    for (let m = 0; m < 5; m++) {
      await randomDelay();
      const reply = await ask(ws, `m${m}`);
      assert.deepEqual(JSON.parse(reply), { echo: `m${m}`, seen: Array(4).fill(expectedOf(i)) });
    }
    await closeClient(ws);
  });
  await Promise.all(clients);
  for (let tries = 0; tries < 100 && into.closes.length - closesBefore < count; tries++) {
    await randomDelay(10);
  }
  const closes = into.closes.slice(closesBefore);
  const pongs = into.pongs.slice(pongsBefore);
  assert.equal(closes.length, count, "every server-side close listener ran");
  assert.equal(pongs.length, count, "every pong listener ran");
  for (const { expected, seen } of [...closes, ...pongs]) assert.equal(seen, expected);
  assert.equal(new Set(closes.map(({ seen }) => seen)).size, count, "no two connections alike");
  assert.equal(leak.get("unset"), "unset", "nothing reached the caller's Context");
  assert.equal(requestId.get("<none>"), "<none>");
  assert.equal(user.get("<none>"), "<none>");
  assert.equal(stage.get("<none>"), "<none>");
}
