/**
 * h3 2 (the server of Nitro and Nuxt), which has no integration of its own:
 * its node listener, `toNodeHandler(app)`, wrapped in `withContext`, as
 * docs/integrations.md#other-frameworks shows. The app's `onRequest` hook
 * sets a var, a middleware sets another after an await, and each must reach
 * the handler, `readBody`, a `ReadableStream` body pulled after the handler
 * returned, the `onResponse` and `onError` hooks, and nothing else.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { H3, readBody, toNodeHandler } from "h3";
import { close, listen, randomDelay, send } from "../helpers/http.ts";
import {
  asyncStage,
  expectBodyKeepsContext,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  finished,
  leak,
  observe,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
} from "../helpers/request-scenario.ts";

/** Set in the Context the server is made and listens in, and nowhere else. */
const where = new ContextVar<string>("h3.where");

function buildApp(): H3 {
  const app = new H3({
    silent: true, // h3 logs every unhandled throw; /throw and /reject are expected
    onRequest: (event) => seedUser(event.req.headers.get("x-user")),
    onResponse: () => recordFinish(),
    onError: () => Response.json({ id: requestId.get(), leak: leak.get("unset") }, { status: 500 }),
  });
  app.use(async (event, next) => {
    if (event.url.pathname === "/reject") await setThenReject();
    await asyncStage();
    return next();
  });
  app.get("/concurrent", () => observe());
  app.post("/body", async (event) => {
    const body = await readBody(event);
    return { id: requestId.get(), user: user.get(), stage: stage.get(), body };
  });
  app.get("/throw", () => setThenThrow());
  app.get("/reject", () => "not reached");
  app.get("/peek", () => ({ leak: leak.get("unset") }));
  app.get("/where", () => ({ where: where.get("unset") }));
  app.get("/stream", () => {
    // Pulled by the node adapter as it writes, after the handler returned.
    const chunks = streamChunks();
    const encoder = new TextEncoder();
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          await randomDelay(2);
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(next.value));
        },
      }),
    );
  });
  return app;
}

describe("h3 2 under withContext(toNodeHandler(app))", { timeout: 60_000 }, () => {
  const server = where.run("the server's own Context", () =>
    createServer(withContext(toNodeHandler(buildApp()))),
  );
  let base = "";
  before(async () => {
    base = await where.run("listen", () => listen(server));
  });
  after(() => close(server));

  it("1,000 concurrent requests: onRequest's and a middleware's sets reach the handler, each its own", () =>
    expectNoCrossTalk(base));
  it("readBody keeps the context (bodies sent in pieces)", () => expectBodyKeepsContext(base));
  it("onError sees the failed request's values; nothing leaks into the next request on the socket", () =>
    expectNothingLeaks(base));
  it("a ReadableStream body pulled after the handler returned, and onResponse, see the request's values", async () => {
    finished.length = 0;
    await expectStreaming(base);
  });
  it("each request runs in a copy of the root Context, not the server's", async () => {
    const reply = await send(base, "/where");
    assert.deepEqual(JSON.parse(reply.body), { where: "unset" });
  });
});
