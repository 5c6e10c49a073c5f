/**
 * Express 5: a fault at every stage of the pipeline (the integration's
 * seed, a middleware before and after express.json(), the body parser on a
 * malformed body, the route handler, the error handler itself) reaches the
 * error handler in the failing request's own Context, and leaves nothing
 * for the next request on the same socket (helpers/fault-stages.ts).
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { contextMiddleware, requestId } from "contextvars/express";
import express, { type NextFunction, type Request, type Response } from "express";
import {
  errorReport,
  expectStageFaults,
  maybeFail,
  peek,
  StageError,
  seedUser,
} from "../helpers/fault-stages.ts";
import { close, listen, send } from "../helpers/http.ts";

/** Middleware that fails at `stage` when the path asks for it. */
function stage(name: string) {
  return (req: Request, _res: Response, next: NextFunction): void | Promise<void> => {
    const failing = maybeFail(req.path, name);
    if (failing === undefined) return next();
    return failing.then(next); // Express 5 passes a rejected promise to next(err)
  };
}

const seenByFailingErrorHandler: Record<string, string>[] = [];

function buildApp() {
  const app = express();
  app.set("env", "test"); // Express's final handler logs errors outside "test"
  app.use(
    contextMiddleware({
      seed: (req) => {
        seedUser(req.get("x-user"));
        void maybeFail(req.path.replace("/seed/async", "/no"), "seed"); // a seed is synchronous
      },
    }),
  );
  app.use(stage("before-parser"));
  app.use(express.json());
  app.use(stage("after-parser"));
  app.get("/peek", (_req, res) => {
    res.json(peek());
  });
  app.all("/{*path}", stage("handler"), (req, res) => {
    if (req.path.startsWith("/error-handler/")) throw new StageError("handler");
    res.json({ unexpected: req.path });
  });
  // Four parameters: how Express tells an error handler from a middleware.
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (req.path === "/error-handler/sync") {
      seenByFailingErrorHandler.push(errorReport(error));
      throw new StageError("error-handler"); // Express's final handler answers
    }
    if (error instanceof SyntaxError)
      return res.status(400).json({ ...errorReport(error), error: "failed at body-parser" });
    res.status(500).json(errorReport(error));
  });
  return app;
}

describe("express: a fault at every stage", () => {
  const server = createServer(buildApp());
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("a seed that throws: the error handler runs in the request's Context", () =>
    // express.ts calls next(err) inside the request's run; had the throw
    // propagated, Express's router would call next(err) outside it.
    expectStageFaults(base, [{ stage: "seed", modes: ["sync"] }]));

  it("middleware before and after express.json(), handler", () =>
    expectStageFaults(base, [
      { stage: "before-parser" },
      { stage: "after-parser" },
      { stage: "handler" },
    ]));

  it("the error handler itself throws: Express's final handler answers; nothing leaks", async () => {
    await expectStageFaults(base, [{ stage: "error-handler", modes: ["sync"], reported: false }]);
    assert.deepEqual(seenByFailingErrorHandler, [
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
    assert.equal(requestId.get("outside"), "outside");
  });
});
