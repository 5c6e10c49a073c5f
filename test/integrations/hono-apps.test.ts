/**
 * Hono 4 apps built of parts, with `contextMiddleware()` mounted first:
 * sub-apps added with `app.route()` and `app.basePath()`, with and without
 * the middleware of their own, also behind `bodyLimit()`. Each is served
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
import { honoPaths, serveHono } from "../helpers/hono-servers.ts";
import { keepAliveAgent, randomDelay, send } from "../helpers/http.ts";
import { seedUser, user } from "../helpers/request-scenario.ts";

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
  app.use(async (c, next) => {
    await randomDelay(2);
    parent.set(`parent of ${c.req.header("x-user") ?? "anonymous"}`);
    await next();
    // What a sub-app's own middleware set is seen here only if it ran in this same Context.
    c.header("x-inner", inner.get("<none>"));
  });

  const plain = new Hono();
  plain.get("/values", (c) => c.json(seen()));
  app.route("/plain", plain);
  app.route("/own", subWithOwnMiddleware());
  // bodyLimit replaces c.req.raw with a Request of its own when it has read a body sent in chunks.
  app.use("/limited/*", bodyLimit({ maxSize: 1 << 16 }));
  app.route("/limited", subWithOwnMiddleware());
  const based = new Hono().basePath("/based");
  based.use(contextMiddleware());
  based.get("/values", (c) => c.json(seen()));
  app.route("/", based);

  return app;
}

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
  });
}
