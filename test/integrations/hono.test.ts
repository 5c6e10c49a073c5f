import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import { ContextVar, type Token } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/hono";
import { withContext } from "contextvars/http";
import { Hono, type Context as HonoContext } from "hono";
import { stream } from "hono/streaming";
import { abortAfterFirstChunk, close, listen, randomDelay, send } from "../helpers/http.ts";
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

type NodeEnv = { Bindings: HttpBindings };

function buildApp(): Hono<NodeEnv> {
  const app = new Hono<NodeEnv>();
  app.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
  app.onError((_error, c) => c.json({ id: requestId.get(), leak: leak.get() }, 500));
  app.use("/concurrent", async (_c, next) => {
    await asyncStage();
    await next();
  });
  app.get("/concurrent", async (c) => c.json(await observe()));
  app.use("/body", async (_c, next) => {
    stage.set(`mw:${user.get()}`);
    await next();
  });
  app.post("/body", async (c) => {
    const body: unknown = await c.req.json();
    return c.json({ id: requestId.get(), user: user.get(), stage: stage.get(), body });
  });
  // Node's own request, as a Hono app on node-server can reach it.
  app.post("/raw", async (c) => {
    const events: string[] = [];
    const seen = () => events.push(`${requestId.get()}|${user.get()}`);
    await new Promise<void>((resolve) => {
      c.env.incoming.on("data", seen);
      c.env.incoming.on("end", () => {
        seen();
        resolve();
      });
    });
    return c.json({ events });
  });
  app.get("/id", (c) => c.text(requestId.get()));
  app.get("/throw", setThenThrow);
  app.use("/reject", setThenReject);
  app.get("/peek", (c) => c.json({ leak: leak.get("unset") }));
  app.get("/stream", (c) => {
    c.env.outgoing.on("finish", recordFinish);
    c.header("content-type", "text/plain");
    return stream(c, async (out) => {
      for await (const chunk of streamChunks()) await out.write(chunk);
    });
  });
  // Writes until the client goes away; then says what its onAbort callback read.
  app.get("/abortable", (c) => {
    const id = requestId.get();
    let report = (_seen: string) => {};
    abortSeen.set(id, new Promise<string>((resolve) => (report = resolve)));
    signalSeen.set(
      id,
      new Promise<string>((resolve) =>
        c.req.raw.signal.addEventListener("abort", () => resolve(requestId.get("<none>"))),
      ),
    );
    return stream(c, async (out) => {
      let onAbort = "(not called)";
      out.onAbort(() => {
        onAbort = requestId.get("<none>");
      });
      for (let i = 0; i < 1000 && !out.aborted; i++) {
        await out.write("x".repeat(64));
        await out.sleep(2);
      }
      report(onAbort);
    });
  });
  return app;
}

/** What /abortable's onAbort callback read, by request id. */
const abortSeen = new Map<string, Promise<string>>();
/** What an abort listener on /abortable's c.req.raw.signal read, by request id. */
const signalSeen = new Map<string, Promise<string>>();

describe("contextvars/hono contextMiddleware", { timeout: 60_000 }, () => {
  const app = buildApp();
  const server = createServer(getRequestListener(app.fetch));
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("1,000 concurrent requests each see only their own values", () => expectNoCrossTalk(base));
  it("a var set before c.req.json() is seen by the handler", () => expectBodyKeepsContext(base));
  it("c.env.incoming 'data'/'end' listeners see the request's values", () =>
    expectDataListeners(base));
  it("a throw or rejection leaves nothing for the next request", () => expectNothingLeaks(base));
  it("a streamed response and res 'finish' keep the context", () => expectStreaming(base));
  // On node-server the abort comes from Node's response, whose listeners the
  // middleware binds (on the fetch path it does not: hono-native.test.ts).
  it("a stream's onAbort and a c.req.raw.signal abort listener, called when the client goes away, run in the request's Context", async () => {
    const ids = ["abort-1", "abort-2", "abort-3"];
    await Promise.all(ids.map((id) => abortAfterFirstChunk(`${base}/abortable`, id)));
    for (const id of ids) assert.equal(await abortSeen.get(id), id);
    for (const id of ids) assert.equal(await signalSeen.get(id), id);
  });
  it("malformed ids are replaced, well-formed ones pass", () => expectIdHandling(base));

  it("without node-server (app.request): own values, id echoed through Hono's headers", async () => {
    const plain = new Hono();
    plain.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
    plain.use(async (_c, next) => {
      await asyncStage();
      await next();
    });
    plain.get("/", async (c) => c.json(await observe()));
    plain.get("/boom", () => {
      throw new Error("boom");
    });
    const replies = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const headers = { "x-request-id": `fetch-${i}`, "x-user": `f${i}` };
        const response = await plain.request("/", { headers });
        return { echoed: response.headers.get("x-request-id"), body: await response.json() };
      }),
    );
    replies.forEach(({ echoed, body }, i) => {
      const own = { id: `fetch-${i}`, user: `f${i}`, stage: `mw:f${i}` };
      assert.equal(echoed, `fetch-${i}`);
      assert.deepEqual(body, { ...own, deep: own });
    });
    const failed = await plain.request("/boom", { headers: { "x-request-id": "b-1" } });
    assert.equal(failed.status, 500);
    assert.equal(failed.headers.get("x-request-id"), "b-1");
    const fresh = await plain.request("/boom", { headers: { "x-request-id": "bad id" } });
    assert.match(fresh.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  });

  it("without node-server: the id is echoed on a Response the handler builds itself", async () => {
    const plain = new Hono();
    plain.use(contextMiddleware());
    plain.get("/raw", () => new Response(requestId.get()));
    plain.get("/redirect", () => Response.redirect("http://127.0.0.1/elsewhere", 302));
    plain.get("/own-id", () => new Response("x", { headers: { "x-request-id": "the handler's" } }));
    plain.get("/quiet", () => new Response("x"));
    plain.get("/network-error", () => Response.error());
    const raw = await plain.request("/raw", { headers: { "x-request-id": "r-1" } });
    assert.equal(raw.headers.get("x-request-id"), "r-1");
    assert.equal(await raw.text(), "r-1");
    // Response.redirect's headers are immutable: Hono copies the response to add one.
    const redirect = await plain.request("/redirect", { headers: { "x-request-id": "r-2" } });
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get("x-request-id"), "r-2");
    const own = await plain.request("/own-id", { headers: { "x-request-id": "r-3" } });
    assert.equal(own.headers.get("x-request-id"), "the handler's");
    // A status no Response can be made with (0 here; 101 for a WebSocket
    // upgrade on Deno or Workers) is passed through, not turned into a 500.
    const failed = await plain.request("/network-error", { headers: { "x-request-id": "r-5" } });
    assert.equal(failed.status, 0);
    assert.equal(failed.type, "error");
    const quiet = new Hono();
    quiet.use(contextMiddleware({ echo: false }));
    quiet.get("/", () => new Response("x"));
    const none = await quiet.request("/", { headers: { "x-request-id": "r-4" } });
    assert.equal(none.headers.get("x-request-id"), null);
  });

  it("without node-server: a later middleware sees the echoed id on c.res after next()", async () => {
    let seen: string | null = null;
    const plain = new Hono();
    plain.use(contextMiddleware());
    plain.use(async (c, next) => {
      await next();
      seen = c.res.headers.get("x-request-id");
    });
    plain.get("/", (c) => c.text("ok"));
    await plain.request("/", { headers: { "x-request-id": "after-next" } });
    assert.equal(seen, "after-next");
  });

  it("without node-server, mounted twice: values set between the mounts and by the second's seed reach the handler", async () => {
    const marker = new ContextVar<string>("marker");
    const plain = new Hono();
    plain.use(contextMiddleware());
    plain.use(async (_c, next) => {
      marker.set("set between the mounts");
      await next();
    });
    plain.use(contextMiddleware({ seed: () => stage.set("second seed") }));
    plain.get("/", (c) => c.text(`${marker.get("lost")}, ${stage.get("lost")}`));
    const response = await plain.request("/");
    assert.equal(await response.text(), "set between the mounts, second seed");
  });

  it("without node-server: one Request passed to app.request() twice is two requests, each with its own Context and id", async () => {
    const marker = new ContextVar<string>("marker");
    const plain = new Hono();
    plain.use(contextMiddleware());
    plain.get("/", async (c) => {
      const before = marker.get("unset");
      marker.set(`set by ${c.req.header("x-user") ?? "?"}`);
      await randomDelay();
      return c.json({ id: requestId.get(), before });
    });
    const request = new Request("http://localhost/");
    const first = await plain.request(request);
    const second = await plain.request(request);
    const [one, two] = [await first.json(), await second.json()];
    assert.equal(one.before, "unset");
    assert.equal(two.before, "unset");
    assert.notEqual(two.id, one.id);
    assert.equal(first.headers.get("x-request-id"), one.id);
    assert.equal(second.headers.get("x-request-id"), two.id);
    // Also after a request whose seed threw.
    let seeds = 0;
    const failing = new Hono();
    failing.use(
      contextMiddleware({
        seed: () => {
          if (seeds++ === 0) throw new Error("seed failed");
        },
      }),
    );
    failing.onError((error, c) => c.text(error.message, 500));
    failing.get("/", (c) => c.text(requestId.get()));
    const again = new Request("http://localhost/");
    const failed = await failing.request(again);
    assert.equal(failed.status, 500);
    assert.equal(await failed.text(), "seed failed", "the seed's own error reaches onError");
    const retried = await failing.request(again);
    const retriedId = await retried.text();
    assert.notEqual(retriedId, failed.headers.get("x-request-id"));
    assert.equal(retried.headers.get("x-request-id"), retriedId);
    // And after one whose handler threw a value that is not an Error, which
    // Hono hands to no error handler: app.request() rejects with it.
    const ids: string[] = [];
    const rejecting = new Hono();
    rejecting.use(contextMiddleware());
    rejecting.get("/", (c) => {
      ids.push(requestId.get());
      if (ids.length === 1) throw "not an Error";
      return c.text(requestId.get());
    });
    const reused = new Request("http://localhost/");
    await assert.rejects(
      async () => rejecting.request(reused),
      (thrown) => thrown === "not an Error",
    );
    await rejecting.request(reused);
    assert.equal(ids.length, 2);
    assert.notEqual(ids[1], ids[0]);
  });

  it("without node-server: a 101 response is passed through as it is, not copied", async () => {
    const plain = new Hono();
    plain.use(contextMiddleware());
    plain.get("/ws", () => {
      // As upgradeWebSocket answers on Deno or Workers; Node's Response cannot be made with 101.
      const upgrade = new Response(null);
      Object.defineProperty(upgrade, "status", { value: 101 });
      return upgrade;
    });
    const response = await plain.request("/ws");
    assert.equal(response.status, 101);
  });

  for (const how of ["mounted twice", "under withContext"] as const) {
    it(`${how}: one Context per request`, async () => {
      const marker = new ContextVar<string>("marker");
      let token: Token<string> | undefined;
      const own = new Hono();
      own.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
      own.use(async (_c, next) => {
        await randomDelay();
        token = marker.set("before the second mount");
        await next();
      });
      own.use(contextMiddleware({ seed: () => stage.set("second seed") }));
      own.get("/", (c) => {
        marker.reset(token as Token<string>); // throws if this is another Context
        return c.json({ id: requestId.get(), user: user.get(), stage: stage.get() });
      });
      const listener = getRequestListener(own.fetch);
      const ownServer = createServer(
        how === "under withContext" ? withContext(listener) : listener,
      );
      const url = await listen(ownServer);
      try {
        const reply = await send(url, "/", { headers: { "x-request-id": "h-1", "x-user": "hal" } });
        assert.equal(reply.status, 200, reply.body);
        assert.equal(reply.headers["x-request-id"], "h-1");
        assert.deepEqual(JSON.parse(reply.body), { id: "h-1", user: "hal", stage: "second seed" });
      } finally {
        await close(ownServer);
      }
    });
  }

  it("trustHeader: false, generateId(c): ids are generated from Hono's c, on node-server and on fetch", async () => {
    const own = new Hono();
    const generateId = pathGenerator((c: HonoContext) => c.req.path);
    own.use(contextMiddleware({ trustHeader: false, generateId }));
    own.get("/id", (c) => c.text(requestId.get()));
    own.get("/bad", (c) => c.text(requestId.get()));
    own.get("/boom", (c) => c.text(requestId.get()));
    own.onError((error, c) => c.text(error.message, 500));
    // The second server hands Hono no env: the middleware takes its fetch path.
    const servers = [
      createServer(getRequestListener(own.fetch)),
      createServer(getRequestListener((request) => own.fetch(request))),
    ];
    const urls = await Promise.all(servers.map((s) => listen(s)));
    try {
      for (const url of urls) await expectGeneratedIds(url);
    } finally {
      await Promise.all(servers.map((s) => close(s)));
    }
  });

  it("middleware mounted before it sets in the Context the server listens in: from the root, the next request inherits the value", async () => {
    const who = new ContextVar<string>("who");
    let token: Token<string> | undefined;
    const own = new Hono<NodeEnv>();
    own.use(async (c, next) => {
      const name = c.req.header("x-user");
      if (name === "reset" && token) who.reset(token);
      else if (name) token ??= who.set(name);
      await next();
    });
    own.use(contextMiddleware());
    own.get("/", (c) => c.text(who.get("anonymous")));
    const server = createServer(getRequestListener(own.fetch));
    const url = await listen(server); // in the root Context, as a server started at a module's top level
    try {
      assert.equal((await send(url, "/", { headers: { "x-user": "alice" } })).body, "alice");
      assert.equal((await send(url, "/")).body, "alice", "an anonymous request inherits alice");
      assert.equal(who.get("unset"), "alice", "the set landed in the root Context");
    } finally {
      await send(url, "/", { headers: { "x-user": "reset" } });
      await close(server);
    }
    assert.equal(who.get("unset"), "unset");
  });

  it("echo: false and a custom header", async () => {
    const own = new Hono();
    own.use(contextMiddleware({ echo: false, header: "X-Correlation-Id" }));
    own.get("/", (c) => c.text(requestId.get()));
    const response = await own.request("/", { headers: { "x-correlation-id": "c-4" } });
    assert.equal(await response.text(), "c-4");
    assert.equal(response.headers.get("x-correlation-id"), null);
    assert.throws(() => contextMiddleware({ header: "" }), TypeError);
  });
});
