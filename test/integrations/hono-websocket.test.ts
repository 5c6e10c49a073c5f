/**
 * contextMiddleware with @hono/node-ws on a real server (127.0.0.1) and
 * real `ws` clients. @hono/node-ws takes the server's upgrades itself and
 * runs the app for each one through `app.request()` with the Node request
 * as `c.env.incoming` and no response, then completes the handshake in its
 * own upgrade listener, outside the request. The middleware recognises
 * that shape (an upgrade request without a response) and binds the
 * upgrade's socket to the request's Context, so the WebSocket's `message`,
 * `pong` and `close` events, which `ws` emits from the socket's listeners,
 * reach the route's listeners in it.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import type { Server } from "node:http";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { serve } from "@hono/node-server";
import { createNodeWebSocket } from "@hono/node-ws";
import { contextMiddleware } from "contextvars/hono";
import { Hono } from "hono";
import { WebSocket } from "ws";
import { close, randomDelay } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  expectConnections,
  expectPlainRequests,
  type ServerSocket,
  serveSocket,
  sink,
  terminateClients,
  wsValues,
} from "../helpers/websocket-scenario.ts";

describe("contextMiddleware with @hono/node-ws", { timeout: 120_000 }, () => {
  const into = sink();
  const app = new Hono();
  const { upgradeWebSocket, injectWebSocket } = createNodeWebSocket({ app });
  app.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
  app.use(async (_c, next) => {
    await randomDelay();
    stage.set(`hook:${user.get()}`);
    await next();
  });
  app.get(
    "/ping",
    upgradeWebSocket((c) => {
      const expected = `${c.req.header("x-request-id")}|${c.req.header("x-user")}|hook:${c.req.header("x-user")}|unset`;
      // Hono hands messages and the close to its events, pong only to the raw ws.
      const listeners = new Map<string, (data: unknown) => void>();
      return {
        onOpen(_event, ws) {
          const socket: ServerSocket = {
            send: (data) => ws.send(data),
            ping: () => ws.raw?.ping(),
            on(event, listener) {
              if (event === "pong") ws.raw?.on("pong", listener);
              else listeners.set(event, listener);
            },
          };
          serveSocket(socket, expected, into, true);
        },
        onMessage: (event) => listeners.get("message")?.(event.data),
        onClose: () => listeners.get("close")?.(undefined),
      };
    }),
  );
  const errors: string[] = [];
  let errored = () => {};
  app.get(
    "/error",
    upgradeWebSocket(() => ({
      onOpen: (_event, ws) => ws.send("open"),
      onError: () => {
        errors.push(wsValues());
        errored();
      },
    })),
  );
  app.get("/plain", (c) => c.text(wsValues()));
  let server: Server;
  let http = "";
  before(async () => {
    // Started inside a run with `leak` set: connections must not see it.
    http = await leak.run(
      "listen",
      () =>
        new Promise<string>((resolve) => {
          server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) =>
            resolve(`http://127.0.0.1:${info.port}`),
          ) as Server;
        }),
    );
    injectWebSocket(server);
  });
  after(async () => {
    terminateClients();
    await close(server);
  });

  it("60 concurrent connections: handler, messages, timers, pongs and closes see their own upgrade", async () => {
    await expectConnections(http.replace("http", "ws"), "/ping", into, 60);
  });

  it("a second round: nothing left over from the first", async () => {
    await expectConnections(http.replace("http", "ws"), "/ping", into, 20);
  });

  // @hono/node-ws makes onError's event with the global ErrorEvent, which Node 20,
  // 22 and 24 lack: there the ReferenceError goes to console.error and onError is never called.
  const noErrorEvent = typeof globalThis.ErrorEvent === "undefined";
  it("onError, called for a protocol error on the connection, sees its upgrade", {
    skip: noErrorEvent ? "no global ErrorEvent: @hono/node-ws never calls onError" : false,
  }, async () => {
    const called = new Promise<void>((resolve) => {
      errored = resolve;
    });
    const ws = new WebSocket(`${http.replace("http", "ws")}/error`, {
      headers: { "x-request-id": "errs", "x-user": "eve" },
    });
    try {
      await once(ws, "message");
      // One unmasked text frame ("hi"): clients must mask theirs, so ws reports an error.
      (ws as unknown as { _socket: Duplex })._socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
      await called;
      assert.deepEqual(errors, ["errs|eve|hook:eve|unset"]);
    } finally {
      ws.terminate();
    }
  });

  it("ordinary requests keep their own Context, and their id echoed", async () => {
    await expectPlainRequests(http);
  });
});
