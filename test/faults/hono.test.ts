/**
 * Hono 4 on @hono/node-server: a fault at every stage (the integration's
 * seed, a middleware before and after `await next()`, the handler, a
 * malformed body read with `c.req.json()`, `app.onError` itself) reaches
 * `app.onError` in the failing request's own Context, and leaves nothing for
 * the next request on the same socket (helpers/fault-stages.ts).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { contextMiddleware } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { Hono } from "hono";
import {
  errorReport,
  expectStageFaults,
  maybeFail,
  peek,
  StageError,
  seedUser,
} from "../helpers/fault-stages.ts";
import { close, listen, send } from "../helpers/http.ts";

const seenByOnError: Record<string, string>[] = [];

function buildApp(): Hono {
  const app = new Hono();
  app.use(
    contextMiddleware({
      seed: (c) => {
        seedUser(c.req.header("x-user"));
        if (!c.req.path.startsWith("/seed/async")) void maybeFail(c.req.path, "seed");
      },
    }),
  );
  app.onError((error, c) => {
    seenByOnError.push(errorReport(error));
    if (c.req.path === "/error-handler/sync") throw new StageError("error-handler");
    if (error instanceof SyntaxError) {
      return c.json({ ...errorReport(error), error: "failed at body-parser" }, 400);
    }
    return c.json(errorReport(error), 500);
  });
  app.use(async (c, next) => {
    await maybeFail(c.req.path, "before-next");
    await next();
    await maybeFail(c.req.path, "after-next");
  });
  app.get("/peek", (c) => c.json(peek()));
  app.post("/body", async (c) => c.json({ body: await c.req.json() }));
  app.all("*", async (c) => {
    if (c.req.path.startsWith("/error-handler/")) throw new StageError("handler");
    await maybeFail(c.req.path, "handler");
    return c.json({ unexpected: c.req.path });
  });
  return app;
}

describe("hono: a fault at every stage", () => {
  const server = createServer(getRequestListener(buildApp().fetch));
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("a seed that throws: app.onError runs outside the request's Context (pinned)", () =>
    // Hono's compose catches what a middleware itself throws in its own
    // frame, which began before the request's run: no middleware can change that.
    expectStageFaults(base, [
      { stage: "seed", modes: ["sync"], reported: false, status: 500 },
    ]).then(() =>
      assert.deepEqual(seenByOnError.at(-1), {
        id: "<no request>",
        user: "<no user>",
        leak: "unset",
        error: "failed at seed",
      }),
    ));

  it("wrapped in withContext (contextvars/http): a seed's throw reaches app.onError in the request's Context", async () => {
    const wrapped = createServer(withContext(getRequestListener(buildApp().fetch)));
    const url = await listen(wrapped);
    try {
      await expectStageFaults(url, [{ stage: "seed", modes: ["sync"] }]);
    } finally {
      await close(wrapped);
    }
  });

  it("middleware before and after next(), handler", () =>
    expectStageFaults(base, [
      { stage: "before-next" },
      { stage: "after-next" },
      { stage: "handler" },
    ]));

  it("app.onError itself throws: it ran in the request's Context; the adapter answers 500; nothing leaks", async () => {
    seenByOnError.length = 0;
    await expectStageFaults(base, [{ stage: "error-handler", modes: ["sync"], reported: false }]);
    const inRequest = { id: "error-handler-sync", user: "user-error-handler-sync", leak: "unset" };
    const [first, second, ...outer] = seenByOnError;
    assert.deepEqual(first, { ...inRequest, error: "failed at handler" });
    // Pinned: Hono's compose hands onError's own throw to onError again at each
    // enclosing level; below contextMiddleware in the request's Context, above
    // it (and in Hono's dispatch) outside, as for a throwing seed.
    assert.deepEqual(second, { ...inRequest, error: "failed at error-handler" });
    assert.ok(outer.length > 0, "onError was called again above contextMiddleware");
    for (const seen of outer) {
      assert.deepEqual(seen, {
        id: "<no request>",
        user: "<no user>",
        leak: "unset",
        error: "failed at error-handler",
      });
    }
  });

  it("a malformed JSON body: c.req.json()'s error reaches app.onError in the request's Context", async () => {
    const reply = await send(base, "/body", {
      headers: {
        "content-type": "application/json",
        "x-request-id": "bad-json",
        "x-user": "poster",
      },
      body: '{"unterminated": ',
      chunks: 2,
    });
    assert.equal(reply.status, 400);
    assert.deepEqual(JSON.parse(reply.body), {
      id: "bad-json",
      user: "poster",
      leak: "unset",
      error: "failed at body-parser",
    });
  });
});
