/**
 * Koa 3: a fault at every stage (a middleware before and after
 * `await next()`, @koa/bodyparser on a malformed body, the handler) reaches
 * the error-handling middleware mounted below `contextMiddleware()` in the
 * failing request's own Context, and leaves nothing for the next request on
 * the same socket (helpers/fault-stages.ts). A seed that throws fails before
 * any middleware below it runs: Koa's own error handling answers, and the
 * app's "error" event is pinned here.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { bodyParser } from "@koa/bodyparser";
import { withContext } from "contextvars/http";
import { contextMiddleware } from "contextvars/koa";
import Koa from "koa";
import {
  errorReport,
  expectStageFaults,
  maybeFail,
  peek,
  StageError,
  seedUser,
} from "../helpers/fault-stages.ts";
import { close, listen, send } from "../helpers/http.ts";

const seenByErrorEvent: Record<string, string>[] = [];
const seenByErrorMiddleware: Record<string, string>[] = [];

function buildApp(): Koa {
  const app = new Koa();
  app.silent = true;
  app.on("error", (error: unknown) => seenByErrorEvent.push(errorReport(error)));
  app.use(
    contextMiddleware({
      seed: (ctx) => {
        seedUser(ctx.get("x-user") || undefined);
        if (!ctx.path.startsWith("/seed/async")) void maybeFail(ctx.path, "seed");
      },
    }),
  );
  // Below contextMiddleware: it runs in the request's Context.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      seenByErrorMiddleware.push(errorReport(error));
      if (ctx.path === "/error-handler/sync") throw new StageError("error-handler");
      const parser = error instanceof SyntaxError || (error as { status?: number }).status === 400;
      ctx.status = parser ? 400 : 500;
      ctx.body = parser
        ? { ...errorReport(error), error: "failed at body-parser" }
        : errorReport(error);
    }
  });
  app.use(async (ctx, next) => {
    await maybeFail(ctx.path, "before-next");
    await next();
    await maybeFail(ctx.path, "after-next");
  });
  app.use(bodyParser());
  app.use(async (ctx) => {
    if (ctx.path === "/peek") {
      ctx.body = peek();
      return;
    }
    if (ctx.path.startsWith("/error-handler/")) throw new StageError("handler");
    await maybeFail(ctx.path, "handler");
    ctx.body = { unexpected: ctx.path, body: ctx.request.body ?? null };
  });
  return app;
}

describe("koa: a fault at every stage", () => {
  const server = createServer(buildApp().callback());
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("middleware before and after next(), handler", () =>
    expectStageFaults(base, [
      { stage: "before-next" },
      { stage: "after-next" },
      { stage: "handler" },
    ]));

  it("the error middleware itself throws: it ran in the request's Context; Koa answers 500; nothing leaks", async () => {
    seenByErrorEvent.length = 0;
    seenByErrorMiddleware.length = 0;
    await expectStageFaults(base, [{ stage: "error-handler", modes: ["sync"], reported: false }]);
    assert.deepEqual(seenByErrorMiddleware, [
      {
        id: "error-handler-sync",
        user: "user-error-handler-sync",
        leak: "unset",
        error: "failed at handler",
      },
    ]);
    // Koa's "error" event is emitted from its own handler, outside the request's run.
    assert.deepEqual(seenByErrorEvent, [
      { id: "<no request>", user: "<no user>", leak: "unset", error: "failed at error-handler" },
    ]);
  });

  it('a seed that throws: Koa answers 500; its "error" event runs outside the request\'s Context (pinned)', async () => {
    seenByErrorEvent.length = 0;
    await expectStageFaults(base, [{ stage: "seed", modes: ["sync"], reported: false }]);
    assert.deepEqual(seenByErrorEvent, [
      { id: "<no request>", user: "<no user>", leak: "unset", error: "failed at seed" },
    ]);
  });

  it('wrapped in withContext (contextvars/http): the "error" event runs in the request\'s Context', async () => {
    const wrapped = createServer(withContext(buildApp().callback()));
    const url = await listen(wrapped);
    try {
      seenByErrorEvent.length = 0;
      await expectStageFaults(url, [{ stage: "seed", modes: ["sync"], reported: false }]);
      assert.deepEqual(seenByErrorEvent, [
        { id: "seed-sync", user: "user-seed-sync", leak: "set at seed", error: "failed at seed" },
      ]);
    } finally {
      await close(wrapped);
    }
  });

  it("a malformed JSON body: the parser's error reaches the error middleware in the request's Context", async () => {
    const reply = await send(base, "/body", {
      headers: {
        "content-type": "application/json",
        "x-request-id": "bad-json",
        "x-user": "poster",
      },
      body: '{"unterminated": ',
      chunks: 2,
    });
    assert.equal(reply.status, 400, reply.body);
    assert.deepEqual(JSON.parse(reply.body), {
      id: "bad-json",
      user: "poster",
      leak: "unset",
      error: "failed at body-parser",
    });
  });
});
