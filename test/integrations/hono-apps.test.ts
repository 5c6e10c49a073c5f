/**
 * Hono 4 apps built of parts, with `contextMiddleware()` mounted first:
 * sub-apps (`app.route`, `app.basePath`, `app.mount`), `app.notFound` and a
 * sub-app's own `onError`, Hono's `timeout()`, `bodyLimit()` and
 * `contextStorage()` middleware, and `c.req.parseBody()`. Each is served
 * both ways the middleware meets a request (test/helpers/hono-servers.ts):
 * through @hono/node-server's bindings, and as a bare fetch handler. Clients
 * are real: node:http, and fetch for bodies sent in chunks.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ContextVar } from "contextvars";
import { contextMiddleware, requestId } from "contextvars/hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { contextStorage, getContext } from "hono/context-storage";
import { HTTPException } from "hono/http-exception";
import { mount } from "hono/mount";
import { timeout } from "hono/timeout";
import { honoPaths, serveHono } from "../helpers/hono-servers.ts";
import { keepAliveAgent, randomDelay, send, sendJson } from "../helpers/http.ts";
import { leak, seedUser, user } from "../helpers/request-scenario.ts";

/** Set by a middleware of the parent app, after an await. */
const parent = new ContextVar<string>("hono-apps.parent");
/** Set by a sub-app's own middleware. */
const inner = new ContextVar<string>("hono-apps.inner");

/** What every route here answers: the request's values where it runs. */
function seen(): Record<string, string> {
  return {
    id: requestId.get("<none>"),
    user: user.get("<none>"),
    parent: parent.get("<none>"),
  };
}

/** A POST whose body fetch sends in chunks, with no content-length. */
function chunked(text: string, headers: Record<string, string>): RequestInit {
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes.slice(0, 10));
      controller.enqueue(bytes.slice(10));
      controller.close();
    },
  });
  // `duplex` is required with a stream body (fetch spec); not in the DOM lib's RequestInit yet.
  const init: RequestInit & { duplex: "half" } = { method: "POST", body, headers, duplex: "half" };
  return init;
}

/** A sub-app with `contextMiddleware()` of its own, which sets `inner`; its routes under `base`. */
function subWithOwnMiddleware(base = "/"): Hono {
  const sub = new Hono().basePath(base);
  sub.use(contextMiddleware());
  sub.use(async (_c, next) => {
    await randomDelay(2);
    inner.set(`inner after ${parent.get("<none>")}`);
    await next();
  });
  sub.all("/values", (c) => c.json({ ...seen(), inner: inner.get("<none>") }));
  return sub;
}

function buildApp(): Hono {
  const app = new Hono();
  app.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
  app.onError((error, c) => {
    if (error instanceof HTTPException)
      return c.json({ error: error.message, ...seen() }, error.status);
    return c.json({ error: String(error), ...seen() }, 500);
  });
  app.notFound((c) => c.json({ notFound: c.req.path, ...seen() }, 404));
  app.use(async (c, next) => {
    await randomDelay(2);
    parent.set(`parent of ${c.req.header("x-user") ?? "anonymous"}`);
    await next();
    // What a sub-app's own middleware set is seen here only if it ran in this same Context.
    c.header("x-inner", inner.get("<none>"));
  });

  const plain = new Hono();
  plain.get("/values", (c) => c.json(seen()));
  plain.get("/boom", () => {
    throw new Error("sub-app boom");
  });
  plain.onError((error, c) => c.json({ subOnError: error.message, ...seen() }, 500));
  app.route("/plain", plain);
  app.route("/own", subWithOwnMiddleware());
  // bodyLimit replaces c.req.raw with a Request of its own when it has read a body sent in chunks.
  app.use("/limited/*", bodyLimit({ maxSize: 1 << 16 }));
  app.route("/limited", subWithOwnMiddleware());
  const based = new Hono().basePath("/based");
  based.use(contextMiddleware());
  based.get("/values", (c) => c.json(seen()));
  app.route("/", based);

  app.mount("/mounted-fetch", (request) =>
    Response.json({ ...seen(), path: new URL(request.url).pathname }),
  );
  app.mount("/mounted-hono", subWithOwnMiddleware().fetch);
  // The same Request, passed on as it came (so the app's routes carry the prefix).
  app.all(
    "/passed-on/*",
    mount(subWithOwnMiddleware("/passed-on").fetch, { replaceRequest: false }),
  );
  // The same Request, handed by a handler to another app's fetch, with and
  // without the bindings.
  const handedOn = subWithOwnMiddleware("/handed-on");
  app.all("/handed-on/*", (c) => handedOn.fetch(c.req.raw));
  const handedOnWithEnv = subWithOwnMiddleware("/handed-on-env");
  app.all("/handed-on-env/*", (c) => handedOnWithEnv.fetch(c.req.raw, c.env));
  // The same Request, to an app with contextMiddleware of its own whose
  // bodyLimit() gives its `c` a new one before its own sub-app's mount.
  const passedOnLimited = new Hono().basePath("/passed-on-limited");
  passedOnLimited.use(contextMiddleware());
  passedOnLimited.use(bodyLimit({ maxSize: 1 << 16 }));
  passedOnLimited.route("/", subWithOwnMiddleware());
  app.all("/passed-on-limited/*", mount(passedOnLimited.fetch, { replaceRequest: false }));

  app.use(
    "/slow",
    timeout(
      5,
      (c) => new HTTPException(504, { message: `timeout ${c.req.path} ${requestId.get()}` }),
    ),
  );
  app.get("/slow", async (c) => {
    await slowRelease.get(requestId.get());
    leak.set("set after the timeout");
    slowDone.get(requestId.get())?.(seen());
    return c.text("too late");
  });

  app.post(
    "/limit",
    bodyLimit({ maxSize: 16, onError: (c) => c.json({ tooLarge: true, ...seen() }, 413) }),
    async (c) => c.json({ body: await c.req.json(), ...seen() }),
  );
  app.post("/form", async (c) => {
    const body = await c.req.parseBody();
    return c.json({ body, ...seen() });
  });
  app.get("/peek", (c) => c.json({ leak: leak.get("unset"), ...seen() }));
  return app;
}

/** /slow waits for these (by request id) before going on past its timeout. */
const slowRelease = new Map<string, Promise<void>>();
const slowDone = new Map<string, (values: Record<string, string>) => void>();

const headersOf = (id: string, who: string) => ({ "x-request-id": id, "x-user": who });

for (const path of honoPaths) {
  describe(`contextvars/hono in apps built of parts (${path})`, { timeout: 60_000 }, () => {
    it("app.route() sub-apps, with or without contextMiddleware of their own, and app.basePath(): one Context per request", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        const agent = keepAliveAgent(8);
        const routes = ["/plain/values", "/own/values", "/based/values"];
        const replies = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            send(served.base, routes[i % 3] as string, {
              agent,
              headers: headersOf(`r-${i}`, `u${i}`),
            }),
          ),
        );
        agent.destroy();
        replies.forEach((reply, i) => {
          const route = routes[i % 3];
          const own = { id: `r-${i}`, user: `u${i}`, parent: `parent of u${i}` };
          const fromSub = route === "/own/values" ? `inner after parent of u${i}` : "<none>";
          assert.equal(reply.status, 200, reply.body);
          assert.equal(reply.headers["x-request-id"], `r-${i}`);
          assert.equal(reply.headers["x-inner"], fromSub, route);
          assert.deepEqual(
            JSON.parse(reply.body),
            route === "/own/values" ? { ...own, inner: fromSub } : own,
            route,
          );
        });
      } finally {
        await served.close();
      }
    });

    it("a sub-app with its own contextMiddleware behind bodyLimit(), given a body in chunks: the parent's Context, not a second one", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const response = await fetch(
              `${served.base}/limited/values`,
              chunked(`{"n":${i},"pad":"${"x".repeat(100)}"}`, headersOf(`l-${i}`, `u${i}`)),
            );
            assert.equal(response.status, 200);
            assert.equal(response.headers.get("x-request-id"), `l-${i}`);
            assert.equal(response.headers.get("x-inner"), `inner after parent of u${i}`);
            assert.deepEqual(await response.json(), {
              id: `l-${i}`,
              user: `u${i}`,
              parent: `parent of u${i}`,
              inner: `inner after parent of u${i}`,
            });
          }),
        );
        // Without an id header: the id the client is given is the one the sub-app saw.
        const response = await fetch(
          `${served.base}/limited/values`,
          chunked("{}", { "x-user": "v" }),
        );
        const body = (await response.json()) as Record<string, string>;
        assert.equal(response.headers.get("x-request-id"), body.id);
        assert.equal(body.parent, "parent of v");
      } finally {
        await served.close();
      }
    });

    it("an app passed the same Request, whose own sub-app mounts contextMiddleware behind its bodyLimit(), given a body in chunks: the parent's Context", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const response = await fetch(
              `${served.base}/passed-on-limited/values`,
              chunked(`{"n":${i},"pad":"${"x".repeat(100)}"}`, headersOf(`p-${i}`, `u${i}`)),
            );
            assert.equal(response.status, 200);
            assert.equal(response.headers.get("x-inner"), `inner after parent of u${i}`);
            assert.deepEqual(await response.json(), {
              id: `p-${i}`,
              user: `u${i}`,
              parent: `parent of u${i}`,
              inner: `inner after parent of u${i}`,
            });
          }),
        );
      } finally {
        await served.close();
      }
    });

    it("app.mount() of a fetch handler sees the request's values; of a Hono app with contextMiddleware of its own, the same Context on node-server and behind mount()'s replaceRequest: false, a Context of its own on the fetch path", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        const own = (i: number) => ({ id: `m-${i}`, user: `u${i}`, parent: `parent of u${i}` });
        const mountedFetch = await send(served.base, "/mounted-fetch/x", {
          headers: headersOf("m-1", "u1"),
        });
        assert.deepEqual(JSON.parse(mountedFetch.body), { ...own(1), path: "/x" });
        const passedOn = await send(served.base, "/passed-on/values", {
          headers: headersOf("m-2", "u2"),
        });
        assert.equal(passedOn.headers["x-inner"], "inner after parent of u2");
        assert.deepEqual(JSON.parse(passedOn.body), {
          ...own(2),
          inner: "inner after parent of u2",
        });
        // app.mount() hands the app a new Request: on node-server the bindings
        // (`c.env`) still lead to the request's Context; without them nothing does.
        const mountedHono = await send(served.base, "/mounted-hono/values", {
          headers: headersOf("m-3", "u3"),
        });
        const reply = JSON.parse(mountedHono.body) as Record<string, string>;
        if (path === "node-server") {
          assert.equal(mountedHono.headers["x-inner"], "inner after parent of u3");
          assert.deepEqual(reply, { ...own(3), inner: "inner after parent of u3" });
        } else {
          assert.equal(mountedHono.headers["x-inner"], "<none>");
          assert.deepEqual(reply, {
            id: "m-3",
            user: "<none>",
            parent: "<none>",
            inner: "inner after <none>",
          });
        }
      } finally {
        await served.close();
      }
    });

    it("a handler that hands c.req.raw to another app's fetch: the request's Context, and its id on the response; on node-server only with c.env passed too", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        for (const [route, i] of [
          ["/handed-on-env/values", 1],
          ["/handed-on/values", 2],
        ] as const) {
          const reply = await send(served.base, route, { headers: { "x-user": `u${i}` } });
          const body = JSON.parse(reply.body) as Record<string, string>;
          assert.equal(reply.headers["x-request-id"], body.id);
          if (path === "node-server" && route === "/handed-on/values") {
            // No bindings: the Request leads nowhere, and the app opens a
            // Context of its own, whose id replaces the one echoed before.
            assert.deepEqual(body, {
              id: body.id,
              user: "<none>",
              parent: "<none>",
              inner: "inner after <none>",
            });
          } else {
            const own = { user: `u${i}`, parent: `parent of u${i}` };
            assert.deepEqual(body, { id: body.id, ...own, inner: `inner after ${own.parent}` });
          }
        }
      } finally {
        await served.close();
      }
    });

    it("app.notFound, a sub-app's own onError, and app.onError after timeout() see the request's values", async () => {
      const served = await serveHono(buildApp(), path);
      const agent = keepAliveAgent(1);
      try {
        const notFound = await send(served.base, "/nowhere", {
          agent,
          headers: headersOf("n-1", "nf"),
        });
        assert.equal(notFound.status, 404);
        assert.deepEqual(JSON.parse(notFound.body), {
          notFound: "/nowhere",
          id: "n-1",
          user: "nf",
          parent: "parent of nf",
        });
        const subError = await send(served.base, "/plain/boom", {
          agent,
          headers: headersOf("n-2", "se"),
        });
        assert.equal(subError.status, 500);
        assert.deepEqual(JSON.parse(subError.body), {
          subOnError: "sub-app boom",
          id: "n-2",
          user: "se",
          parent: "parent of se",
        });
        // timeout()'s exception is made in its timer; the handler goes on after the 504.
        const ids = ["t-0", "t-1", "t-2", "t-3"];
        const finished = ids.map((id) => {
          let release = () => {};
          slowRelease.set(id, new Promise<void>((resolve) => (release = resolve)));
          const done = new Promise<Record<string, string>>((resolve) => slowDone.set(id, resolve));
          return { id, release: () => release(), done };
        });
        const replies = await Promise.all(
          ids.map((id, i) => send(served.base, "/slow", { headers: headersOf(id, `t${i}`) })),
        );
        replies.forEach((reply, i) => {
          assert.equal(reply.status, 504);
          assert.equal(reply.headers["x-request-id"], ids[i]);
          assert.deepEqual(JSON.parse(reply.body), {
            error: `timeout /slow ${ids[i]}`,
            id: ids[i],
            user: `t${i}`,
            parent: `parent of t${i}`,
          });
        });
        for (const [i, { release, done }] of finished.entries()) {
          release();
          assert.deepEqual(await done, { id: ids[i], user: `t${i}`, parent: `parent of t${i}` });
        }
        const peek = await send(served.base, "/peek", { agent, headers: headersOf("n-3", "p") });
        assert.deepEqual(JSON.parse(peek.body), {
          leak: "unset",
          id: "n-3",
          user: "p",
          parent: "parent of p",
        });
      } finally {
        agent.destroy();
        await served.close();
      }
    });

    it("bodyLimit(): its onError sees the request's values, for a declared and a chunked body; under the limit, c.req.json() after it does", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        const declared = await send(served.base, "/limit", {
          body: JSON.stringify({ pad: "x".repeat(40) }),
          headers: headersOf("b-1", "big"),
        });
        assert.equal(declared.status, 413);
        assert.deepEqual(JSON.parse(declared.body), {
          tooLarge: true,
          id: "b-1",
          user: "big",
          parent: "parent of big",
        });
        const streamed = await fetch(
          `${served.base}/limit`,
          chunked(JSON.stringify({ pad: "x".repeat(40) }), headersOf("b-2", "big")),
        );
        assert.equal(streamed.status, 413);
        assert.deepEqual(await streamed.json(), {
          tooLarge: true,
          id: "b-2",
          user: "big",
          parent: "parent of big",
        });
        const small = await fetch(
          `${served.base}/limit`,
          chunked('{"n":1}', headersOf("b-3", "small")),
        );
        assert.equal(small.status, 200);
        assert.deepEqual(await small.json(), {
          body: { n: 1 },
          id: "b-3",
          user: "small",
          parent: "parent of small",
        });
      } finally {
        await served.close();
      }
    });

    it("c.req.parseBody() of a form, urlencoded or multipart, after a middleware set a var past an await", async () => {
      const served = await serveHono(buildApp(), path);
      try {
        await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const headers = headersOf(`f-${i}`, `u${i}`);
            const form = new FormData();
            form.set("n", String(i));
            const body = i % 2 === 0 ? new URLSearchParams({ n: String(i) }) : form;
            const response = await fetch(`${served.base}/form`, { method: "POST", body, headers });
            assert.equal(response.status, 200);
            assert.deepEqual(await response.json(), {
              body: { n: String(i) },
              id: `f-${i}`,
              user: `u${i}`,
              parent: `parent of u${i}`,
            });
          }),
        );
      } finally {
        await served.close();
      }
    });

    it("hono/context-storage's contextStorage() beside contextMiddleware, either first: 100 concurrent requests, each both its own c and its own values", async () => {
      for (const storageFirst of [true, false]) {
        const app = new Hono<{ Variables: { who: string } }>();
        const middleware = contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) });
        if (storageFirst) app.use(contextStorage(), middleware);
        else app.use(middleware, contextStorage());
        app.use(async (c, next) => {
          await randomDelay();
          c.set("who", `var of ${user.get()}`);
          await next();
        });
        app.get("/", async (c) => {
          await randomDelay();
          await new Promise((resolve) => setImmediate(resolve));
          const hono = getContext<{ Variables: { who: string } }>();
          return c.json({
            header: hono.req.header("x-request-id"),
            who: hono.var.who,
            id: requestId.get(),
            user: user.get(),
          });
        });
        const served = await serveHono(app as unknown as Hono, path);
        const agent = keepAliveAgent();
        try {
          const replies = await Promise.all(
            Array.from({ length: 100 }, (_, i) =>
              sendJson(served.base, "/", { agent, headers: headersOf(`s-${i}`, `u${i}`) }),
            ),
          );
          replies.forEach((reply, i) => {
            assert.deepEqual(
              reply,
              { header: `s-${i}`, who: `var of u${i}`, id: `s-${i}`, user: `u${i}` },
              `storage first: ${storageFirst}`,
            );
          });
        } finally {
          agent.destroy();
          await served.close();
        }
      }
    });
  });
}
