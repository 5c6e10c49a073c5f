/**
 * contextMiddleware with koa-websocket on a real server (127.0.0.1) and real
 * `ws` clients. koa-websocket lets `ws` take the server's upgrades and runs
 * `app.ws`'s own middleware after the handshake, with a Koa context that
 * has no response. contextMiddleware, mounted on `app.ws`, makes the
 * upgrade's Context there and binds the socket's listeners `ws` added, so
 * the WebSocket's `message`, `pong` and `close` events run in it; with the
 * `upgrade` listener wrapped in `withUpgradeContext`, it enters that
 * Context instead.
 */
import assert from "node:assert/strict";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { withUpgradeContext } from "contextvars/http";
import { contextMiddleware } from "contextvars/koa";
import Koa from "koa";
import websockify from "koa-websocket";
import { close, randomDelay } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  expectConnections,
  expectedFor,
  serveSocket,
  sink,
  terminateClients,
} from "../helpers/websocket-scenario.ts";

type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

for (const wrapped of [false, true]) {
  describe(`contextMiddleware with koa-websocket${wrapped ? ", upgrade listener under withUpgradeContext" : ""}`, {
    timeout: 120_000,
  }, () => {
    const into = sink();
    const app = websockify(new Koa());
    app.ws.use(contextMiddleware({ seed: (ctx) => seedUser(ctx.get("x-user")) }));
    app.ws.use(async (_ctx, next) => {
      await randomDelay();
      stage.set(`hook:${user.get()}`);
      await next();
    });
    app.ws.use((ctx) => serveSocket(ctx.websocket, expectedFor(ctx.req), into, true));
    let server: Server;
    let base = "";
    before(async () => {
      // koa-websocket's listen() makes the server and its ws server, which adds the upgrade listener.
      server = leak.run("listen", () => app.listen(0, "127.0.0.1"));
      // Wrapped, the upgrade has its Context before the handshake and the middleware enters it.
      if (wrapped) {
        for (const listener of server.listeners("upgrade") as UpgradeListener[]) {
          server.off("upgrade", listener);
          server.on("upgrade", withUpgradeContext(listener));
        }
      }
      await new Promise((resolve) => server.once("listening", resolve));
      const address = server.address();
      assert.ok(typeof address === "object" && address !== null);
      base = `ws://127.0.0.1:${address.port}`;
    });
    after(async () => {
      terminateClients();
      app.ws.server?.close();
      await close(server);
    });

    it("60 concurrent connections: middleware, messages, pongs and closes see their own upgrade", async () => {
      await expectConnections(base, "/ping", into, 60);
    });

    it("a second round: nothing left over from the first", async () => {
      await expectConnections(base, "/ping", into, 20);
    });
  });
}
