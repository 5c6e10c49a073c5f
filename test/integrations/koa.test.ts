import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import { PassThrough, Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { runInNewContext } from "node:vm";
import { bodyParser } from "@koa/bodyparser";
import Router from "@koa/router";
import { bind, Context, ContextVar, type Token } from "contextvars";
import { withContext } from "contextvars/http";
import { contextMiddleware, requestId } from "contextvars/koa";
import Koa from "koa";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";
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
import { runtime } from "../runtimes/runtime.ts";

const seed = (ctx: Koa.Context) => seedUser(ctx.get("x-user") || undefined);

function buildApp(): Koa {
  const app = new Koa();
  app.silent = true;
  app.use(contextMiddleware({ seed }));
  // Error handling below the context middleware runs in the request's Context.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      ctx.status = 500;
      ctx.body = { id: requestId.get(), leak: leak.get() };
      ctx.app.emit("error", error, ctx);
    }
  });
  const router = new Router();
  router.get("/concurrent", async (_ctx, next) => {
    await asyncStage();
    await next();
  });
  router.get("/concurrent", async (ctx) => {
    ctx.body = await observe();
  });
  router.post("/body", async (_ctx, next) => {
    stage.set(`mw:${user.get()}`);
    await next();
  });
  router.post("/body", bodyParser({ jsonLimit: "1mb" }), (ctx) => {
    const body: unknown = ctx.request.body;
    ctx.body = { id: requestId.get(), user: user.get(), stage: stage.get(), body };
  });
  router.post("/raw", async (ctx) => {
    const events: string[] = [];
    const seen = () => events.push(`${requestId.get()}|${user.get()}`);
    await new Promise<void>((resolve) => {
      ctx.req.on("data", seen);
      ctx.req.on("end", () => {
        seen();
        resolve();
      });
    });
    ctx.body = { events };
  });
  router.get("/id", (ctx) => {
    ctx.body = requestId.get();
  });
  router.get("/throw", setThenThrow);
  router.get("/reject", setThenReject);
  router.get("/peek", (ctx) => {
    ctx.body = { leak: leak.get("unset") };
  });
  // Produced by a loop the handler starts, so it runs in the request's Context.
  router.get("/stream", (ctx) => {
    ctx.res.on("finish", recordFinish);
    const body = new PassThrough();
    void (async () => {
      for await (const chunk of streamChunks()) body.write(chunk);
      body.end();
    })();
    ctx.type = "text/plain";
    ctx.body = body;
  });
  // Produced lazily as Koa pipes it after the chain returns: the integration runs its pipe in the request.
  router.get("/lazy", (ctx) => {
    ctx.res.on("finish", recordFinish);
    ctx.type = "text/plain";
    ctx.body = Readable.from(streamChunks());
  });
  app.use(router.routes());
  return app;
}

const where = new ContextVar<string>("where");
const producedBy = new ContextVar<string>("producedBy");
/** A line of a lazy body read in the request (lazy-1, user lu), and one read where the server listens. */
const IN_REQUEST = "lazy-1|lu|<none>\n";
const OUTSIDE = "<none>|<none>|the server's Context\n";

/**
 * Serves one request whose body of three lines is produced as it is read,
 * from a Node stream (`Readable.from` of an async generator) or a web
 * ReadableStream (its first pull runs as it is made, in the handler; the
 * others as Koa's own wrapper stream reads it, after the chain), by a server
 * made and listening in a Context of its own where `where` is set; each line
 * sets `producedBy`. Returns the body and `producedBy` in the server's Context.
 */
async function serveLazyBody(
  kind: "node" | "web" | "web, pull bound",
  wrapped: boolean,
): Promise<{ body: string; landed: string }> {
  const line = (): string =>
    `${requestId.get("<none>")}|${user.get("<none>")}|${where.get("<none>")}\n`;
  const serverContext = new Context();
  const app = new Koa();
  app.use(contextMiddleware({ seed }));
  app.use((ctx) => {
    ctx.type = "text/plain";
    if (kind === "node") {
      async function* chunks(): AsyncGenerator<string> {
        for (let i = 0; i < 3; i++) {
          await randomDelay(2);
          producedBy.set(`body of ${requestId.get("<none>")}`);
          yield line();
        }
      }
      ctx.body = Readable.from(chunks());
    } else {
      let sent = 0;
      const pull = (controller: ReadableStreamDefaultController<Uint8Array>): void => {
        producedBy.set(`body of ${requestId.get("<none>")}`);
        controller.enqueue(new TextEncoder().encode(line()));
        if (++sent === 3) controller.close();
      };
      ctx.body = new ReadableStream<Uint8Array>({ pull: kind === "web" ? pull : bind(pull) });
    }
  });
  const listener = wrapped ? withContext(app.callback()) : app.callback();
  const server = serverContext.run(() => {
    where.set("the server's Context");
    return createServer(listener);
  });
  const url = await serverContext.run(() => listen(server));
  try {
    const reply = await send(url, "/", { headers: { "x-request-id": "lazy-1", "x-user": "lu" } });
    assert.equal(reply.headers["x-request-id"], "lazy-1");
    return { body: reply.body, landed: serverContext.run(() => producedBy.get("unset")) };
  } finally {
    await close(server);
  }
}

// Koa 3 streams a web ReadableStream body; Koa 2 serialises it as JSON.
const KOA_STREAMS_WEB_BODIES = majorOf("koa") >= 3;

async function expectWebBodyAsJson(): Promise<void> {
  assert.equal((await serveLazyBody("web", false)).body, "{}");
}

describe("contextvars/koa contextMiddleware", { timeout: 60_000 }, () => {
  const server = createServer(buildApp().callback());
  const wrapped = createServer(withContext(buildApp().callback()));
  let base = "";
  let wrappedBase = "";
  before(async () => {
    base = await listen(server);
    wrappedBase = await listen(wrapped);
  });
  after(() => Promise.all([close(server), close(wrapped)]));

  it("1,000 concurrent requests each see only their own values", () => expectNoCrossTalk(base));
  it("a var set before @koa/bodyparser is seen by the handler", () => expectBodyKeepsContext(base));
  it("req 'data'/'end' listeners see the request's values", () => expectDataListeners(base));
  it("a throw or rejection leaves nothing for the next request", () => expectNothingLeaks(base));
  it("a streamed body and res 'finish' keep the context", () => expectStreaming(base));
  it("malformed ids are replaced, well-formed ones pass", () => expectIdHandling(base));
  it("a lazily produced stream keeps the context, also under withContext", async () => {
    await expectStreaming(base, "/lazy");
    await expectStreaming(wrappedBase, "/lazy");
    await expectNoCrossTalk(wrappedBase, 200);
  });

  it("a lazily produced stream the socket cannot take at once is produced in the request's Context after each drain", async () => {
    const seen: string[] = [];
    let drains = 0;
    const app = new Koa();
    app.use(contextMiddleware({ seed }));
    app.use((ctx) => {
      ctx.res.on("drain", () => drains++);
      async function* chunks(): AsyncGenerator<Buffer> {
        for (let i = 0; i < 64; i++) {
          seen.push(`${requestId.get("<none>")}|${where.get("<none>")}`);
          yield Buffer.alloc(64 * 1024, "x");
        }
      }
      ctx.body = Readable.from(chunks());
    });
    const serverContext = new Context();
    const own = serverContext.run(() => {
      where.set("the server's Context");
      return createServer(app.callback());
    });
    const url = new URL(await serverContext.run(() => listen(own)));
    try {
      // A client that reads nothing for a while: the socket fills and the pipe waits for drain.
      const bytes = await new Promise<number>((resolve, reject) => {
        const req = request(url, { headers: { "x-request-id": "big-1" } }, (res) => {
          res.pause();
          setTimeout(() => {
            let count = 0;
            res.on("data", (chunk: Buffer) => {
              count += chunk.length;
            });
            res.on("end", () => resolve(count));
            res.resume();
          }, 200);
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(bytes, 64 * 64 * 1024);
      // Node's socket takes a few chunks at a time; another runtime may buffer the whole body.
      if (runtime === "node") assert.ok(drains > 0, "the response waited for drain");
      assert.deepEqual(new Set(seen), new Set(["big-1|<none>"]));
    } finally {
      await close(own);
    }
  });

  it("mounted twice: one Context per request, the second seed runs", async () => {
    const marker = new ContextVar<string>("marker");
    let token: Token<string> | undefined;
    const app = new Koa();
    app.use(contextMiddleware({ seed }));
    app.use(async (_ctx, next) => {
      await asyncStage();
      token = marker.set("before the second mount");
      await next();
    });
    app.use(contextMiddleware({ seed: () => stage.set(`second:${stage.get()}`) }));
    app.use((ctx) => {
      marker.reset(token as Token<string>); // throws if this is another Context
      ctx.body = { id: requestId.get(), user: user.get(), stage: stage.get() };
    });
    const own = createServer(app.callback());
    const url = await listen(own);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "k-1", "x-user": "kim" } });
      assert.equal(reply.status, 200, reply.body);
      assert.deepEqual(JSON.parse(reply.body), { id: "k-1", user: "kim", stage: "second:mw:kim" });
    } finally {
      await close(own);
    }
  });

  it("after await next(): a middleware below contextMiddleware sees what downstream set after its awaits; one above sees none of it (pinned)", () =>
    // In a Context of its own, pinned: nothing the requests do may reach it.
    new Context().run(async () => {
      const pin = pinContext();
      const checked = new ContextVar<string>("checked");
      const above: string[] = [];
      const app = new Koa();
      app.silent = true;
      // Mounted before the integration: its continuation after next() runs
      // where Koa called it, the Context the server listens in.
      app.use(async (_ctx, next) => {
        await next();
        above.push(`${requestId.get("<none>")} ${stage.get("<none>")} ${checked.get("<none>")}`);
      });
      app.use(contextMiddleware({ seed }));
      // koa-compose calls each middleware directly, as a coroutine awaits
      // another: downstream sets are seen here once next() settles.
      app.use(async (ctx, next) => {
        await next();
        await randomDelay();
        checked.set(`after next:${stage.get()}`);
        ctx.body = { id: requestId.get(), stage: stage.get(), checked: checked.get() };
      });
      app.use(async (_ctx, next) => {
        await asyncStage();
        await next();
      });
      app.use(async () => {
        await randomDelay();
        stage.set(`handler:${stage.get()}`);
      });
      const server = createServer(app.callback());
      const url = await listen(server);
      const agent = keepAliveAgent(4);
      try {
        const replies = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            send(url, "/", { agent, headers: { "x-request-id": `up-${i}`, "x-user": `u${i}` } }),
          ),
        );
        replies.forEach((reply, i) => {
          assert.equal(reply.status, 200, reply.body);
          assert.deepEqual(JSON.parse(reply.body), {
            id: `up-${i}`,
            stage: `handler:mw:u${i}`,
            checked: `after next:handler:mw:u${i}`,
          });
        });
        assert.deepEqual(above, Array(50).fill("<none> <none> <none>"));
      } finally {
        agent.destroy();
        await close(server);
      }
      pin.check("after 50 requests");
    }));

  it("a lazily produced Node stream body is read in the request's Context, wrapped or not, where its sets stay", async () => {
    for (const wrapped of [false, true]) {
      const { body, landed } = await serveLazyBody("node", wrapped);
      assert.equal(body, `${IN_REQUEST}${IN_REQUEST}${IN_REQUEST}`, `wrapped: ${wrapped}`);
      assert.equal(landed, "unset", `wrapped: ${wrapped}`);
    }
  });

  it("a web ReadableStream body: under withContext every pull sees the request and its sets stay there; without, the first, made in the handler, does", async () => {
    if (!KOA_STREAMS_WEB_BODIES) return expectWebBodyAsJson();
    const wrapped = await serveLazyBody("web", true);
    assert.equal(wrapped.body, `${IN_REQUEST}${IN_REQUEST}${IN_REQUEST}`);
    assert.equal(wrapped.landed, "unset");
    const bare = await serveLazyBody("web", false);
    assert.equal(bare.body.split("\n").length, 4, bare.body);
    assert.ok(bare.body.startsWith(IN_REQUEST), bare.body);
  });

  it("a web ReadableStream body whose pull is made with bind() in the handler: without withContext, every pull sees the request, and its sets stay there", async () => {
    if (!KOA_STREAMS_WEB_BODIES) return;
    const { body, landed } = await serveLazyBody("web, pull bound", false);
    assert.equal(body, `${IN_REQUEST}${IN_REQUEST}${IN_REQUEST}`);
    assert.equal(landed, "unset");
  });

  it("a web ReadableStream body without withContext: the pulls Koa's own stream makes see the Context the server listens in, where their sets land (pinned)", async () => {
    if (!KOA_STREAMS_WEB_BODIES) return expectWebBodyAsJson();
    const { body, landed } = await serveLazyBody("web", false);
    // Koa pipes the body from a promise callback registered before the
    // chain ran, outside the request's run: the set lands in the server's
    // Context, which no request copies (they copy the root), but which is
    // the root Context itself for a server started at the top level.
    assert.equal(body, `${IN_REQUEST}${OUTSIDE}${OUTSIDE}`);
    assert.equal(landed, "body of <none>");
  });

  it("a lazily produced Node stream body at the top level: 100 concurrent requests each read their own values, and nothing lands in the root Context", async () => {
    const setInBody = new ContextVar<string>("setInBody");
    const app = new Koa();
    app.use(contextMiddleware({ seed }));
    app.use((ctx) => {
      async function* chunks(): AsyncGenerator<string> {
        for (let i = 0; i < 3; i++) {
          await randomDelay(3);
          setInBody.set(requestId.get("<none>"));
          yield `${requestId.get("<none>")}|${user.get("<none>")}|${setInBody.get()}\n`;
        }
      }
      ctx.type = "text/plain";
      ctx.body = Readable.from(chunks());
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      const replies = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          send(url, "/", { headers: { "x-request-id": `lazy-${i}`, "x-user": `u${i}` } }),
        ),
      );
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.body, `lazy-${i}|u${i}|lazy-${i}\n`.repeat(3));
      }
      assert.equal(setInBody.get("unset"), "unset");
    } finally {
      await close(server);
    }
  });

  it("a body that is not a stream (one object shared by every request) is sent as JSON and left as it was", async () => {
    const shared = { service: "orders" };
    const app = new Koa();
    app.use(contextMiddleware());
    app.use((ctx) => {
      ctx.body = shared;
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      for (let i = 0; i < 2; i++) {
        const reply = await send(url, "/");
        assert.deepEqual(JSON.parse(reply.body), { service: "orders" });
      }
      assert.deepEqual(Object.keys(shared), ["service"]);
    } finally {
      await close(server);
    }
  });

  it("ctx.respond = false: a raw response written from req listeners after the chain returned keeps the context and the echoed id", async () => {
    const seen: string[] = [];
    let reached!: () => void;
    const listening = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const app = new Koa();
    app.silent = true;
    app.use(contextMiddleware({ seed }));
    app.use(async (_ctx, next) => {
      await asyncStage();
      await next();
    });
    app.use((ctx) => {
      ctx.respond = false;
      const values = () =>
        `${requestId.get("<none>")}|${user.get("<none>")}|${stage.get("<none>")}`;
      let received = "";
      ctx.req.setEncoding("utf8");
      ctx.req.on("data", (chunk: string) => {
        received += chunk;
      });
      // Runs from the socket when the rest of the body arrives, after the chain
      // has returned: Koa leaves the response to this listener.
      ctx.req.on("end", () => {
        ctx.res.on("finish", () => seen.push(`finish ${values()}`));
        ctx.res.statusCode = 200; // Koa's default 404 is left on res
        ctx.res.end(`${received} ${values()}`);
      });
      reached();
    });
    const own = createServer(app.callback());
    const url = await listen(own);
    try {
      const reply = new Promise<{ status: number; id: unknown; body: string }>(
        (resolve, reject) => {
          const req = request(
            `${url}/`,
            {
              method: "POST",
              headers: { "x-request-id": "raw-1", "x-user": "ray", "content-length": "10" },
            },
            (res) => {
              let body = "";
              res.setEncoding("utf8");
              res.on("data", (chunk: string) => {
                body += chunk;
              });
              res.on("end", () =>
                resolve({ status: res.statusCode ?? 0, id: res.headers["x-request-id"], body }),
              );
            },
          );
          req.on("error", reject);
          req.write("first");
          // The rest only once the handler has added its listeners.
          void listening.then(() => req.end("-last"));
        },
      );
      assert.deepEqual(await reply, {
        status: 200,
        id: "raw-1",
        body: "first-last raw-1|ray|mw:ray",
      });
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(seen, ["finish raw-1|ray|mw:ray"]);
    } finally {
      await close(own);
    }
  });

  it("trustHeader: false, generateId(ctx): ids are generated from Koa's ctx", async () => {
    const own = new Koa();
    own.silent = true;
    own.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        ctx.status = 500;
        ctx.body = (error as Error).message;
      }
    });
    own.use(
      contextMiddleware({ trustHeader: false, generateId: pathGenerator((ctx) => ctx.path) }),
    );
    own.use((ctx) => {
      ctx.body = requestId.get();
    });
    const server = createServer(own.callback());
    const url = await listen(server);
    try {
      await expectGeneratedIds(url);
    } finally {
      await close(server);
    }
  });

  it("echo: false; the id is echoed on Koa's own error responses, not on an error with read-only headers", async () => {
    const quiet = new Koa();
    quiet.silent = true;
    quiet.use(contextMiddleware({ echo: false }));
    quiet.use((ctx) => {
      ctx.body = requestId.get();
    });
    const loud = new Koa();
    loud.silent = true;
    loud.use(contextMiddleware({ header: "X-Correlation-Id" }));
    loud.use((ctx) => {
      if (ctx.path === "/read-only") {
        const error = Object.assign(new Error("read-only"), { status: 409 });
        throw Object.defineProperty(error, "headers", {
          value: { "x-extra": "2" },
          writable: false,
        });
      }
      throw Object.assign(new Error("teapot"), { status: 418, headers: { "x-extra": "1" } });
    });
    const servers = [createServer(quiet.callback()), createServer(loud.callback())];
    const [quietUrl = "", loudUrl = ""] = await Promise.all(servers.map((s) => listen(s)));
    try {
      const a = await send(quietUrl, "/", { headers: { "x-request-id": "q-1" } });
      assert.equal(a.body, "q-1");
      assert.equal(a.headers["x-request-id"], undefined);
      const b = await send(loudUrl, "/", { headers: { "x-correlation-id": "c-2" } });
      assert.equal(b.status, 418);
      assert.equal(b.headers["x-correlation-id"], "c-2");
      assert.equal(b.headers["x-extra"], "1");
      // An error whose headers cannot be replaced keeps them, without the id.
      const c = await send(loudUrl, "/read-only", { headers: { "x-correlation-id": "c-3" } });
      assert.equal(c.status, 409);
      assert.equal(c.headers["x-extra"], "2");
      assert.equal(c.headers["x-correlation-id"], undefined);
    } finally {
      await Promise.all(servers.map((s) => close(s)));
    }
  });
  it("the id is echoed when seed throws and when a handler throws what is not an Error", async () => {
    const seen: unknown[] = [];
    const failingSeed = new Koa();
    failingSeed.silent = true;
    failingSeed.use(
      contextMiddleware({
        seed: () => {
          throw new Error("seed failed");
        },
      }),
    );
    const throwsString = new Koa();
    throwsString.silent = true;
    throwsString.on("error", (error: unknown) => seen.push(error));
    throwsString.use(contextMiddleware());
    throwsString.use(() => {
      throw "oops";
    });
    const servers = [createServer(failingSeed.callback()), createServer(throwsString.callback())];
    const [seedUrl = "", stringUrl = ""] = await Promise.all(servers.map((s) => listen(s)));
    try {
      const a = await send(seedUrl, "/", { headers: { "x-request-id": "s-1" } });
      assert.equal(a.status, 500);
      assert.equal(a.headers["x-request-id"], "s-1");
      const b = await send(stringUrl, "/", { headers: { "x-request-id": "s-2" } });
      assert.equal(b.status, 500);
      assert.equal(b.headers["x-request-id"], "s-2");
      // The same Error Koa itself would have made of the string.
      assert.equal(seen.length, 1);
      assert.ok(seen[0] instanceof Error);
      assert.equal((seen[0] as Error).message, 'non-error thrown: "oops"');
    } finally {
      await Promise.all(servers.map((s) => close(s)));
    }
  });

  it("an Error a middleware before contextMiddleware throws in place of the handler's carries the id: it is the one Koa answers with", async () => {
    const app = new Koa();
    app.silent = true;
    // Mounted first, as an error-wrapping middleware often is: Koa's onerror gets its Error.
    app.use(async (_ctx, next) => {
      try {
        await next();
      } catch (error) {
        throw Object.assign(new Error("wrapped", { cause: error }), { status: 502 });
      }
    });
    app.use(contextMiddleware());
    app.use(() => {
      throw new Error("handler failed");
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "w-1" } });
      assert.equal(reply.status, 502);
      assert.equal(reply.headers["x-request-id"], "w-1");
    } finally {
      await close(server);
    }
  });

  it("a thrown value JSON cannot write (a BigInt, an object whose toJSON throws) still becomes an Error that names it and carries the id", async () => {
    // Koa's own conversion, format("non-error thrown: %j"), throws on these.
    const seen: unknown[] = [];
    const app = new Koa();
    app.silent = true;
    app.on("error", (error: unknown) => seen.push(error));
    app.use(contextMiddleware());
    app.use((ctx) => {
      if (ctx.path === "/bigint") throw 10n;
      if (ctx.path === "/circular") {
        // JSON.stringify throws on it; Koa's %j writes it as [Circular].
        const loop: Record<string, unknown> = {};
        loop.self = loop;
        throw loop;
      }
      throw {
        toJSON() {
          throw new Error("unserialisable");
        },
      };
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      for (const [path, id] of [
        ["/bigint", "big-1"],
        ["/to-json", "json-1"],
        ["/circular", "loop-1"],
      ] as const) {
        const reply = await send(url, path, { headers: { "x-request-id": id } });
        assert.equal(reply.status, 500);
        assert.equal(reply.headers["x-request-id"], id);
      }
      // What the app's "error" listeners get: an Error naming the value (Node's
      // util.inspect: `10n`, `{ toJSON: [Function: toJSON] }`), not the TypeError of %j.
      assert.equal(seen.length, 3);
      assert.ok(seen.every((error) => error instanceof Error));
      const [big, json, loop] = seen.map((error) => (error as Error).message);
      assert.match(big ?? "", /^non-error thrown: 10n?$/);
      assert.match(json ?? "", /^non-error thrown: \{.*toJSON.*\}$/s);
      assert.equal(loop, "non-error thrown: [Circular]", "what Koa itself writes");
    } finally {
      await close(server);
    }
  });

  it("an app whose ctx.onerror cannot be replaced (read-only on app.context) still gets the id on an error response", async () => {
    const app = new Koa();
    app.silent = true;
    const { onerror } = app.context;
    Object.defineProperty(app.context, "onerror", { value: onerror, writable: false });
    app.use(contextMiddleware());
    app.use(() => {
      throw new Error("boom");
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "read-only-1" } });
      assert.equal(reply.status, 500);
      assert.equal(reply.headers["x-request-id"], "read-only-1");
    } finally {
      await close(server);
    }
  });

  it("echo: false; a throw from seed still reaches Koa's error handling, with no id on the response", async () => {
    const seen: unknown[] = [];
    const app = new Koa();
    app.silent = true;
    app.on("error", (error: unknown) => seen.push(error));
    const failure = new Error("seed failed");
    app.use(
      contextMiddleware({
        echo: false,
        seed: () => {
          throw failure;
        },
      }),
    );
    app.use((ctx) => {
      ctx.body = "not reached";
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      const res = await send(url, "/", { headers: { "x-request-id": "s-3" } });
      assert.equal(res.status, 500);
      assert.equal(res.headers["x-request-id"], undefined);
      assert.deepEqual(seen, [failure]);
      assert.equal((failure as { headers?: unknown }).headers, undefined);
    } finally {
      await close(server);
    }
  });

  it('ctx.throw: app "error" listeners run outside the request unless the server is wrapped, and the error carries the id in err.headers either way (pinned)', async () => {
    for (const wrapped of [false, true]) {
      const seen: string[] = [];
      const app = new Koa();
      app.on("error", (error: { headers?: Record<string, string> }) => {
        const carried = error.headers?.["x-request-id"] ?? "none";
        seen.push(`${requestId.get("<none>")} ${user.get("<none>")} carried ${carried}`);
      });
      app.use(contextMiddleware({ seed }));
      app.use(async (ctx) => {
        await asyncStage();
        ctx.throw(403, "not yours");
      });
      const server = createServer(wrapped ? withContext(app.callback()) : app.callback());
      const url = await listen(server);
      try {
        const reply = await send(url, "/", {
          headers: { "x-request-id": "thrown-1", "x-user": "t" },
        });
        assert.equal(reply.status, 403);
        assert.equal(reply.body, "not yours");
        assert.equal(reply.headers["x-request-id"], "thrown-1");
        const where = wrapped ? "thrown-1 t" : "<none> <none>";
        assert.deepEqual(seen, [`${where} carried thrown-1`]);
      } finally {
        await close(server);
      }
    }
  });

  it("an Error from another realm keeps its status and message, with the id echoed", async () => {
    const app = new Koa();
    app.silent = true;
    app.use(contextMiddleware());
    app.use(() => {
      throw runInNewContext("Object.assign(new Error('teapot'), { status: 418, expose: true })");
    });
    const own = createServer(app.callback());
    const url = await listen(own);
    try {
      const reply = await send(url, "/", { headers: { "x-request-id": "realm-1" } });
      assert.equal(reply.status, 418);
      assert.equal(reply.body, "teapot");
      assert.equal(reply.headers["x-request-id"], "realm-1");
    } finally {
      await close(own);
    }
  });

  it("one Error object thrown by requests that fail in the same tick: each response, and each app error listener, gets its own request's id", async () => {
    // A module-level error, thrown as requests resume from one batch (a data loader's).
    const forbidden = Object.assign(new Error("forbidden"), { status: 403, expose: true });
    const carried: string[] = [];
    let release = (): void => {};
    const batch = new Promise<void>((resolve) => {
      release = resolve;
    });
    let waiting = 0;
    const app = new Koa();
    app.on("error", (error: { headers?: Record<string, string> }) => {
      carried.push(error.headers?.["x-request-id"] ?? "none");
    });
    app.use(contextMiddleware());
    app.use(async () => {
      if (++waiting === 2) release();
      await batch;
      throw forbidden;
    });
    const server = createServer(app.callback());
    const url = await listen(server);
    try {
      const replies = await Promise.all(
        ["shared-a", "shared-b"].map((id) => send(url, "/", { headers: { "x-request-id": id } })),
      );
      assert.deepEqual(
        replies.map((reply) => `${reply.status} ${reply.headers["x-request-id"]}`),
        ["403 shared-a", "403 shared-b"],
      );
      assert.deepEqual(carried.sort(), ["shared-a", "shared-b"]);
    } finally {
      await close(server);
    }
  });
});
