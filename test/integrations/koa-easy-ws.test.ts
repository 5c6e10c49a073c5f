/**
 * contextMiddleware with koa-easy-ws on a real server (127.0.0.1) and real
 * `ws` clients. koa-easy-ws upgrades from inside the ordinary middleware
 * chain (`await ctx.ws()`), so the middleware and the handler run in the
 * request's Context, but `ws` listens on a connection socket that node:http
 * still owns: the WebSocket's `message`, `pong` and `close` events run in
 * the connection's Context. `bindEmitter(ws)` in the handler carries the
 * request's values to them.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { bindEmitter } from "contextvars";
import { contextMiddleware } from "contextvars/koa";
import Koa from "koa";
import easyWs from "koa-easy-ws";
import { randomDelay } from "../helpers/http.ts";
import { leak, seedUser, stage, user } from "../helpers/request-scenario.ts";
import {
  closeClient,
  expectConnections,
  expectedFor,
  open,
  serveSocket,
  serveWsForSuite,
  sink,
} from "../helpers/websocket-scenario.ts";

// koa-easy-ws is CommonJS whose module.exports is the function, but its types
// declare it as `default`: under NodeNext the default import is typed as the module.
const websocket = easyWs as unknown as typeof easyWs.default;

/** Waits for the first message after sending one: what the server's listener saw. */
async function firstReply(url: string, headers: Record<string, string>): Promise<[string, string]> {
  const { ws, greeting } = await open(url, headers);
  const reply = new Promise<string>((resolve) =>
    ws.once("message", (data) => resolve(String(data))),
  );
  ws.send("hello");
  const seen = JSON.parse(await reply) as { seen: string[] };
  await closeClient(ws);
  return [greeting, seen.seen[0] as string];
}

describe("contextMiddleware with koa-easy-ws", { timeout: 120_000 }, () => {
  const into = sink();
  const app = new Koa();
  app.use(contextMiddleware({ seed: (ctx) => seedUser(ctx.get("x-user")) }));
  app.use(websocket());
  app.use(async (_ctx, next) => {
    await randomDelay();
    stage.set(`hook:${user.get()}`);
    await next();
  });
  app.use(async (ctx) => {
    if (ctx.ws === undefined) return;
    const expected = expectedFor(ctx.req);
    const ws = await ctx.ws();
    // The workaround: listeners added from here on run in a copy of the handler's Context.
    serveSocket(ctx.path === "/unbound" ? ws : bindEmitter(ws), expected, into, true);
  });
  // Created inside a run with `leak` set: connections must not see it.
  const server = leak.run("the server's own Context", () => createServer(app.callback()));
  const served = serveWsForSuite(server);

  it("with bindEmitter(ws): 60 concurrent connections, handler, messages, pongs and closes see their own request", async () => {
    await expectConnections(served.base, "/ping", into, 60);
  });

  it("without it: the handler sees the request's values, a message listener the connection's", async () => {
    const [greeting, seen] = await firstReply(`${served.base}/unbound`, {
      "x-request-id": "easy-1",
      "x-user": "ann",
    });
    assert.equal(greeting, "easy-1|ann|hook:ann|unset");
    assert.equal(seen, "<none>|<none>|<none>|unset");
  });
});
