/**
 * Fastify 5: a fault at every stage of the lifecycle (the plugin's seed,
 * onRequest, preParsing, preValidation, preHandler, the handler,
 * preSerialization, onSend, onResponse, the body parser on a malformed
 * body, the error handler itself) reaches the error handler (and the
 * onError hook) in the failing request's own Context, and leaves nothing
 * for the next request on the same socket (helpers/fault-stages.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { contextPlugin } from "contextvars/fastify";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import {
  errorReport,
  expectStageFaults,
  maybeFail,
  peek,
  StageError,
  seedUser,
} from "../helpers/fault-stages.ts";
import { close, listen, send } from "../helpers/http.ts";

type Done = (error?: Error) => void;

/** Runs maybeFail for `stage` and calls done as a callback-style hook does. */
function check(request: FastifyRequest, stage: string, done: Done): void {
  const failing = maybeFail(request.url, stage); // a sync throw: Fastify's hook runner catches it
  if (failing === undefined) done();
  else failing.then(() => done(), done);
}

const seenByOnError: Record<string, string>[] = [];
/** What the error handler saw, for every error it was given, answered or not. */
const seenByErrorHandler: Record<string, string>[] = [];

async function buildApp(): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(contextPlugin, {
    seed: (request) => {
      seedUser(request.headers["x-user"]);
      if (!request.url.startsWith("/seed/async")) void maybeFail(request.url, "seed");
    },
  });
  app.addHook("onRequest", (request, _reply, done) => check(request, "onRequest", done));
  app.addHook("preParsing", (request, _reply, _payload, done) =>
    check(request, "preParsing", done),
  );
  app.addHook("preValidation", (request, _reply, done) => check(request, "preValidation", done));
  app.addHook("preHandler", (request, _reply, done) => check(request, "preHandler", done));
  app.addHook("preSerialization", (request, _reply, _payload, done) =>
    check(request, "preSerialization", done),
  );
  app.addHook("onSend", (request, _reply, _payload, done) => check(request, "onSend", done));
  app.addHook("onResponse", (request, _reply, done) => check(request, "onResponse", done));
  app.addHook("onError", (request, _reply, error, done) => {
    if (request.url.startsWith("/handler/")) seenByOnError.push(errorReport(error));
    done();
  });
  app.setErrorHandler((error, request, reply) => {
    seenByErrorHandler.push(errorReport(error));
    if (request.url === "/error-handler/sync") throw new StageError("error-handler");
    const status =
      error instanceof StageError ? 500 : ((error as { statusCode?: number }).statusCode ?? 500);
    const report = errorReport(error);
    void reply
      .code(status)
      .send(status === 400 ? { ...report, error: "failed at body-parser" } : report);
  });
  app.get("/peek", async () => peek());
  app.route({
    method: ["GET", "POST"],
    url: "/*",
    handler: async (request) => {
      if (request.url.startsWith("/error-handler/")) throw new StageError("handler");
      await maybeFail(request.url, "handler");
      return { unexpected: request.url };
    },
  });
  return app;
}

describe("fastify: a fault at every stage", () => {
  let app: FastifyInstance;
  let base = "";
  before(async () => {
    app = await buildApp();
    await app.ready();
    base = await listen(app.server);
  });
  after(() => close(app.server));

  it("a seed that throws: the error handler runs in the request's Context", () =>
    // fastify.ts hands the throw to the hook's done(err) inside the request's
    // run; had it propagated, Fastify's hook runner would catch it outside.
    expectStageFaults(base, [{ stage: "seed", modes: ["sync"] }]));

  it("every hook before the handler, and the handler", async () => {
    await expectStageFaults(base, [
      { stage: "onRequest" },
      { stage: "preParsing" },
      { stage: "preValidation" },
      { stage: "preHandler" },
      { stage: "handler" },
    ]);
    assert.deepEqual(
      seenByOnError.map((seen) => seen.id),
      ["handler-sync", "handler-async"],
      "the onError hook ran in each request's Context",
    );
  });

  it("hooks after the handler: preSerialization, onSend (Fastify answers these itself, after the error handler ran in the request's Context)", async () => {
    seenByErrorHandler.length = 0;
    await expectStageFaults(base, [
      { stage: "preSerialization", reported: false },
      { stage: "onSend", reported: false },
    ]);
    const expected = ["preSerialization", "onSend"].flatMap((stage) =>
      ["sync", "async"].map((mode) => ({
        id: `${stage}-${mode}`,
        user: `user-${stage}-${mode}`,
        leak: `set at ${stage}`,
        error: `failed at ${stage}`,
      })),
    );
    assert.deepEqual(seenByErrorHandler, expected);
  });

  it("onResponse (the response is already sent): no error handler runs (Fastify logs it); nothing leaks", async () => {
    seenByErrorHandler.length = 0;
    await expectStageFaults(base, [{ stage: "onResponse", status: 200, reported: false }]);
    assert.deepEqual(seenByErrorHandler, []);
  });

  it("the error handler itself throws: it ran in the request's Context; Fastify answers; nothing leaks", async () => {
    seenByErrorHandler.length = 0;
    await expectStageFaults(base, [{ stage: "error-handler", modes: ["sync"], reported: false }]);
    assert.deepEqual(seenByErrorHandler, [
      {
        id: "error-handler-sync",
        user: "user-error-handler-sync",
        leak: "unset",
        error: "failed at handler",
      },
    ]);
  });

  it("a malformed JSON body: the parser's error reaches the error handler in the request's Context", async () => {
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
