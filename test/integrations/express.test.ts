import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Context, ContextVar, type Token } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/express";
import { withContext } from "contextvars/http";
import express, { type NextFunction, type Request, type Response } from "express";
import {
  abortAfterFirstChunk,
  close,
  keepAliveAgent,
  listen,
  send,
  sendJson,
} from "../helpers/http.ts";
import { majorOf } from "../helpers/package-major.ts";
import { pinContext } from "../helpers/pin-context.ts";
import {
  asyncStage,
  expectBodyKeepsContext,
  expectDataListeners,
  expectGeneratedIds,
  expectIdHandling,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  leak,
  observe,
  pathGenerator,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
} from "../helpers/request-scenario.ts";

const seed = (req: Request) => seedUser(req.get("x-user"));

function buildApp(): express.Express {
  const app = express();
  app.use(contextMiddleware({ seed }));
  app.get("/concurrent", async (_req, _res, next) => {
    await asyncStage();
    next();
  });
  app.get("/concurrent", async (_req, res) => {
    res.json(await observe());
  });
  // Set before express.json(): the parser resumes from the socket's "end" event.
  app.post("/body", (_req, _res, next) => {
    stage.set(`mw:${user.get()}`);
    next();
  });
  app.post("/body", express.json({ limit: "1mb" }), (req, res) => {
    res.json({ id: requestId.get(), user: user.get(), stage: stage.get(), body: req.body });
  });
  app.post("/raw", (req, res) => {
    const events: string[] = [];
    const seen = () => events.push(`${requestId.get()}|${user.get()}`);
    req.on("data", seen);
    req.on("end", () => {
      seen();
      res.json({ events });
    });
  });
  app.get("/id", (_req, res) => {
    res.send(requestId.get());
  });
  app.get("/throw", setThenThrow);
  if (majorOf("express") >= 5) {
    // Express 5 hands a rejected handler's reason to the error handler itself.
    app.get("/reject", setThenReject);
  } else {
    // Express 4 ignores the promise: the failure goes to next(err), as its docs say.
    app.get("/reject", async (_req, _res, next) => {
      leak.set("set by /reject");
      await asyncStage();
      next(new Error("rejected"));
    });
  }
  app.get("/peek", (_req, res) => {
    res.json({ leak: leak.get("unset") });
  });
  app.get("/stream", async (_req, res) => {
    res.on("finish", recordFinish);
    res.type("text/plain");
    for await (const chunk of streamChunks()) res.write(chunk);
    res.end();
  });
  app.use((_error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ id: requestId.get(), leak: leak.get() });
  });
  return app;
}

/**
 * For a handler that never answers: `reached()` is its call to say it has
 * been reached (its listeners are added); `abortOnceReached` sends GET url
 * with the id, aborts once the handler is reached, and waits (up to 500 ms)
 * until `seen` has `count` entries from the listeners.
 */
function abortable(seen: readonly string[]): {
  reached: () => void;
  abortOnceReached: (url: string, id: string, count: number) => Promise<void>;
} {
  let reached!: () => void;
  const inHandler = new Promise<void>((resolve) => {
    reached = resolve;
  });
  return {
    reached,
    async abortOnceReached(url, id, count) {
      const req = request(url, { headers: { "x-request-id": id } });
      req.on("error", () => {});
      req.end();
      await inHandler;
      req.destroy();
      for (let i = 0; i < 100 && seen.length < count; i++) {
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

describe("contextvars/express contextMiddleware", { timeout: 60_000 }, () => {
  const server = createServer(buildApp());
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("1,000 concurrent requests each see only their own values", () => expectNoCrossTalk(base));
  it("a var set before express.json() is seen by the handler", () => expectBodyKeepsContext(base));
  it("req 'data'/'end' listeners see the request's values", () => expectDataListeners(base));
  it("a throw or rejection leaves nothing for the next request", () => expectNothingLeaks(base));
  it("a streamed response and res 'finish' keep the context", () => expectStreaming(base));
  it("malformed ids are replaced, well-formed ones pass", () => expectIdHandling(base));

  it("trustHeader: false, generateId(req): ids are generated from Express's req", async () => {
    const app = express();
    const generateId = pathGenerator((req: Request) => {
      assert.equal(typeof req.get, "function", "Express's req, not the bare IncomingMessage");
      return req.path;
    });
    app.use(contextMiddleware({ trustHeader: false, generateId }));
    app.get(["/id", "/bad", "/boom"], (_req, res) => {
      res.send(requestId.get());
    });
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).send(error.message);
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      await expectGeneratedIds(url);
    } finally {
      await close(own);
    }
  });

  for (const how of ["mounted twice", "under withContext"] as const) {
    it(`${how}: one Context per request`, async () => {
      const marker = new ContextVar<string>("marker");
      let token: Token<string> | undefined;
      const app = express();
      app.use(contextMiddleware({ seed }));
      app.use((_req, _res, next) => {
        token = marker.set("before the second mount");
        next();
      });
      app.use(contextMiddleware({ seed: () => stage.set("second seed") }));
      app.get("/", (_req, res) => {
        marker.reset(token as Token<string>); // throws if this is another Context
        res.json({ id: requestId.get(), user: user.get(), stage: stage.get() });
      });
      const listener = how === "under withContext" ? withContext(app) : app;
      const own = createServer(listener);
      const url = await listen(own);
      try {
        const reply = await send(url, "/", { headers: { "x-request-id": "r-1", "x-user": "bo" } });
        assert.equal(reply.status, 200, reply.body);
        assert.deepEqual(JSON.parse(reply.body), { id: "r-1", user: "bo", stage: "second seed" });
      } finally {
        await close(own);
      }
    });
  }

  it("an async seed fails its request with a TypeError the error handler sees, in the request, and nothing else answers", async () => {
    const own = express();
    let routed = 0;
    own.use(
      contextMiddleware({
        // @ts-expect-error an async seed does not compile; from JavaScript it fails the request
        seed: async () => {
          await null;
          throw new Error("token invalid");
        },
      }),
    );
    own.get("/", (_req, res) => {
      routed++;
      res.send("never");
    });
    // Answers after an await, as one that reports the error first does: until
    // then, neither a route nor Express's final handler may answer.
    own.use(async (error: Error, _req: Request, res: Response, _next: NextFunction) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      res.status(500).send(`${error.name} for ${requestId.get("<none>")}`);
    });
    const server = createServer(own);
    const url = await listen(server);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "s-9" } });
      assert.equal(reply.status, 500);
      assert.equal(reply.body, "TypeError for s-9");
      assert.equal(routed, 0);
    } finally {
      await close(server);
    }
  });

  it("mounted after a route that answered and called next(): runs, with no echo and no error", async () => {
    const app = express();
    const seen: string[] = [];
    const errors: unknown[] = [];
    app.get("/early", (_req, res, next) => {
      res.send("early");
      next();
    });
    app.use(contextMiddleware());
    app.use((_req, _res, next) => {
      seen.push(requestId.get());
      next();
    });
    app.use((error: unknown, _req: Request, _res: Response, next: NextFunction) => {
      errors.push(error);
      next(error);
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      const reply = await send(url, "/early", { headers: { "x-request-id": "late-1" } });
      assert.equal(reply.body, "early");
      assert.equal(reply.headers["x-request-id"], undefined);
      // The chain after the responder may still be running when the reply arrives.
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(seen, ["late-1"]);
      assert.deepEqual(errors, []);
    } finally {
      await close(own);
    }
  });

  it("a response made from the app's prototype outside any request (a test double) adds its listeners as EventEmitter does", async () => {
    const app = express();
    app.use(contextMiddleware());
    app.get("/", (_req, res) => {
      res.send(requestId.get());
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      // The first request patches app.response; the double inherits the patched adders.
      assert.equal((await send(url, "/", { headers: { "x-request-id": "d-1" } })).body, "d-1");
      const double = Object.create(app.response) as Response;
      const heard: string[] = [];
      double.on("finish", () => heard.push(requestId.get("<none>")));
      double.emit("finish");
      assert.deepEqual(heard, ["<none>"]);
    } finally {
      await close(own);
    }
  });

  it("a res 'close' listener runs in the request's Context when the client aborts", async () => {
    const seen: string[] = [];
    const { reached, abortOnceReached } = abortable(seen);
    const app = express();
    app.use(contextMiddleware());
    app.get("/hang", (_req, res) => {
      res.on("close", () => seen.push(requestId.get("<none>")));
      reached(); // never answers
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      await abortOnceReached(`${url}/hang`, "abort-1", 1);
      assert.deepEqual(seen, ["abort-1"]);
    } finally {
      await close(own);
    }
  });

  it("nested Router: an async router.param callback's set reaches the route, next('route') and the app's error handler after an await", async () => {
    const tenant = new ContextVar<string>("tenant");
    const app = express();
    app.use(contextMiddleware({ seed }));
    const items = express.Router();
    items.param("id", async (_req, _res, next, id: string) => {
      await asyncStage();
      tenant.set(`param:${id}`);
      next();
    });
    items.get("/:id", (req, res, next) => {
      if (req.params.id !== "7") {
        next("route");
        return;
      }
      res.json({ route: "first", id: requestId.get(), tenant: tenant.get() });
    });
    // next(err) rather than a throw: Express 4 (the matrix) ignores a rejected handler.
    items.get("/:id", async (req, res, next) => {
      await asyncStage();
      if (req.params.id === "fail") {
        next(new Error("failed in a nested router"));
        return;
      }
      res.json({ route: "second", id: requestId.get(), tenant: tenant.get() });
    });
    const api = express.Router();
    api.use("/items", items);
    app.use("/api", api);
    app.use((_error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      res
        .status(500)
        .json({ route: "error", id: requestId.get("<none>"), tenant: tenant.get("<none>") });
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      const cases = [
        ["7", 200, "first"],
        ["skip", 200, "second"],
        ["fail", 500, "error"],
      ] as const;
      for (const [id, status, route] of cases) {
        const reply = await send(url, `/api/items/${id}`, {
          headers: { "x-request-id": `p-${id}` },
        });
        assert.equal(reply.status, status, reply.body);
        assert.deepEqual(JSON.parse(reply.body), { route, id: `p-${id}`, tenant: `param:${id}` });
      }
    } finally {
      await close(own);
    }
  });

  it("a sub-app mounted with app.use sees the values set before it, also in its error handler and listeners", async () => {
    const tenant = new ContextVar<string>("tenant");
    const seen: string[] = [];
    const { reached, abortOnceReached } = abortable(seen);
    const app = express();
    app.use(contextMiddleware({ seed }));
    app.use(async (_req, _res, next) => {
      await asyncStage();
      tenant.set("set before the mount");
      next();
    });
    // No contextMiddleware of its own: on mount Express chains the sub-app's
    // req/res prototypes to the parent's, which carry the patched listener methods.
    const sub = express();
    sub.use((_req, _res, next) => {
      stage.set(`sub:${tenant.get()}`);
      next();
    });
    sub.get("/ok", async (_req, res) => {
      await asyncStage();
      res.json({ id: requestId.get(), tenant: tenant.get() });
    });
    sub.get("/fail", async (_req, _res, next) => {
      await null;
      next(new Error("failed in the sub-app"));
    });
    sub.get("/hang", (req, res) => {
      req.on("close", () => seen.push(`req ${requestId.get("<none>")} ${tenant.get("<none>")}`));
      res.on("close", () => seen.push(`res ${requestId.get("<none>")} ${tenant.get("<none>")}`));
      reached(); // never answers
    });
    sub.use((_error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ id: requestId.get("<none>"), stage: stage.get("<none>") });
    });
    app.use("/sub", sub);
    const own = createServer(app);
    const url = await listen(own);
    try {
      const ok = await send(url, "/sub/ok", { headers: { "x-request-id": "sub-1" } });
      assert.equal(ok.status, 200, ok.body);
      assert.deepEqual(JSON.parse(ok.body), { id: "sub-1", tenant: "set before the mount" });
      const failed = await send(url, "/sub/fail", { headers: { "x-request-id": "sub-2" } });
      assert.equal(failed.status, 500);
      assert.deepEqual(JSON.parse(failed.body), { id: "sub-2", stage: "sub:set before the mount" });
      await abortOnceReached(`${url}/sub/hang`, "sub-3", 2);
      assert.deepEqual(seen.sort(), [
        "req sub-3 set before the mount",
        "res sub-3 set before the mount",
      ]);
    } finally {
      await close(own);
    }
  });

  it("a sub-app mounted with app.use and its own contextMiddleware: listeners added to req/res run once, in the request's Context, and removeListener and unpipe remove them", async () => {
    const seen: string[] = [];
    const app = express();
    app.use(contextMiddleware({ seed }));
    // Its prototypes are chained to the app's on mount, which the app's own
    // middleware has patched by the time this one runs.
    const sub = express();
    sub.use(contextMiddleware({ seed: () => stage.set("sub seed") }));
    sub.post("/upload", (req, res) => {
      const removed = () => seen.push("removed data listener ran");
      req.on("data", removed);
      req.removeListener("data", removed);
      // A pipe undone before any data, as a parser that gives up on a body does.
      const sink = new PassThrough();
      let sunk = 0;
      sink.on("data", (chunk: Buffer) => {
        sunk += chunk.length;
      });
      req.pipe(sink);
      req.unpipe(sink);
      const finished = () => seen.push("removed finish listener ran");
      res.on("finish", finished);
      res.off("finish", finished);
      res.once("finish", () =>
        seen.push(`finish ${requestId.get("<none>")} ${stage.get("<none>")}`),
      );
      let received = 0;
      let chunks = 0;
      req.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (chunks++ === 0) seen.push(`data ${requestId.get("<none>")} ${stage.get("<none>")}`);
      });
      req.on("end", () => {
        res.json({
          received,
          sunk,
          data: req.listeners("data").length,
          finish: res.listeners("finish").includes(finished),
        });
      });
      req.resume(); // unpipe left the request paused
    });
    app.use("/sub", sub);
    const own = createServer(app);
    const url = await listen(own);
    try {
      const reply = await send(url, "/sub/upload", {
        headers: { "x-request-id": "sub-up", "content-type": "text/plain" },
        body: "z".repeat(100_000),
        chunks: 3,
      });
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.headers["x-request-id"], "sub-up");
      assert.deepEqual(JSON.parse(reply.body), {
        received: 100_000,
        sunk: 0,
        data: 1,
        finish: false,
      });
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(seen, ["data sub-up sub seed", "finish sub-up sub seed"]);
    } finally {
      await close(own);
    }
  });

  it("a sub-app reached through a Router, with its own mount: its req/res listeners run in the request's Context", async () => {
    const seen: string[] = [];
    const { reached, abortOnceReached } = abortable(seen);
    const app = express();
    app.use(contextMiddleware());
    // A Router emits no "mount": the sub-app's prototypes are not chained to
    // the app's, so its own contextMiddleware must patch them.
    const sub = express();
    sub.use(contextMiddleware({ seed: () => stage.set("sub seed") }));
    sub.get("/hang", (req, res) => {
      req.on("close", () => seen.push(`req ${requestId.get("<none>")} ${stage.get("<none>")}`));
      res.on("close", () => seen.push(`res ${requestId.get("<none>")} ${stage.get("<none>")}`));
      reached(); // never answers
    });
    const router = express.Router();
    router.use("/sub", sub);
    app.use(router);
    const own = createServer(app);
    const url = await listen(own);
    try {
      await abortOnceReached(`${url}/sub/hang`, "via-router", 2);
      assert.deepEqual(seen.sort(), ["req via-router sub seed", "res via-router sub seed"]);
    } finally {
      await close(own);
    }
  });

  it("res.sendFile and res.download callbacks (sent, ECONNABORTED, ENOENT), a piped file stream's listeners and an async app.param see the request's values", () =>
    // In a Context of its own, pinned: nothing the requests do may reach it.
    new Context().run(async () => {
      const pin = pinContext();
      const dir = await mkdtemp(join(tmpdir(), "contextvars-express-"));
      const small = join(dir, "small.txt");
      // Large enough that a client reading one chunk goes away before it is sent.
      const large = join(dir, "large.txt");
      await writeFile(small, "s".repeat(200_000));
      await writeFile(large, "l".repeat(16 << 20));
      /** Per request id (from the header, not the Context): "<where> <requestId> <stage> <code>". */
      const seen = new Map<string, Set<string>>();
      const note = (req: Request, where: string, error?: unknown) => {
        const id = String(req.get("x-request-id"));
        const code = (error as NodeJS.ErrnoException | undefined)?.code ?? "ok";
        // A client gone mid-file: Express says ECONNABORTED; on Deno a write to
        // the closed socket can fail first (EPIPE). Either is the same abort.
        const outcome = code === "ECONNABORTED" || code === "EPIPE" ? "gone" : code;
        const line = `${where} ${requestId.get("<none>")} ${stage.get("<none>")} ${outcome}`;
        seen.set(id, (seen.get(id) ?? new Set()).add(line));
      };
      const app = express();
      app.use(contextMiddleware({ seed }));
      app.param("file", async (_req, _res, next, file: string) => {
        await asyncStage();
        stage.set(`param:${file}:${user.get()}`);
        next();
      });
      app.get("/send/:file", (req, res) => {
        const path = join(dir, req.params.file as string);
        res.sendFile(path, (error) => {
          note(req, "sendFile", error);
          if (error !== undefined && !res.headersSent) res.status(404).end();
        });
      });
      app.get("/download/:file", (req, res) => {
        res.download(join(dir, req.params.file as string), "file.txt", (error) =>
          note(req, "download", error),
        );
      });
      app.get("/pipe/:file", (req, res) => {
        const file = createReadStream(join(dir, req.params.file as string));
        file.on("data", () => note(req, "data"));
        file.on("end", () => note(req, "end"));
        res.on("finish", () => note(req, "finish"));
        file.pipe(res);
      });
      const server = createServer(app);
      const url = await listen(server);
      const agent = keepAliveAgent(4);
      try {
        const paths = ["/send/small.txt", "/download/small.txt", "/pipe/small.txt"];
        const requests = paths.flatMap((path) =>
          Array.from({ length: 10 }, (_, i) => ({ path, i, id: `${path.split("/")[1]}-${i}` })),
        );
        await Promise.all(
          requests.map(async ({ path, i, id }) => {
            const headers = { "x-request-id": id, "x-user": `u${i}` };
            const reply = await send(url, path, { agent, headers });
            assert.equal(reply.status, 200, `${id}: ${reply.body}`);
            assert.equal(reply.body.length, 200_000);
          }),
        );
        const missing = await send(url, "/send/missing.txt", {
          headers: { "x-request-id": "missing-0", "x-user": "u0" },
        });
        assert.equal(missing.status, 404);
        const aborted = ["aborted-0", "aborted-1", "aborted-2"];
        await Promise.all(aborted.map((id) => abortAfterFirstChunk(`${url}/send/large.txt`, id)));
        const expected = new Map<string, string[]>([
          ["send", ["sendFile"]],
          ["download", ["download"]],
          ["pipe", ["data", "end", "finish"]],
          ["missing", ["sendFile"]],
          ["aborted", ["sendFile"]],
        ]);
        const codes: Record<string, string> = { missing: "ENOENT", aborted: "gone" };
        const ids = [...requests.map(({ id }) => id), "missing-0", ...aborted];
        // The callbacks of aborted sends run once the server sees the socket close.
        const complete = () => ids.every((id) => seen.has(id));
        for (let i = 0; i < 100 && !complete(); i++) await new Promise((r) => setTimeout(r, 10));
        for (const [id, lines] of seen) {
          const [kind = "", n = ""] = id.split("-");
          const file =
            kind === "missing" ? "missing.txt" : kind === "aborted" ? "large.txt" : "small.txt";
          // sendFile and download: the callback; pipe: every data event gives the same line.
          const want = (expected.get(kind) ?? []).map(
            (where) =>
              `${where} ${id} param:${file}:${kind === "aborted" ? "anonymous" : `u${n}`} ${codes[kind] ?? "ok"}`,
          );
          assert.deepEqual([...lines], want, id);
        }
        assert.deepEqual([...seen.keys()].sort(), ids.sort(), "every request was seen");
      } finally {
        agent.destroy();
        await close(server);
        await rm(dir, { recursive: true, force: true });
      }
      pin.check("after 34 requests");
    }));

  it("middleware mounted before it sets in the Context the server listens in: from the root, the next request inherits the value", async () => {
    const user = new ContextVar<string>("user");
    let token: Token<string> | undefined;
    const app = express();
    app.use((req, _res, next) => {
      const name = req.get("x-user");
      if (name === "reset" && token) user.reset(token);
      else if (name) token ??= user.set(name);
      next();
    });
    app.use(contextMiddleware());
    app.get("/", (_req, res) => {
      res.send(user.get("anonymous"));
    });
    const own = createServer(app);
    const url = await listen(own); // in the root Context, as a server started at a module's top level
    try {
      assert.equal((await send(url, "/", { headers: { "x-user": "alice" } })).body, "alice");
      assert.equal((await send(url, "/")).body, "alice", "an anonymous request inherits alice");
      assert.equal(user.get("unset"), "alice", "the set landed in the root Context");
    } finally {
      await send(url, "/", { headers: { "x-user": "reset" } });
      await close(own);
    }
    assert.equal(user.get("unset"), "unset");
  });

  it("echo: false and a custom header", async () => {
    const app = express();
    app.use(contextMiddleware({ echo: false, header: "X-Correlation-Id" }));
    app.get("/", (_req, res) => {
      res.send(requestId.get());
    });
    const own = createServer(app);
    const url = await listen(own);
    try {
      const reply = await send(url, "/", { headers: { "x-correlation-id": "c-9" } });
      assert.equal(reply.body, "c-9");
      assert.equal(reply.headers["x-correlation-id"], undefined);
      assert.deepEqual(await sendJson(base, "/peek"), { leak: "unset" });
    } finally {
      await close(own);
    }
  });
});
