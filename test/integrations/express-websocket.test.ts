/**
 * contextMiddleware with express-ws on a real server (127.0.0.1) and real
 * `ws` clients. express-ws lets `ws` take the server's upgrades and
 * completes each handshake before Express sees the request: the
 * middleware and the `.ws` route run in the request's Context, but the
 * socket's listeners were added before it existed, so the WebSocket's
 * `message`, `pong` and `close` events run in the connection's Context.
 * Wrapping the `upgrade` listener `ws` added with `withUpgradeContext`
 * makes the Context first; the middleware then enters that same one.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { describe, it } from "node:test";
import { bind } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import { withUpgradeContext } from "contextvars/http";
import express from "express";
import expressWs from "express-ws";
import { WebSocket } from "ws";
import { close, randomDelay } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  closeClient,
  expectConnections,
  expectedFor,
  listenWs,
  open,
  type Sink,
  serveSocket,
  serveWsForSuite,
  sink,
  wsValues,
} from "../helpers/websocket-scenario.ts";

type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** An express-ws app; `wrapUpgrade` runs ws's upgrade listener under withUpgradeContext. */
function build(into: Sink, wrapUpgrade: boolean): Server {
  const app = express();
  const server = leak.run("the server's own Context", () => createServer(app));
  const { app: wsApp } = expressWs(app, server);
  if (wrapUpgrade) {
    for (const listener of server.listeners("upgrade") as UpgradeListener[]) {
      server.off("upgrade", listener);
      server.on("upgrade", withUpgradeContext(listener));
    }
  }
  wsApp.use(contextMiddleware({ seed: (req) => seedUser(req.headers["x-user"]) }));
  wsApp.use(async (_req, _res, next) => {
    await randomDelay();
    stage.set(`hook:${user.get()}`);
    next();
  });
  wsApp.ws("/ping", (ws, req) => serveSocket(ws, expectedFor(req), into, true));
  wsApp.ws("/bound", (ws) => {
    ws.send(wsValues());
    ws.on("message", () => ws.send(`unbound:${wsValues()}`));
    ws.on(
      "message",
      bind(() => ws.send(`bound:${wsValues()}`)),
    );
  });
  return server;
}

describe("contextMiddleware with express-ws, upgrade listener under withUpgradeContext", {
  timeout: 120_000,
}, () => {
  const into = sink();
  const server = build(into, true);
  const served = serveWsForSuite(server);

  it("60 concurrent connections: handler, messages, timers, pongs and closes see their own upgrade", async () => {
    await expectConnections(served.base, "/ping", into, 60);
  });

  it("a second round: nothing left over from the first", async () => {
    await expectConnections(served.base, "/ping", into, 20);
  });

  it("ws's headers event runs in the upgrade's Context: it echoes each connection's id on the 101", async () => {
    const app = express();
    const server = createServer(app);
    const { app: wsApp, getWss } = expressWs(app, server);
    for (const listener of server.listeners("upgrade") as UpgradeListener[]) {
      server.off("upgrade", listener);
      server.on("upgrade", withUpgradeContext(listener));
    }
    getWss().on("headers", (headers) => headers.push(`x-request-id: ${requestId.get()}`));
    wsApp.use(contextMiddleware());
    wsApp.ws("/chat", (ws) => ws.send(requestId.get()));
    const base = await listenWs(server);
    try {
      const echoed = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await randomDelay();
          const ws = new WebSocket(`${base}/chat`, { headers: { "x-request-id": `echo-${i}` } });
          // Both listened for at once: the greeting may come in the 101's packet.
          const upgraded = once(ws, "upgrade") as Promise<[IncomingMessage]>;
          const greeted = once(ws, "message") as Promise<[Buffer]>;
          const [[res], [greeting]] = await Promise.all([upgraded, greeted]);
          await closeClient(ws);
          return `${res.headers["x-request-id"]}|${greeting}`;
        }),
      );
      assert.deepEqual(
        echoed,
        Array.from({ length: 20 }, (_, i) => `echo-${i}|echo-${i}`),
      );
    } finally {
      getWss().close();
      await close(server);
    }
  });
});

describe("contextMiddleware with express-ws alone", { timeout: 60_000 }, () => {
  const into = sink();
  const server = build(into, false);
  const served = serveWsForSuite(server);

  it("the route sees the request's values; message and close listeners do not; bind() restores them", async () => {
    const headers = { "x-request-id": "alone-1", "x-user": "ann" };
    const { ws, greeting } = await open(`${served.base}/bound`, headers);
    assert.equal(greeting, "alone-1|ann|hook:ann|unset");
    const replies: string[] = [];
    const both = new Promise<void>((resolve) => {
      ws.on("message", (data: Buffer) => {
        replies.push(String(data));
        if (replies.length === 2) resolve();
      });
    });
    ws.send("hello");
    await both;
    assert.deepEqual(replies.sort(), [
      "bound:alone-1|ann|hook:ann|unset",
      "unbound:<none>|<none>|<none>|unset",
    ]);
    await closeClient(ws);

    const { ws: pinged } = await open(`${served.base}/ping`, headers);
    for (let tries = 0; tries < 50 && into.pongs.length === 0; tries++) await randomDelay(10);
    await closeClient(pinged);
    for (let tries = 0; tries < 50 && into.closes.length === 0; tries++) await randomDelay(10);
    assert.deepEqual(
      [...into.pongs, ...into.closes].map(({ seen }) => seen),
      ["<none>|<none>|<none>|unset", "<none>|<none>|<none>|unset"],
    );
  });
});
