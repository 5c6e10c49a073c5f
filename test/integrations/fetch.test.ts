/**
 * contextvars/fetch: withContext around a web-standard fetch handler, served
 * over a real node:http server through @hono/node-server's
 * getRequestListener (as Bun.serve, Deno.serve or a Worker would call it),
 * and called directly where a test needs a Response a server cannot carry
 * (status 0, undefined) or arguments of its own.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { ContextVar, createTask } from "contextvars";
import { withContext as withFetchContext } from "contextvars/fetch";
import { contextMiddleware } from "contextvars/hono";
import { requestId, withContext as withHttpContext } from "contextvars/http";
import { Hono } from "hono";
import { close, listen, randomDelay, send, UUID } from "../helpers/http.ts";
import { pinContext } from "../helpers/pin-context.ts";

const user = new ContextVar<string>("fetch.user");
const caller = new ContextVar<string>("fetch.caller");

type Handler = (request: Request, ...rest: never[]) => Response | undefined | Promise<Response>;

/** Serves `handler` on 127.0.0.1 for the length of `body`. */
async function serving<T>(handler: Handler, body: (base: string) => Promise<T>): Promise<T> {
  const server = createServer(getRequestListener(handler as (request: Request) => Response));
  const base = await listen(server);
  try {
    return await body(base);
  } finally {
    await close(server);
  }
}

function json(value: unknown, init?: ResponseInit): Response {
  return Response.json(value, init);
}

describe("contextvars/fetch withContext over node:http", () => {
  const handler = withFetchContext(
    async (request: Request) => {
      await randomDelay();
      const afterAwait = { id: requestId.get(), user: user.get() };
      const inTimer = await new Promise<{ id: string; user: string }>((resolve) => {
        setTimeout(() => resolve({ id: requestId.get(), user: user.get() }), Math.random() * 4);
      });
      return json({ path: new URL(request.url).pathname, afterAwait, inTimer });
    },
    { seed: (request) => user.set(request.headers.get("x-user") ?? "anonymous") },
  );
  let base: string;
  const server = createServer(getRequestListener(handler));
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("200 concurrent requests each see their own id and seeded user, after awaits and in a timer", async () => {
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        send(base, `/r${i}`, { headers: { "x-request-id": `req-${i}`, "x-user": `user-${i}` } }),
      ),
    );
    replies.forEach((reply, i) => {
      assert.equal(reply.status, 200);
      assert.equal(reply.headers["x-request-id"], `req-${i}`);
      const seen = { id: `req-${i}`, user: `user-${i}` };
      assert.deepEqual(JSON.parse(reply.body), { path: `/r${i}`, afterAwait: seen, inTimer: seen });
    });
  });

  it("a request with no id, or a malformed one, gets a new UUID, echoed", async () => {
    const replies = await Promise.all([
      send(base, "/none"),
      send(base, "/bad", { headers: { "x-request-id": "bad id\twith spaces" } }),
      send(base, "/long", { headers: { "x-request-id": "x".repeat(201) } }),
    ]);
    const ids = new Set<string>();
    for (const reply of replies) {
      const { afterAwait } = JSON.parse(reply.body) as { afterAwait: { id: string } };
      assert.match(afterAwait.id, UUID);
      assert.equal(reply.headers["x-request-id"], afterAwait.id);
      ids.add(afterAwait.id);
    }
    assert.equal(ids.size, 3);
  });
});

describe("contextvars/fetch withContext options and echo", () => {
  const idOf = () => json({ id: requestId.get() });

  it("trustHeader: false ignores the client's id and echoes a new one", async () => {
    await serving(withFetchContext(idOf, { trustHeader: false }), async (base) => {
      const reply = await send(base, "/", { headers: { "x-request-id": "client-picked" } });
      const { id } = JSON.parse(reply.body) as { id: string };
      assert.match(id, UUID);
      assert.equal(reply.headers["x-request-id"], id);
    });
  });

  it("generateId receives the Request; header names another header", async () => {
    const seen: string[] = [];
    const wrapped = withFetchContext(idOf, {
      header: "X-Trace",
      generateId: (request) => {
        seen.push(new URL(request.url).pathname);
        return `gen-${seen.length}`;
      },
    });
    await serving(wrapped, async (base) => {
      const generated = await send(base, "/a");
      assert.deepEqual(JSON.parse(generated.body), { id: "gen-1" });
      assert.equal(generated.headers["x-trace"], "gen-1");
      const sent = await send(base, "/b", { headers: { "x-trace": "from-client" } });
      assert.deepEqual(JSON.parse(sent.body), { id: "from-client" });
      assert.deepEqual(seen, ["/a"]);
    });
  });

  it("echo: false sets the id but sends no header", async () => {
    await serving(withFetchContext(idOf, { echo: false }), async (base) => {
      const reply = await send(base, "/", { headers: { "x-request-id": "kept-quiet" } });
      assert.deepEqual(JSON.parse(reply.body), { id: "kept-quiet" });
      assert.equal(reply.headers["x-request-id"], undefined);
    });
  });

  it("a header the handler set itself is kept", async () => {
    const wrapped = withFetchContext(() =>
      json({}, { headers: { "x-request-id": "handler-own" } }),
    );
    await serving(wrapped, async (base) => {
      const reply = await send(base, "/", { headers: { "x-request-id": "from-client" } });
      assert.equal(reply.headers["x-request-id"], "handler-own");
    });
  });

  it("a Response with immutable headers (fetch(), Response.redirect) is copied to carry the id", async () => {
    const upstream = createServer((_req, res) => {
      res.setHeader("x-upstream", "yes");
      res.end("from upstream");
    });
    const upstreamBase = await listen(upstream);
    try {
      const wrapped = withFetchContext(async (request: Request) => {
        if (new URL(request.url).pathname === "/redirect") {
          return Response.redirect(`${upstreamBase}/elsewhere`, 307);
        }
        return fetch(upstreamBase);
      });
      await serving(wrapped, async (base) => {
        const proxied = await send(base, "/proxy", { headers: { "x-request-id": "proxied-1" } });
        assert.equal(proxied.status, 200);
        assert.equal(proxied.body, "from upstream");
        assert.equal(proxied.headers["x-upstream"], "yes");
        assert.equal(proxied.headers["x-request-id"], "proxied-1");
        const moved = await send(base, "/redirect", { headers: { "x-request-id": "moved-1" } });
        assert.equal(moved.status, 307);
        assert.equal(moved.headers.location, `${upstreamBase}/elsewhere`);
        assert.equal(moved.headers["x-request-id"], "moved-1");
      });
    } finally {
      await close(upstream);
    }
  });

  it("no echo on undefined (Bun after server.upgrade) or a status-0 Response; the same Response otherwise", async () => {
    const request = () => new Request("http://127.0.0.1/", { headers: { "x-request-id": "r-1" } });
    assert.equal(
      await withFetchContext((): Response | undefined => undefined)(request()),
      undefined,
    );
    const networkError = Response.error();
    const returned = await withFetchContext(() => networkError)(request());
    assert.equal(returned, networkError);
    assert.equal(returned.headers.has("x-request-id"), false);
    const plain = new Response("ok");
    const echoed = await withFetchContext(() => plain)(request());
    assert.equal(echoed, plain);
    assert.equal(echoed.headers.get("x-request-id"), "r-1");
  });

  it("a Request given to the handler again after it is done is a new request", async () => {
    const ids: string[] = [];
    const wrapped = withFetchContext(() => {
      ids.push(requestId.get());
      return new Response();
    });
    const request = new Request("http://127.0.0.1/");
    await wrapped(request);
    await wrapped(request);
    assert.equal(ids.length, 2);
    assert.notEqual(ids[0], ids[1]);
  });
});

describe("contextvars/fetch withContext arguments and nesting", () => {
  it("passes every argument after the Request, and `this`, to the handler", async () => {
    const env = { KV: "binding" };
    const ctx = { waitUntil: () => {} };
    const got: unknown[] = [];
    const worker = {
      name: "worker",
      fetch: withFetchContext(function (
        this: unknown,
        _request: Request,
        e: typeof env,
        c: typeof ctx,
      ) {
        got.push(this, e, c);
        return new Response();
      }),
    };
    await worker.fetch(new Request("http://127.0.0.1/"), env, ctx);
    assert.equal(got[0], worker);
    assert.equal(got[1], env);
    assert.equal(got[2], ctx);
    // Over getRequestListener: node-server's bindings, { incoming, outgoing }.
    const wrapped = withFetchContext((_request: Request, bindings: { incoming: IncomingMessage }) =>
      json({ method: bindings.incoming.method, id: requestId.get() }),
    );
    await serving(wrapped as Handler, async (base) => {
      const reply = await send(base, "/", { headers: { "x-request-id": "with-env" } });
      assert.deepEqual(JSON.parse(reply.body), { method: "GET", id: "with-env" });
    });
  });

  it("a Hono app with contextMiddleware inside the wrapper shares its one Context and id", async () => {
    const outer: string[] = [];
    const inner: string[] = [];
    const app = new Hono();
    app.use(contextMiddleware({ generateId: () => `hono-${inner.push("called")}` }));
    app.get("/", async (c) => {
      const before = user.get("unset");
      user.set(`${before}+hono`);
      await randomDelay();
      return c.json({ id: requestId.get(), user: user.get() });
    });
    const wrapped = withFetchContext(
      async (request: Request) => {
        const response = await app.fetch(request);
        // The Hono handler's set is seen here: the same Context.
        return new Response(`${await response.text()}|${user.get()}`, response);
      },
      {
        generateId: () => `outer-${outer.push("called")}`,
        seed: () => user.set("seeded"),
      },
    );
    await serving(wrapped, async (base) => {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          send(base, "/", { headers: i % 2 === 0 ? { "x-request-id": `hono-${i}` } : {} }),
        ),
      );
      replies.forEach((reply, i) => {
        const [body, after] = reply.body.split("|") as [string, string];
        const { id, user: seen } = JSON.parse(body) as { id: string; user: string };
        if (i % 2 === 0) assert.equal(id, `hono-${i}`);
        else assert.match(id, /^outer-\d+$/);
        assert.equal(reply.headers["x-request-id"], id);
        assert.equal(seen, "seeded+hono");
        assert.equal(after, "seeded+hono");
      });
      assert.equal(outer.length, 25);
      assert.deepEqual(inner, []);
    });
  });

  it("called from a Hono route with the Request Hono's contextMiddleware filed (fetch path): that Context, its id", async () => {
    const inner = withFetchContext(async () => {
      await randomDelay();
      return json({ id: requestId.get(), user: user.get() });
    });
    const app = new Hono();
    app.use(contextMiddleware({ seed: (c) => user.set(c.req.header("x-user") ?? "anonymous") }));
    app.get("/", (c) => inner(c.req.raw));
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        app.request("/", { headers: { "x-request-id": `in-hono-${i}`, "x-user": `u${i}` } }),
      ),
    );
    for (const [i, reply] of replies.entries()) {
      assert.deepEqual(await reply.json(), { id: `in-hono-${i}`, user: `u${i}` });
      assert.equal(reply.headers.get("x-request-id"), `in-hono-${i}`);
    }
  });

  it("wrapped twice: one Context, one id, the outer's echo", async () => {
    let innerSeeds = 0;
    const inner = withFetchContext(
      () => {
        user.set(`${user.get()}+inner`);
        return json({ id: requestId.get() });
      },
      { seed: () => innerSeeds++ },
    );
    const outer = withFetchContext(
      async (request: Request) => {
        const response = await inner(request);
        return json({ ...((await response.json()) as object), user: user.get() });
      },
      { seed: () => user.set("outer") },
    );
    const response = await outer(new Request("http://127.0.0.1/"));
    const body = (await response.json()) as { id: string; user: string };
    assert.match(body.id, UUID);
    assert.equal(body.user, "outer+inner");
    assert.equal(response.headers.get("x-request-id"), body.id);
    assert.equal(innerSeeds, 1);
  });
});

describe("contextvars/fetch withContext and the caller's Context", () => {
  const seen: unknown[] = [];
  const wrapped = withFetchContext(
    async (request: Request) => {
      await randomDelay(2);
      seen.push({ caller: caller.get("unset"), user: user.get("unset"), id: requestId.get() });
      if (request.headers.has("x-throw")) throw new Error("sync-ish throw after await");
      return new Response();
    },
    // seed runs in the request's Context too: the caller's value is not there.
    {
      seed: () => {
        if (caller.get("unset") !== "unset") user.set("leaked into seed");
      },
    },
  );
  const syncThrow = withFetchContext((): Response => {
    user.set("set before throwing");
    throw new RangeError("thrown synchronously");
  });

  it("starts from the root, not the caller's values, inside a run and inside a task, and leaves the caller's Context as it was", async () => {
    seen.length = 0;
    await caller.run("in-run", async () => {
      const pin = pinContext();
      const calls = Array.from({ length: 20 }, (_, i) =>
        wrapped(new Request("http://127.0.0.1/", { headers: { "x-request-id": `run-${i}` } })),
      );
      pin.check("after starting the calls");
      const pinAgain = pinContext();
      await Promise.all(calls);
      pinAgain.check("after the calls");
      assert.equal(caller.get(), "in-run");
    });
    await createTask(async () => {
      caller.set("in-task");
      user.set("task-user");
      const pin = pinContext();
      await wrapped(new Request("http://127.0.0.1/", { headers: { "x-request-id": "task-1" } }));
      pin.check("after the call in a task");
    });
    assert.equal(seen.length, 21);
    for (const entry of seen) {
      assert.deepEqual(Object.keys(entry as object), ["caller", "user", "id"]);
      assert.equal((entry as { caller: string }).caller, "unset");
      assert.equal((entry as { user: string }).user, "unset");
    }
  });

  it("a throw or rejection of the handler reaches the caller unchanged, with its Context as it was", async () => {
    await caller.run("around-throw", async () => {
      const pin = pinContext();
      const rejected = wrapped(
        new Request("http://127.0.0.1/", { headers: { "x-throw": "1", "x-request-id": "t-1" } }),
      );
      await assert.rejects(rejected, { message: "sync-ish throw after await" });
      pin.check("after a rejection");
      const pin2 = pinContext();
      // A handler that throws synchronously makes the wrapper throw, as the handler would.
      assert.throws(
        () => syncThrow(new Request("http://127.0.0.1/")),
        (error: unknown) => {
          assert.ok(error instanceof RangeError);
          assert.equal(error.message, "thrown synchronously");
          return true;
        },
      );
      pin2.check("after a synchronous throw");
      assert.equal(user.get("unset"), "unset");
      assert.equal(caller.get(), "around-throw");
    });
  });

  it("a throw from seed is the call's throw, also for an async handler, with the caller's Context as it was", async () => {
    const failing = new Error("seed failed");
    const seed = () => {
      throw failing;
    };
    const seeded = withFetchContext(() => new Response(), { seed });
    const pin = pinContext();
    assert.throws(
      () => seeded(new Request("http://127.0.0.1/")),
      (error) => error === failing,
    );
    pin.check();
    // seed runs before the handler: an async handler's call throws it too, before any promise.
    const seededAsync = withFetchContext(async () => new Response(), { seed });
    const pin2 = pinContext();
    assert.throws(
      () => seededAsync(new Request("http://127.0.0.1/")),
      (error) => error === failing,
    );
    pin2.check();
  });

  it("a Response returned synchronously comes back synchronously, with the id echoed; a promise, as a promise", async () => {
    const sync = withFetchContext(() => new Response("sync"));
    const response = sync(new Request("http://127.0.0.1/", { headers: { "x-request-id": "s-1" } }));
    assert.ok(response instanceof Response);
    assert.equal(response.headers.get("x-request-id"), "s-1");
    const async = withFetchContext(async () => new Response("async"));
    const promised = async(
      new Request("http://127.0.0.1/", { headers: { "x-request-id": "a-1" } }),
    );
    assert.ok(promised instanceof Promise);
    assert.equal((await promised).headers.get("x-request-id"), "a-1");
    // Called directly, with no node:http bindings: the echo goes on the Response, copied if immutable.
    const redirect = withFetchContext(() => Response.redirect("http://127.0.0.1/elsewhere", 302));
    const moved = redirect(
      new Request("http://127.0.0.1/", { headers: { "x-request-id": "r-1" } }),
    );
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.get("x-request-id"), "r-1");
    assert.equal(moved.headers.get("location"), "http://127.0.0.1/elsewhere");
  });
});

describe("contextvars/fetch withContext on @hono/node-server's bindings", () => {
  it("keys the request on Node's req and res: withContext from contextvars/http around the listener shares its one Context and id; req and res listeners run in it", async () => {
    const fetchIds: string[] = [];
    const closedIn: string[] = [];
    const handler = withFetchContext(
      async (_request: Request, bindings: { incoming: IncomingMessage }) => {
        bindings.incoming.on("close", () => closedIn.push(requestId.get("<none>")));
        await randomDelay();
        return json({ id: requestId.get(), user: user.get() });
      },
      {
        generateId: () => `fetch-${fetchIds.push("called")}`,
        seed: () => user.set(`${user.get("unset")}+fetch`),
      },
    );
    const server = createServer(
      withHttpContext(getRequestListener(handler as unknown as (request: Request) => Response), {
        generateId: () => "from-http",
        seed: (req) => user.set(String(req.headers["x-user"])),
      }),
    );
    const base = await listen(server);
    try {
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          send(base, "/", {
            headers:
              i % 2 === 0 ? { "x-request-id": `n-${i}`, "x-user": `u${i}` } : { "x-user": `u${i}` },
          }),
        ),
      );
      replies.forEach((reply, i) => {
        const id = i % 2 === 0 ? `n-${i}` : "from-http";
        assert.deepEqual(JSON.parse(reply.body), { id, user: `u${i}+fetch` });
        // Echoed once, by whichever wrapper opened the Context.
        assert.equal(reply.headers["x-request-id"], id);
      });
      assert.deepEqual(fetchIds, []);
      for (let i = 0; i < 100 && closedIn.length < 40; i++) await randomDelay(10);
      assert.equal(closedIn.length, 40);
      assert.ok(
        closedIn.every((id) => id === "from-http" || /^n-\d+$/.test(id)),
        closedIn.join(),
      );
    } finally {
      await close(server);
    }
  });

  it("alone, echoes the id with res.setHeader: a handler's own header wins, an immutable Response is answered as it is", async () => {
    const handler = withFetchContext((request: Request) => {
      const path = new URL(request.url).pathname;
      if (path === "/own")
        return new Response("own", { headers: { "x-request-id": "the-handler's" } });
      if (path === "/redirect") return Response.redirect("http://127.0.0.1/elsewhere", 302);
      return new Response(requestId.get());
    });
    await serving(handler, async (base) => {
      const plain = await send(base, "/", { headers: { "x-request-id": "p-1" } });
      assert.equal(plain.body, "p-1");
      assert.equal(plain.headers["x-request-id"], "p-1");
      const own = await send(base, "/own", { headers: { "x-request-id": "o-1" } });
      assert.equal(own.headers["x-request-id"], "the-handler's");
      const moved = await send(base, "/redirect", { headers: { "x-request-id": "r-1" } });
      assert.equal(moved.status, 302);
      assert.equal(moved.headers["x-request-id"], "r-1");
    });
  });
});

describe("contextvars/fetch withContext bad input", () => {
  it("a handler that is not a function is a TypeError naming `handler`", () => {
    assert.throws(() => withFetchContext(42 as never), {
      name: "TypeError",
      message: "Expected `handler` to be a function, got `42` (number)",
    });
    assert.throws(() => withFetchContext(undefined as never), {
      name: "TypeError",
      message: /^Expected `handler` to be a function, got `undefined`/,
    });
  });

  it("a Hono app given whole is told to pass app.fetch, or use contextvars/hono", () => {
    assert.throws(() => withFetchContext(new Hono() as never), {
      name: "TypeError",
      message:
        /^Expected `handler` to be a function, got .*; a Hono app is not a fetch handler, its fetch is: withContext\(app\.fetch\), or use contextMiddleware from contextvars\/hono$/,
    });
  });

  it("withContext itself given as the fetch handler says to wrap the handler", () => {
    const asHandler = withFetchContext as unknown as (request: Request) => unknown;
    assert.throws(() => asHandler(new Request("http://127.0.0.1/")), {
      name: "TypeError",
      message: /it wraps your handler, so pass withContext\(handler, options\)/,
    });
  });

  it("an option of the wrong type is a TypeError naming it", () => {
    assert.throws(() => withFetchContext(() => new Response(), { echo: 1 as never }), {
      name: "TypeError",
      message: /^Expected `options\.echo` to be a boolean/,
    });
    assert.throws(() => withFetchContext(() => new Response(), { header: "te" }), {
      name: "TypeError",
      message: /^Expected `options\.header`/,
    });
  });

  it("the wrapper given a node:http request throws, saying to use contextvars/http", async () => {
    const wrapped = withFetchContext(() => new Response()) as unknown as (
      ...args: unknown[]
    ) => unknown;
    const messages: string[] = [];
    const server = createServer((req, res) => {
      const pin = pinContext();
      try {
        wrapped(req, res);
        res.end("returned");
      } catch (error) {
        messages.push(`${(error as Error).name}: ${(error as Error).message}`);
        res.end("threw");
      }
      pin.check("after the call");
    });
    const base = await listen(server);
    try {
      assert.equal((await send(base, "/")).body, "threw");
    } finally {
      await close(server);
    }
    assert.equal(messages.length, 1);
    assert.match(
      messages[0] as string,
      /^TypeError: Expected `request` to be a fetch Request, got .* \(a node:http request\): .*use withContext from contextvars\/http/,
    );
    assert.throws(() => wrapped("http://127.0.0.1/"), {
      name: "TypeError",
      message:
        /^Expected `request` to be a fetch Request, got `"http:\/\/127\.0\.0\.1\/"` \(string\)/,
    });
  });
});
