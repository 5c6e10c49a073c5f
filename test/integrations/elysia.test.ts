/**
 * Elysia 1.4 with `withContext` from `contextvars/fetch` put around its
 * handler by `app.wrap()`, as docs/integrations.md#elysia shows. On Bun the
 * app serves itself with `app.listen()`, which hands Bun.serve a handler per
 * route (`routes`) besides `app.fetch`: `wrap()` reaches both. On Node and
 * Deno the app's `fetch` is served by node:http through
 * `getRequestListener`. The clients are real: fetch over 127.0.0.1, and on
 * Bun a WebSocket.
 *
 * Checked: what `onRequest` sets and what an async `derive` sets after an
 * await reach the handler, `onAfterHandle`, `onError` and
 * `onAfterResponse`; a generator's chunks, on Bun as written (on Node,
 * chunks after the first are pulled outside the request's Context), and on
 * every runtime through `inRequest` below, which runs each `next()` in the
 * request's Context; a WebSocket's handlers (Bun), which run outside any
 * request and get its values from a Context the upgrade request copies in
 * `resolve`.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { bind, type Context, ContextVar, copyContext } from "contextvars";
import { requestId, withContext } from "contextvars/fetch";
import { Elysia } from "elysia";
import { close, listen, randomDelay } from "../helpers/http.ts";
import { runtime } from "../runtimes/runtime.ts";

const user = new ContextVar<string>("elysia.user");
const stage = new ContextVar<string>("elysia.stage");

/** Runs each step of `source` in the Context current where it is called: the request's. */
function inRequest<T>(source: AsyncGenerator<T>): AsyncGenerator<T> {
  const next = bind(() => source.next()); // bound here, in the handler
  return (async function* () {
    for (let step = await next(); !step.done; step = await next()) yield step.value;
  })();
}

async function* chunks(): AsyncGenerator<string> {
  for (let i = 0; i < 3; i++) {
    await randomDelay();
    yield `${i} ${requestId.get("none")} ${user.get("none")}\n`;
  }
}

function buildApp() {
  const app = new Elysia()
    .wrap((handle) => withContext(handle as unknown as (request: Request) => Response))
    .onRequest(({ request }) => {
      user.set(request.headers.get("x-user") ?? "anonymous");
    })
    .derive(async () => {
      await randomDelay();
      stage.set(`derive ${user.get()}`); // after an await: still seen below
      return { derivedId: requestId.get() };
    })
    .onAfterHandle(({ set }) => {
      set.headers["x-after"] = `${requestId.get()} ${user.get()}`;
    })
    .onAfterResponse(({ request }) => {
      afterResponse.set(
        request.headers.get("x-request-id") ?? "",
        `${requestId.get("none")} ${user.get("none")}`,
      );
    })
    .onError(({ error }) => ({ error: String(error), id: requestId.get(), user: user.get() }))
    .get("/", async ({ derivedId }) => {
      await randomDelay();
      return { id: requestId.get(), user: user.get(), stage: stage.get("unset"), derivedId };
    })
    .get("/throw", async () => {
      await randomDelay();
      throw new Error("boom");
    })
    .get("/generator", chunks)
    .get("/bound-generator", () => inRequest(chunks()));
  // Elysia's WebSockets need an adapter of their own on Node (@elysiajs/node); Bun's serves them.
  if (runtime !== "bun") return app;
  return app
    .resolve(() => ({ context: copyContext() })) // for the upgrade request, in its Context: a copy for the socket
    .ws("/ws", {
      message(ws, message) {
        const { context } = ws.data as unknown as { context: Context };
        context.run(() => {
          user.set(`${user.get()}+`); // the socket's own copy: kept from message to message
          ws.send(`${message} ${requestId.get("none")} ${user.get()}`);
        });
      },
    });
}

/** What each request's onAfterResponse hook read, by the id its client sent. */
const afterResponse = new Map<string, string>();

const N = 100;
const headersOf = (i: number) => ({ "x-request-id": `req-${i}`, "x-user": `user-${i}` });
const expectedChunks = (i: number) => [0, 1, 2].map((k) => `${k} req-${i} user-${i}\n`).join("");

describe("Elysia with withContext through app.wrap()", { timeout: 60_000 }, () => {
  let base: string;
  let stop: () => Promise<void>;
  before(async () => {
    const app = buildApp();
    if (runtime === "bun") {
      app.listen({ hostname: "127.0.0.1", port: 0 });
      const server = app.server as unknown as { port: number };
      base = `http://127.0.0.1:${server.port}`;
      stop = async () => {
        await app.stop(true);
      };
    } else {
      const server = createServer(getRequestListener((request) => app.fetch(request)));
      base = await listen(server);
      stop = () => close(server);
    }
  });
  after(() => stop());

  it(`hands ${N} concurrent requests their own values in hooks, handler and onError`, async () => {
    await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const response = await fetch(`${base}/`, { headers: headersOf(i) });
        assert.equal(response.headers.get("x-request-id"), `req-${i}`);
        assert.equal(response.headers.get("x-after"), `req-${i} user-${i}`);
        assert.deepEqual(await response.json(), {
          id: `req-${i}`,
          user: `user-${i}`,
          stage: `derive user-${i}`,
          derivedId: `req-${i}`,
        });
        const failed = await fetch(`${base}/throw`, { headers: headersOf(i) });
        assert.deepEqual(await failed.json(), {
          error: "Error: boom",
          id: `req-${i}`,
          user: `user-${i}`,
        });
      }),
    );
    // The hooks run once each response is sent: wait for all of them (bounded), not a fixed time.
    const deadline = Date.now() + 20_000;
    while (afterResponse.size < N && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (let i = 0; i < N; i++) assert.equal(afterResponse.get(`req-${i}`), `req-${i} user-${i}`);
  });

  it(`streams a generator's chunks with the request's values, ${N} at once`, async () => {
    const paths = runtime === "bun" ? ["/generator", "/bound-generator"] : ["/bound-generator"];
    for (const path of paths) {
      const bodies = await Promise.all(
        Array.from({ length: N }, async (_, i) =>
          (await fetch(`${base}${path}`, { headers: headersOf(i) })).text(),
        ),
      );
      assert.deepEqual(
        bodies,
        bodies.map((_, i) => expectedChunks(i)),
        path,
      );
    }
  });

  it("gives a WebSocket's handlers the upgrade request's values through resolve()", {
    skip: runtime !== "bun",
  }, async () => {
    const replies = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const socket = new WebSocket(`${base.replace("http", "ws")}/ws`, {
          headers: headersOf(i),
        } as never);
        await new Promise((resolve) => socket.addEventListener("open", resolve, { once: true }));
        const got: string[] = [];
        for (const message of ["a", "b"]) {
          const reply = new Promise<string>((resolve) =>
            socket.addEventListener("message", (event) => resolve(String(event.data)), {
              once: true,
            }),
          );
          socket.send(message);
          got.push(await reply);
        }
        socket.close();
        return got;
      }),
    );
    assert.deepEqual(
      replies,
      replies.map((_, i) => [`a req-${i} user-${i}+`, `b req-${i} user-${i}++`]),
    );
  });
});

describe("Elysia with aot: false", { timeout: 60_000 }, () => {
  function aotOff() {
    return new Elysia({ aot: false })
      .wrap((handle) => withContext(handle as unknown as (request: Request) => Response))
      .onRequest(({ request }) => {
        user.set(request.headers.get("x-user") ?? "anonymous");
      })
      .get("/", async () => {
        await randomDelay();
        return { id: requestId.get("none"), user: user.get("none") };
      });
  }

  it("ignores wrap(): Elysia's dynamic handler applies no wrapper", async () => {
    const response = await aotOff().handle(
      new Request("http://localhost/", { headers: headersOf(0) }),
    );
    assert.equal((await response.json()).id, "none");
  });

  it("gives 50 concurrent requests their own values with withContext around app.fetch", async () => {
    const app = aotOff();
    const handler = withContext(app.fetch);
    type Serve = (options: object) => { port: number; stop(force: boolean): Promise<void> };
    const { Bun } = globalThis as { Bun?: { serve: Serve } };
    let served: { base: string; stop(): Promise<void> };
    if (Bun !== undefined) {
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler });
      served = { base: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
    } else {
      const server = createServer(getRequestListener((request) => handler(request)));
      served = { base: await listen(server), stop: () => close(server) };
    }
    try {
      const bodies = await Promise.all(
        Array.from({ length: 50 }, async (_, i) =>
          (await fetch(`${served.base}/`, { headers: headersOf(i) })).json(),
        ),
      );
      assert.deepEqual(
        bodies,
        bodies.map((_, i) => ({ id: `req-${i}`, user: `user-${i}` })),
      );
    } finally {
      await served.stop();
    }
  });
});
