/**
 * Frameworks with no integration of their own, whose node listener goes in
 * `withContext` as docs/integrations.md#other-frameworks shows: itty-router
 * on @whatwg-node/server's `createServerAdapter` and on @hono/node-server's
 * `getRequestListener`, polka, and restify with both listeners it adds to
 * its server wrapped where they are (the apps are in
 * test/helpers/other-framework-apps.ts). Each app seeds `user` in its first
 * hook, sets `stage` in a middleware after an await and `handled` in the
 * handler. Every hook, middleware, body reader, error hook and streamed
 * chunk must see its own request's values, and every after-response hook
 * (itty-router's `finally`, restify's `after` event, a `res` "finish"
 * listener, @whatwg-node/server's `onResponse` and `waitUntil`) the value
 * the handler set. The same apps without the wrapper, held by a latch until
 * every request has arrived, answer with another request's user.
 */
import assert from "node:assert/strict";
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
import { copyContext } from "contextvars";
import { withContext } from "contextvars/http";
import polka from "polka";
import { close, listen, randomDelay, send } from "../helpers/http.ts";
import { latch } from "../helpers/latch.ts";
import {
  held,
  inStore,
  ittyRouter,
  type Listener,
  pending,
  polkaApp,
  record,
  restifyApp,
  seen,
  stale,
  wrapListeners,
} from "../helpers/other-framework-apps.ts";
import {
  expectBodyKeepsContext,
  expectNoCrossTalk,
  expectNothingLeaks,
  expectStreaming,
  finished,
  setThenThrow,
  user,
  type Values,
} from "../helpers/request-scenario.ts";

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
