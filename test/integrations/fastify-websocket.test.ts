/**
 * contextPlugin with @fastify/websocket on a real server (127.0.0.1) and
 * real `ws` clients. The plugin dispatches each upgrade through Fastify's
 * hooks, so the route's handler runs in the request's Context; the
 * WebSocket's `message`, `pong` and `close` events come from the upgraded
 * socket's own listeners, which the contextvars plugin binds when the
 * request is an upgrade.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fastifyWebsocket from "@fastify/websocket";
import { contextPlugin, requestId } from "contextvars/fastify";
import Fastify, { type FastifyInstance } from "fastify";
import { randomDelay, send } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  closeClient,
  expectConnections,
  expectedFor,
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

  it("ordinary requests beside the WebSockets keep their own Context", async () => {
    const { ws } = await open(`${base}/ping`, { "x-request-id": "ws-1", "x-user": "ann" });
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        send(http, "/plain", { headers: { "x-request-id": `plain-${i}`, "x-user": `u${i}` } }),
      ),
    );
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.body, `plain-${i}|u${i}|hook:u${i}|unset`);
      assert.equal(reply.headers["x-request-id"], `plain-${i}`);
    }
    await closeClient(ws);
    assert.equal(requestId.get("<none>"), "<none>");
  });
});
