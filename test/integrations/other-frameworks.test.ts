/**
 * Frameworks with no integration of their own, whose node listener goes in
 * `withContext` as docs/integrations.md#other-frameworks shows: itty-router
 * on @whatwg-node/server's `createServerAdapter` and on @hono/node-server's
 * `getRequestListener`, polka, and restify with both listeners it adds to
 * its server wrapped where they are. Each app seeds `user` in its first
 * hook, sets `stage` in a middleware after an await and `handled` in the
 * handler. Every hook, middleware, body reader, error hook and streamed
 * chunk must see its own request's values, and every after-response hook
 * (itty-router's `finally`, restify's `after` event, a `res` "finish"
 * listener, @whatwg-node/server's `onResponse` and `waitUntil`) the value
 * the handler set. The same apps without the wrapper, held by a latch until
 * every request has arrived, answer with another request's user.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { createServerAdapter } from "@whatwg-node/server";
import { ContextVar, copyContext } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { AutoRouter, json } from "itty-router";
import polka from "polka";
import restify from "restify";
import { close, listen, randomDelay, send } from "../helpers/http.ts";
import { latch } from "../helpers/latch.ts";
import {
  asyncStage,
  expectBodyKeepsContext,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  finished,
  leak,
  type Observed,
  observe,
  recordFinish,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
  type Values,
} from "../helpers/request-scenario.ts";

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Set by each app's handler for GET /concurrent; the after-response hooks read it. */
const handled = new ContextVar<string>("handled");

/** What a request's first hook found already set (by an earlier request), if anything. */
const stale: string[] = [];

/** `<hook>:<requestId>|<user>|<handled>`, as each hook after the handler saw them. */
const seen: string[] = [];

/** The first hook of every app: nothing may be set yet, then `user` from x-user. */
function firstHook(header: string | string[] | undefined | null): void {
  const found = [user, stage, handled, leak]
    .map((v) => v.get("unset"))
    .filter((v) => v !== "unset");
  if (found.length > 0) stale.push(found.join(","));
  seedUser(header);
}

function record(hook: string): void {
  seen.push(`${hook}:${requestId.get("<none>")}|${user.get("unset")}|${handled.get("unset")}`);
  if (hook === "finish") recordFinish();
}

/** GET /concurrent in every app: values read after awaits, then `handled` set. */
async function handle(): Promise<Observed> {
  const got = await observe();
  handled.set(`h:${got.id}`);
  return got;
}

/**
 * For the comparison with a bare AsyncLocalStorage: each request's id, from
 * `store.run` around the listener in place of withContext.
 */
const store = new AsyncLocalStorage<string>();

function inStore<L extends Listener>(listener: L): Listener {
  return (req, res) => store.run(String(req.headers["x-request-id"]), () => listener(req, res));
}

function storeSeen(): { store: string } {
  return { store: store.getStore() ?? "<lost>" };
}

/** What GET /latch awaits; each test that sends to it sets a new one. */
const held = { wait: latch(0) };

/** The chunks of GET /stream as a web stream, pulled after the handler returned. */
function streamBody(): ReadableStream<Uint8Array> {
  const chunks = streamChunks();
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await randomDelay(2);
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(encoder.encode(next.value));
    },
  });
}

/** Work handed to @whatwg-node/server's waitUntil, awaited by the test. */
const pending: Promise<void>[] = [];

/** itty-router's app; `resOf` finds the node response in the args the adapter passes. */
function ittyRouter(resOf: (args: unknown[]) => ServerResponse | undefined) {
  const router = AutoRouter({
    before: [
      (request, ...args) => {
        resOf(args)?.once("finish", () => record("finish"));
        firstHook(request.headers.get("x-user"));
      },
      async (request) => {
        if (new URL(request.url).pathname === "/reject") await setThenReject();
        await asyncStage();
      },
    ],
    catch: () => json({ id: requestId.get(), leak: leak.get("unset") }, { status: 500 }),
    finally: [
      () => {
        record("finally");
      },
    ],
  });
  router.get(
    "/concurrent",
    async (_request, context?: { waitUntil?: (p: Promise<void>) => void }) => {
      const got = await handle();
      if (context?.waitUntil) {
        const work = (async () => {
          await randomDelay();
          await randomDelay();
          record("waitUntil");
        })();
        pending.push(work);
        context.waitUntil(work);
      }
      return got;
    },
  );
  router.post("/body", async (request) => {
    const body: unknown = await request.json();
    return { id: requestId.get(), user: user.get(), stage: stage.get(), body };
  });
  router.get("/throw", () => setThenThrow());
  router.get("/reject", () => "not reached");
  router.get("/peek", () => ({ leak: leak.get("unset") }));
  router.get("/latch", async () => {
    await held.wait();
    return { user: user.get("unset") };
  });
  router.get("/stream", () => new Response(streamBody()));
  router.get("/store", async () => {
    await randomDelay();
    return storeSeen();
  });
  router.post("/store", async (request) => {
    await request.json();
    return storeSeen();
  });
  return router;
}

function sendJsonTo(res: ServerResponse, value: unknown, status = 200): void {
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify(value));
}

/** polka 0.5: middleware call `next`, errors reach `onError` through `next(error)`. */
function polkaApp(): polka.Polka {
  const app = polka({
    onError: (_error, _req, res) =>
      sendJsonTo(res, { id: requestId.get(), leak: leak.get("unset") }, 500),
  });
  app.use((req, res, next) => {
    res.once("finish", () => record("finish"));
    firstHook(req.headers["x-user"]);
    next();
  });
  app.use(async (req, _res, next) => {
    try {
      if (req.path === "/reject") await setThenReject();
      await asyncStage();
    } catch (error) {
      next(error as Error);
      return;
    }
    next();
  });
  app.get("/concurrent", (_req, res) => {
    void handle().then((got) => sendJsonTo(res, got));
  });
  app.post("/body", (req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
    });
    req.on("end", () => {
      const body: unknown = JSON.parse(text);
      sendJsonTo(res, { id: requestId.get(), user: user.get(), stage: stage.get(), body });
    });
  });
  app.get("/throw", (_req, _res, next) => {
    try {
      setThenThrow();
    } catch (error) {
      next(error as Error);
    }
  });
  app.get("/reject", (_req, res) => res.end("not reached"));
  app.get("/peek", (_req, res) => sendJsonTo(res, { leak: leak.get("unset") }));
  app.get("/latch", (_req, res) => {
    void held.wait().then(() => sendJsonTo(res, { user: user.get("unset") }));
  });
  app.get("/stream", async (_req, res) => {
    for await (const chunk of streamChunks()) res.write(chunk);
    res.end();
  });
  app.get("/store", async (_req, res) => {
    await randomDelay();
    sendJsonTo(res, storeSeen());
  });
  app.post("/store", (req, res) => {
    req.resume();
    req.on("end", () => sendJsonTo(res, storeSeen()));
  });
  return app;
}

/** restify: `pre` seeds, an async `use` middleware sets `stage`, then its bodyParser. */
function restifyApp(): restify.Server {
  const app = restify.createServer();
  app.pre((req: restify.Request, res: restify.Response, next: restify.Next) => {
    res.once("finish", () => record("finish"));
    firstHook(req.headers["x-user"]);
    next();
  });
  app.use(async (req: restify.Request) => {
    if (req.path() === "/reject") await setThenReject();
    await asyncStage();
  });
  app.use(restify.plugins.bodyParser());
  app.on("after", () => record("after"));
  app.on("restifyError", (_req, res: restify.Response, _error, callback: () => void) => {
    res.send(500, { id: requestId.get(), leak: leak.get("unset") });
    callback();
  });
  app.get("/concurrent", async (_req: restify.Request, res: restify.Response) => {
    res.send(await handle());
  });
  app.post("/body", async (req: restify.Request, res: restify.Response) => {
    res.send({ id: requestId.get("<none>"), user: user.get(), stage: stage.get(), body: req.body });
  });
  app.get("/throw", async () => setThenThrow());
  app.get("/reject", async (_req: restify.Request, res: restify.Response) => {
    res.send("not reached");
  });
  app.get("/peek", async (_req: restify.Request, res: restify.Response) => {
    res.send({ leak: leak.get("unset") });
  });
  app.get("/latch", async (_req: restify.Request, res: restify.Response) => {
    await held.wait();
    res.send({ user: user.get("unset") });
  });
  app.get("/stream", async (_req: restify.Request, res: restify.Response) => {
    res.setHeader("content-type", "text/plain");
    for await (const chunk of streamChunks()) res.write(chunk);
    res.end();
  });
  app.get("/store", async (_req: restify.Request, res: restify.Response) => {
    await randomDelay();
    res.send(storeSeen());
  });
  app.post("/store", async (_req: restify.Request, res: restify.Response) => {
    res.send(storeSeen());
  });
  return app;
}

/** The recipe for restify: the listeners it added to its server, each in withContext. */
function wrapListeners(
  server: Server,
  events = ["request", "checkContinue"],
  wrap: (listener: Listener) => Listener = withContext,
): void {
  for (const event of events) {
    for (const listener of server.listeners(event) as Listener[]) {
      server.off(event, listener);
      server.on(event, wrap(listener));
    }
  }
}

const COUNT = 240;
const SOCKETS = 40;

/**
 * 240 requests at once over 40 keep-alive sockets: each reply carries its
 * own id and values; no first hook found anything set; each of `hooks`
 * (after the handler) saw the request's id, user and the value its handler
 * set; each of `early` (before the first hook) saw the id and nothing else.
 * Resolves to the number of requests sent on a reused socket.
 */
async function expectOwnValues(
  base: string,
  server: Server,
  hooks: string[],
  early: string[],
): Promise<number> {
  stale.length = 0;
  seen.length = 0;
  pending.length = 0;
  let connections = 0;
  const count = (): void => {
    connections++;
  };
  server.on("connection", count);
  try {
    await expectNoCrossTalk(base, COUNT, SOCKETS);
  } finally {
    server.off("connection", count);
  }
  await Promise.all(pending);
  const expected = [
    ...hooks.flatMap((hook) =>
      Array.from({ length: COUNT }, (_, i) => `${hook}:req-${i}|user-${i}|h:req-${i}`),
    ),
    ...early.flatMap((hook) =>
      Array.from({ length: COUNT }, (_, i) => `${hook}:req-${i}|unset|unset`),
    ),
  ];
  // A "finish" listener runs once the last bytes are handed to the socket,
  // which can be just after the client has read them.
  for (let tries = 0; tries < 50 && seen.length < expected.length; tries++) await randomDelay(10);
  assert.deepEqual(stale, [], "a first hook found values an earlier request set");
  assert.deepEqual([...seen].sort(), expected.sort());
  assert.ok(connections <= SOCKETS, `${connections} connections`);
  return COUNT - connections;
}

/**
 * 40 requests to GET /latch, each held in its handler until all 40 have run
 * their first hook; resolves to how many answered with another request's user.
 */
async function countCrossTalk(base: string): Promise<number> {
  const n = 40;
  held.wait = latch(n);
  const replies = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      send(base, "/latch", { headers: { "x-request-id": `latch-${i}`, "x-user": `l-${i}` } }),
    ),
  );
  return replies.filter((reply, i) => {
    assert.equal(reply.status, 200, reply.body);
    return (JSON.parse(reply.body) as { user: string }).user !== `l-${i}`;
  }).length;
}

/**
 * Resolves, for each x-request-id, once the app has started reading the
 * request's body (added a "data", "readable" or "end" listener).
 */
function watchReaders(server: Server): (id: string) => Promise<void> {
  const started = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  const entry = (id: string) => {
    let found = started.get(id);
    if (found === undefined) {
      let resolve = (): void => {};
      const promise = new Promise<void>((done) => {
        resolve = done;
      });
      found = { promise, resolve };
      started.set(id, found);
    }
    return found;
  };
  server.prependListener("request", (req: IncomingMessage) => {
    const onListener = (event: string | symbol) => {
      if (event !== "data" && event !== "readable" && event !== "end") return;
      req.off("newListener", onListener);
      entry(String(req.headers["x-request-id"])).resolve();
    };
    req.on("newListener", onListener);
  });
  return (id) => entry(id).promise;
}

/**
 * POSTs a JSON body to `path` in two pieces, the second once `started(id)`
 * resolves, so that the body's end reaches the server from the socket after
 * the app started reading; resolves with the reply's body.
 */
function postHeld(
  base: string,
  path: string,
  id: string,
  started: (id: string) => Promise<void>,
  headers: Record<string, string> = {},
): Promise<string> {
  const body = JSON.stringify({ id, pad: "x".repeat(2000) });
  return new Promise<string>((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-length": String(Buffer.byteLength(body)),
        "x-request-id": id,
        ...headers,
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve(text));
    });
    req.on("error", reject);
    req.write(body.slice(0, 1000));
    void started(id).then(() => req.end(body.slice(1000)));
  });
}

/**
 * 40 GETs to /store after awaits, then 40 POSTs to /store read by the app's
 * body reader, each body's end sent once the reader has started, so that it
 * reaches the server from the socket: resolves to how many of each lost the
 * store their listener ran in.
 */
async function countStoreLost(
  base: string,
  started: (id: string) => Promise<void>,
): Promise<{ get: number; post: number }> {
  const lost = (replies: string[], ids: string[]) =>
    replies.filter((reply, i) => {
      const { store: got } = JSON.parse(reply) as { store: string };
      if (got !== "<lost>") assert.equal(got, ids[i]);
      return got === "<lost>";
    }).length;
  const ids = Array.from({ length: 40 }, (_, i) => `store-${i}`);
  const gets = await Promise.all(
    ids.map((id) => send(base, "/store", { headers: { "x-request-id": id } })),
  );
  for (const reply of gets) assert.equal(reply.status, 200, reply.body);
  const postIds = ids.map((id) => id.replace("store", "post"));
  const posts = await Promise.all(postIds.map((id) => postHeld(base, "/store", id, started)));
  return {
    get: lost(
      gets.map((reply) => reply.body),
      ids,
    ),
    post: lost(posts, postIds),
  };
}

/**
 * Runs the listeners it is given in one Context made for them, as a server
 * listening in that Context runs an unwrapped listener on Node (Deno's
 * node:http runs it in the root Context instead): what their requests set
 * stays there, out of the root Context the other tests start from.
 */
function apart(): (listener: Listener) => Listener {
  const context = copyContext();
  return (listener) => (req, res) => context.run(() => listener(req, res));
}

/** The tests every app passes under its wrapper, plus the latch with and without it. */
function recipeTests(
  serve: () => { server: Server; bare: Server; stored: Server },
  hooks: string[],
  { early = [] as string[], postsLost = 0 } = {},
): void {
  const { server, bare, stored } = serve();
  let base = "";
  let bareBase = "";
  let storedBase = "";
  const reading = watchReaders(server);
  const started = watchReaders(stored);
  before(async () => {
    base = await listen(server);
    bareBase = await listen(bare);
    storedBase = await listen(stored);
  });
  after(() => Promise.all([close(server), close(bare), close(stored)]));

  it(`240 concurrent requests over 40 keep-alive sockets: hooks, middleware, handler and ${hooks.join(", ")} see their own request's values`, async () => {
    const reused = await expectOwnValues(base, server, hooks, early);
    assert.ok(reused >= 200, `${reused} requests on a reused socket`);
  });
  it("the body reader keeps the context (bodies sent in pieces)", () =>
    expectBodyKeepsContext(base));
  it("40 POSTs whose end is sent once the body reader has started: the reader sees the request's values", async () => {
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        postHeld(base, "/body", `held-${i}`, reading, { "x-user": `h${i}` }),
      ),
    );
    replies.forEach((reply, i) => {
      const { body, ...values } = JSON.parse(reply) as Values & { body: { id: string } };
      assert.deepEqual(values, { id: `held-${i}`, user: `h${i}`, stage: `mw:h${i}` });
      assert.equal(body.id, `held-${i}`);
    });
  });
  it("the error hook sees the failed request's values; nothing leaks into the next request on the socket", () =>
    expectNothingLeaks(base));
  it("a body streamed after the handler returned, and a res finish listener, see the request's values", async () => {
    finished.length = 0;
    await expectStreaming(base);
  });
  it("40 requests held until all arrived: each reads its own user under withContext", async () => {
    assert.equal(await countCrossTalk(base), 0);
  });
  it("without withContext, the same 40 requests: 39 read another request's user", async () => {
    assert.equal(await countCrossTalk(bareBase), 39);
  });
  it(`AsyncLocalStorage.run around the listener instead: GETs keep the store, ${postsLost} of 40 POSTs through the body reader lose it`, async () => {
    assert.deepEqual(await countStoreLost(storedBase, started), { get: 0, post: postsLost });
  });
}

describe("itty-router on @whatwg-node/server under withContext(createServerAdapter(router.fetch))", {
  timeout: 60_000,
}, () => {
  const adapter = (plugins: boolean) => {
    const router = ittyRouter((args) => (args[0] as { res?: ServerResponse } | undefined)?.res);
    return createServerAdapter(router.fetch, {
      plugins: plugins
        ? [{ onRequest: () => record("onRequest"), onResponse: () => record("onResponse") }]
        : [],
    });
  };
  recipeTests(
    () => ({
      server: createServer(withContext(adapter(true))),
      bare: createServer(apart()(adapter(false))),
      stored: createServer(apart()(inStore(adapter(false)))),
    }),
    ["finally", "finish", "onResponse", "waitUntil"],
    { early: ["onRequest"] },
  );
});

describe("itty-router under withContext(getRequestListener(router.fetch))", {
  timeout: 60_000,
}, () => {
  const listener = () =>
    getRequestListener(
      ittyRouter((args) => (args[0] as { outgoing?: ServerResponse } | undefined)?.outgoing).fetch,
    );
  recipeTests(
    () => ({
      server: createServer(withContext(listener())),
      bare: createServer(apart()(listener())),
      stored: createServer(apart()(inStore(listener()))),
    }),
    ["finally", "finish"],
  );
});

describe("polka 0.5 under withContext(app.handler)", { timeout: 60_000 }, () => {
  // @types/polka types `handler`'s request as polka's own, which the handler
  // itself completes from Node's: it is a node listener.
  const listener = () => polkaApp().handler as Listener;
  recipeTests(
    () => ({
      server: createServer(withContext(listener())),
      bare: createServer(apart()(listener())),
      stored: createServer(apart()(inStore(listener()))),
    }),
    ["finish"],
    { postsLost: 40 },
  );

  it("a handler's throw does not reach polka 0.5's onError: it leaves app.handler, and withContext rethrows it", async () => {
    let onError = 0;
    const app = polka({
      onError: (_error, _req, res) => {
        onError++;
        res.end("onError");
      },
    });
    app.get("/uncaught", () => setThenThrow());
    const wrapped = withContext(app.handler as Listener);
    const server = createServer((req, res) => {
      try {
        wrapped(req, res);
      } catch (error) {
        res.end(`escaped: ${(error as Error).message}`);
      }
    });
    const base = await listen(server);
    try {
      assert.equal((await send(base, "/uncaught")).body, "escaped: thrown");
      assert.equal(onError, 0);
    } finally {
      await close(server);
    }
  });
});

/** A POST to restify's /body, sent with `Expect: 100-continue` (its body once the server says so) or not. */
function post(base: string, i: number, expect: boolean): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = httpRequest(`${base}/body`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-request-id": `c-${i}`,
        "x-user": `u${i}`,
        ...(expect ? { expect: "100-continue" } : {}),
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve(text));
    });
    req.on("error", reject);
    if (expect) req.on("continue", () => req.end(JSON.stringify({ n: i })));
    else req.end(JSON.stringify({ n: i }));
  });
}

describe("restify with its request and checkContinue listeners under withContext", {
  timeout: 60_000,
}, () => {
  recipeTests(
    () => {
      const app = restifyApp();
      wrapListeners(app.server);
      const bare = restifyApp();
      const inBare = apart();
      wrapListeners(bare.server, ["request", "checkContinue"], (listener) => inBare(listener));
      const stored = restifyApp();
      const inStored = apart();
      wrapListeners(stored.server, ["request", "checkContinue"], (listener) =>
        inStored(inStore(listener)),
      );
      return { server: app.server, bare: bare.server, stored: stored.server };
    },
    ["after", "finish"],
    { postsLost: 40 },
  );

  const own = (i: number) => ({ id: `c-${i}`, user: `u${i}`, stage: `mw:u${i}`, body: { n: i } });

  it("20 POSTs, 10 sent with Expect: 100-continue: each runs in its own Context", async () => {
    const app = restifyApp();
    wrapListeners(app.server);
    const base = await listen(app.server);
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => post(base, i, i % 2 === 0)),
      );
      replies.forEach((reply, i) => {
        assert.deepEqual(JSON.parse(reply), own(i));
      });
    } finally {
      await close(app.server);
    }
    assert.equal(user.get("unset"), "unset");
  });

  // Last in the file: it leaves a value in the root Context.
  it("with only request wrapped, the 2 of 4 POSTs sent with Expect: 100-continue run with no requestId, and their set lands in the root Context", async () => {
    const app = restifyApp();
    wrapListeners(app.server, ["request"]);
    const base = await listen(app.server); // from the root Context, as an app's start-up does
    try {
      const replies: unknown[] = [];
      for (let i = 0; i < 4; i++) replies.push(JSON.parse(await post(base, i, i % 2 === 1)));
      assert.deepEqual(replies, [
        own(0),
        { ...own(1), id: "<none>" },
        own(2),
        { ...own(3), id: "<none>" },
      ]);
      assert.equal(user.get("unset"), "u3", "the last Expect request's user is the root's now");
      // Every later request starts from a copy of the root, with that user in it.
      stale.length = 0;
      assert.deepEqual(JSON.parse(await post(base, 4, false)), own(4));
      assert.deepEqual(stale, ["u3,mw:u3"]);
    } finally {
      await close(app.server);
    }
  });
});
