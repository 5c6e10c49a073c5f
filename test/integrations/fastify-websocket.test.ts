/**
 * contextPlugin with @fastify/websocket on a real server (127.0.0.1) and
 * real `ws` clients. The plugin dispatches each upgrade through Fastify's
 * hooks, so the route's handler runs in the request's Context; the
 * WebSocket's `message`, `pong` and `close` events come from the upgraded
 * socket's own listeners, which the contextvars plugin binds when the
 * request is an upgrade. `injectWS` routes a plain object as the request
 * and an in-memory stream as the socket; the plugin binds that stream.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import fastifyWebsocket from "@fastify/websocket";
import { contextPlugin, requestId } from "contextvars/fastify";
import Fastify, { type FastifyInstance } from "fastify";
import { WebSocket } from "ws";
import { randomDelay, UUID } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  closeClient,
  expectConnections,
  expectedFor,
  expectPlainRequests,
  open,
  type Sink,
  serveSocket,
  sink,
  terminateClients,
  wsValues,
} from "../helpers/websocket-scenario.ts";

describe("contextPlugin with @fastify/websocket", { timeout: 120_000 }, () => {
  const into: Sink = sink();
  let app: FastifyInstance;
  let base = "";
  let http = "";

  before(async () => {
    app = Fastify();
    await app.register(contextPlugin, { seed: (request) => seedUser(request.headers["x-user"]) });
    await app.register(fastifyWebsocket);
    // docs/integrations.md's echo of the id on the 101, which ws writes.
    app.websocketServer.on("headers", (headers: string[]) =>
      headers.push(`x-request-id: ${requestId.get()}`),
    );
    // An async hook whose set, after an await, the handler and listeners must see.
    app.addHook("preValidation", async () => {
      await randomDelay();
      stage.set(`hook:${user.get()}`);
    });
    app.get("/ping", { websocket: true }, (socket, request) => {
      serveSocket(socket, expectedFor(request.raw), into, true);
    });
    app.get("/plain", async () => wsValues());
    // Listening inside a run with `leak` set: connections must not see it.
    http = await leak.run("listen", () => app.listen({ host: "127.0.0.1", port: 0 }));
    base = http.replace("http", "ws");
  });
  after(async () => {
    terminateClients();
    await app.close();
  });

  it("60 concurrent connections: handler, messages, timers, pongs and closes see their own upgrade", async () => {
    await expectConnections(base, "/ping", into, 60);
  });

  it("a second round on the same server: nothing left over from the first", async () => {
    await expectConnections(base, "/ping", into, 20);
  });

  it("the headers listener of docs/integrations.md puts each upgrade's own id on its 101", async () => {
    const opened = Array.from({ length: 20 }, async (_, i) => {
      await randomDelay();
      const id = `echo-${i}`;
      const ws = new WebSocket(`${base}/ping`, { headers: { "x-request-id": id } });
      // ws emits "open" in the same turn as "upgrade": both listened for first.
      const upgraded = once(ws, "upgrade");
      const ready = once(ws, "open");
      const [response] = (await upgraded) as [{ headers: Record<string, unknown> }];
      assert.equal(response.headers["x-request-id"], id);
      await ready;
      await closeClient(ws);
    });
    await Promise.all(opened);
    assert.equal(requestId.get("<none>"), "<none>");
  });

  it("ordinary requests beside the WebSockets keep their own Context", async () => {
    const { ws } = await open(`${base}/ping`, { "x-request-id": "ws-1", "x-user": "ann" });
    await expectPlainRequests(http);
    await closeClient(ws);
    assert.equal(requestId.get("<none>"), "<none>");
  });
});

describe("contextPlugin with @fastify/websocket's injectWS", { timeout: 60_000 }, () => {
  let app: FastifyInstance;
  const served = new Set<WebSocket>();

  before(async () => {
    app = Fastify();
    await app.register(contextPlugin, { seed: (request) => seedUser(request.headers["x-user"]) });
    await app.register(fastifyWebsocket);
    // injectWS (11.3.7) writes Sec-WebSocket-Version as the number 13, which
    // ws 8.23 refuses with a 400 (it compares the header with "13"): mended
    // here, before the handshake, so the test reaches the handler.
    app.addHook("onRequest", async (request) => {
      const headers = request.raw.headers as Record<string, unknown>;
      if (headers["sec-websocket-version"] === 13) headers["sec-websocket-version"] = "13";
    });
    app.addHook("preValidation", async () => {
      await randomDelay();
      stage.set(`hook:${user.get()}`);
    });
    app.get("/ping", { websocket: true }, (socket, request) => {
      served.add(socket);
      // No ping: injectWS's in-memory client answers none.
      serveSocket(socket, expectedFor(request.raw), sink(), false);
    });
    await app.ready();
  });
  after(async () => {
    // A server socket that answered an injected client's close waits for an
    // end of the in-memory stream that never comes, then gives up after ws's
    // 30 s closeTimeout, a timer that kept the file's process alive.
    for (const socket of served) socket.terminate();
    await app.close();
  });

  it("10 injected connections: the handler, messages and their timers see their own request", async () => {
    const clients = Array.from({ length: 10 }, async (_, i) => {
      await randomDelay();
      const expected = `inj-${i}|u${i}|hook:u${i}|unset`;
      let greeting: Promise<unknown> | undefined;
      // Listened for from the start: the handler greets before injectWS resolves.
      const ws: WebSocket = await leak.run("caller", () =>
        app.injectWS(
          "/ping",
          { headers: { "x-request-id": `inj-${i}`, "x-user": `u${i}` } },
          { onInit: (client) => (greeting = once(client, "message")) },
        ),
      );
      const [hello] = (await greeting) as [Buffer];
      assert.equal(String(hello), expected, "the route's handler");
      for (let m = 0; m < 3; m++) {
        await randomDelay();
        // Sent from inside a run with `leak` set: the server's listeners must not see it.
        const reply = once(ws, "message");
        leak.run("sender", () => ws.send(`m${m}`));
        const [data] = (await reply) as [Buffer];
        assert.deepEqual(JSON.parse(String(data)), {
          echo: `m${m}`,
          seen: Array(4).fill(expected),
        });
      }
      const closed = once(ws, "close");
      ws.close();
      await closed;
    });
    await Promise.all(clients);
    assert.equal(requestId.get("<none>"), "<none>");
    assert.equal(leak.get("unset"), "unset");
  });

  it("registered twice: an injected request still has one Context, its id and seed's values from the first", async () => {
    const twice = Fastify();
    await twice.register(contextPlugin, { seed: (request) => seedUser(request.headers["x-user"]) });
    const seen: string[] = [];
    await twice.register(contextPlugin, {
      seed: () => seen.push(`seed|${requestId.get("-")}|${user.get("-")}`),
    });
    await twice.register(fastifyWebsocket);
    twice.addHook("onRequest", async (request) => {
      const headers = request.raw.headers as Record<string, unknown>;
      if (headers["sec-websocket-version"] === 13) headers["sec-websocket-version"] = "13";
    });
    twice.get("/ping", { websocket: true }, (socket) => {
      seen.push(`handler|${requestId.get("-")}|${user.get("-")}`);
      socket.on("message", () => {
        seen.push(`message|${requestId.get("-")}|${user.get("-")}`);
        socket.send("ok");
      });
    });
    await twice.ready();
    try {
      // No x-request-id: a second Context would have an id of its own.
      const ws = await twice.injectWS("/ping", { headers: { "x-user": "ann" } });
      const reply = once(ws, "message");
      ws.send("hi");
      await reply;
      ws.terminate();
      const id = seen[0]?.split("|")[1] ?? "";
      assert.match(id, UUID);
      assert.deepEqual(seen, [`seed|${id}|ann`, `handler|${id}|ann`, `message|${id}|ann`]);
    } finally {
      await twice.close();
    }
  });
});
