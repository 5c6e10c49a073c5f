/**
 * Hono 4 with `contextMiddleware()` behind the runtime's own server, as Bun
 * and Deno users serve it: `Bun.serve({ fetch: app.fetch })` on Bun,
 * `Deno.serve(app.fetch)` on Deno. Node has no server of that kind: there
 * the app is served by node:http through `getRequestListener((request) =>
 * app.fetch(request))`, which hands Hono no `c.env`. Either way the
 * middleware takes its fetch path (the request is keyed by `c` and `c.req.raw`, the
 * id echoed with `c.header()`), and the clients are real: fetch, and a raw
 * socket for header bytes fetch refuses to send.
 *
 * The server is started inside a Context of its own (`serverContext`), which
 * must be as it was after every request. Some things are the runtime's
 * and are pinned per runtime (docs/runtimes.md lists them): the Context that
 * code mounted before the middleware runs in, the Context a stream's
 * `onAbort` callback and an abort listener on the request's signal run in
 * when the client goes away, the Context a WebSocket's event handlers run
 * in (Bun and Deno only), and whether a task given the request's signal
 * outlives the response (Deno aborts that signal once the response is sent).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { bind, ContextVar, copyContext, createTask, gather } from "contextvars";
import { withContext as fetchContext } from "contextvars/fetch";
import { contextMiddleware, requestId } from "contextvars/hono";
import { Hono } from "hono";
import { stream, streamText } from "hono/streaming";
import type { UpgradeWebSocket } from "hono/ws";
import { abortAfterFirstChunk, close, listen, randomDelay, UUID } from "../helpers/http.ts";
import {
  asyncStage,
  expectIdHandling,
  leak,
  type Observed,
  observe,
  seedUser,
  setThenReject,
  setThenThrow,
  stage,
  streamChunks,
  user,
  type Values,
} from "../helpers/request-scenario.ts";
import { type RuntimeName, runtime, runtimeLabel } from "../runtimes/runtime.ts";

type Fetch = (request: Request) => Response | Promise<Response>;

/** Hono's WebSocket helper for the runtime: hono/bun (with the handlers Bun.serve takes), hono/deno. */
interface WebSocketHelper {
  upgradeWebSocket: UpgradeWebSocket;
  websocket?: object;
}

/** Undefined on Node: Node 20 has no WebSocket client, and Hono needs @hono/node-ws there. */
async function webSocketHelper(): Promise<WebSocketHelper | undefined> {
  // Each adapter reads its runtime's global as it loads: import only the runtime's own.
  if (runtime === "bun") return await import("hono/bun");
  if (runtime === "deno") return await import("hono/deno");
  return undefined;
}

/** The parts of Bun's and Deno's globals these tests use. */
interface NativeServers {
  Bun?: {
    serve(options: { hostname: string; port: number; fetch: Fetch; websocket?: object }): {
      readonly port: number;
      stop(closeActiveConnections?: boolean): Promise<void>;
    };
  };
  Deno?: {
    serve(
      options: { hostname: string; port: number; onListen(): void },
      handler: Fetch,
    ): { readonly addr: { readonly port: number }; shutdown(): Promise<void> };
  };
}

interface Served {
  readonly base: string;
  close(): Promise<void>;
}

/** Serves `handler` on 127.0.0.1, port 0, with the runtime's own server (node:http on Node). */
async function serve(handler: Fetch, websocket?: object): Promise<Served> {
  const { Bun, Deno } = globalThis as NativeServers;
  if (runtime === "bun") {
    assert.ok(Bun !== undefined, "Bun.serve");
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handler, websocket });
    return { base: `http://127.0.0.1:${server.port}`, close: () => server.stop(true) };
  }
  if (runtime === "deno") {
    assert.ok(Deno !== undefined, "Deno.serve");
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
    return { base: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
  }
  // Without the bindings argument, c.env is undefined: the fetch path.
  const server = createServer(getRequestListener((request) => handler(request)));
  return { base: await listen(server), close: () => close(server) };
}

function expectOn<T>(actual: T, table: Record<RuntimeName, T>): void {
  assert.deepEqual(actual, table[runtime], `on ${runtimeLabel}`);
}

/** Set in the Context the server is started in, and nowhere else. */
const marker = new ContextVar<string>("native.marker");
/** requestId values a streaming callback saw once its last chunk was written. */
const streamed: string[] = [];
/** How /outlive's task, given the request's signal, ended, by request id. */
const outlived = new Map<string, Promise<string>>();
/** Opened by the test once it has read /outlive's whole response. */
let responseRead: { promise: Promise<void>; resolve(): void } | undefined;
/** What /abortable's stream saw once its client went away, by request id. */
const aborted = new Map<string, Promise<AbortSeen>>();

interface AbortSeen {
  aborted: boolean;
  onAbort: string;
  onAbortBound: string;
  callbackAfter: string;
  /** What abort listeners on the request's own signal (`c.req.raw.signal`) read, plain and bound. */
  signal: string;
  signalBound: string;
}

/**
 * Holds the requests that arrive at it until `count` have: every one of
 * them is then inside its handler at once. Fails them all, rather than
 * hanging, if the rest do not come within 20 s.
 */
class Barrier {
  #arrived = 0;
  readonly #all: Promise<void>;
  #open = () => {};
  constructor(readonly count: number) {
    this.#all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${this.#arrived} of ${count} requests arrived`)),
        20_000,
      );
      this.#open = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    // A rejection nobody awaits yet must not end the process.
    this.#all.catch(() => {});
  }
  arrive(): Promise<void> {
    if (++this.#arrived === this.count) this.#open();
    return this.#all;
  }
}

let crowd: Barrier | undefined;

type AppEnv = { Variables: { outer: string } };

function buildApp(ws: WebSocketHelper | undefined): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // Mounted before the integration on purpose: what it sees is the runtime's.
  app.use(async (c, next) => {
    c.set("outer", marker.get("none"));
    await next();
  });
  app.use(contextMiddleware({ seed: (c) => seedUser(c.req.header("x-user")) }));
  app.onError((_error, c) => c.json({ id: requestId.get(), leak: leak.get() }, 500));

  app.use("/concurrent", async (_c, next) => {
    await asyncStage();
    await next();
  });
  app.get("/concurrent", async (c) => {
    await crowd?.arrive();
    const fromTimer = await new Promise<string>((resolve) => {
      // A default: a throw in a timer would leave the request unanswered.
      setTimeout(() => resolve(requestId.get("<none>")), Math.floor(Math.random() * 3));
    });
    const observed = await observe();
    return c.json({ ...observed, fromTimer, marker: marker.get("none") });
  });

  app.get("/id", (c) => c.text(requestId.get()));
  app.get("/own-response", () => new Response(requestId.get()));
  app.get("/redirect", () => Response.redirect("http://127.0.0.1/elsewhere", 302));
  app.get("/own-id", () => new Response("x", { headers: { "x-request-id": "the handler's" } }));
  app.get("/outer", (c) => c.json({ outer: c.get("outer"), inner: marker.get("none") }));

  app.use("/body/*", async (_c, next) => {
    stage.set(`mw:${user.get()}`);
    await randomDelay();
    await next();
  });
  app.use("/body/*", async (_c, next) => {
    stage.set(`${stage.get()}+second`);
    await next();
  });
  app.post("/body/json", async (c) => {
    const body: unknown = await c.req.json();
    return c.json({ id: requestId.get(), user: user.get(), stage: stage.get(), body });
  });
  app.post("/body/text", async (c) => {
    const body = await c.req.text();
    return c.json({ id: requestId.get(), user: user.get(), stage: stage.get(), body });
  });

  app.get("/throw", setThenThrow);
  app.use("/reject", setThenReject);
  app.get("/peek", (c) =>
    c.json({ leak: leak.get("unset"), stage: stage.get("unset"), user: user.get() }),
  );

  app.get("/stream", (c) =>
    stream(c, async (out) => {
      for await (const chunk of streamChunks()) await out.write(chunk);
      streamed.push(requestId.get());
    }),
  );
  app.get("/stream-text", (c) =>
    streamText(c, async (out) => {
      for (let i = 0; i < 3; i++) {
        await out.sleep(Math.floor(Math.random() * 3));
        await randomDelay(2);
        await out.writeln(`${i}:${requestId.get()}|${user.get()}`);
      }
      streamed.push(requestId.get());
    }),
  );

  // Answers at once; its task, given the request's own signal, waits until
  // the test has read the response, then reports whether it was cancelled.
  app.get("/outlive", (c) => {
    const gate = responseRead;
    assert.ok(gate !== undefined, "the test opens a gate first");
    const task = createTask(
      async (signal) => {
        await Promise.race([
          gate.promise,
          new Promise((resolve) => signal.addEventListener("abort", resolve)),
        ]);
        return `ran in ${requestId.get("<none>")}`;
      },
      { signal: c.req.raw.signal },
    );
    outlived.set(
      requestId.get(),
      task.then(
        (value) => value,
        (error: unknown) => `cancelled: ${error instanceof Error ? error.name : String(error)}`,
      ),
    );
    return c.text("answered");
  });

  // Writes until the client goes away (or 1,000 chunks), then reports what
  // onAbort callbacks, plain and bound, and the callback itself read.
  app.get("/abortable", (c) => {
    const id = requestId.get();
    let report = (_seen: AbortSeen) => {};
    aborted.set(
      id,
      new Promise<AbortSeen>((resolve) => {
        report = resolve;
      }),
    );
    const signal = c.req.raw.signal;
    let signalPlain = "(not called)";
    signal.addEventListener("abort", () => {
      signalPlain = requestId.get("<none>");
    });
    // Listeners run in the order added: this one last.
    const signalBound = new Promise<string>((resolve) => {
      signal.addEventListener(
        "abort",
        bind(() => resolve(requestId.get("<none>"))),
      );
    });
    return stream(c, async (out) => {
      let onAbort = "(not called)";
      let onAbortBound = "(not called)";
      out.onAbort(() => {
        onAbort = requestId.get("<none>");
      });
      out.onAbort(
        bind(() => {
          onAbortBound = requestId.get("<none>");
        }),
      );
      for (let i = 0; i < 1000 && !out.aborted; i++) {
        await out.write("x".repeat(64));
        await out.sleep(2);
      }
      const callbackAfter = requestId.get("<none>");
      const bound = await signalBound;
      report({
        aborted: out.aborted,
        onAbort,
        onAbortBound,
        callbackAfter,
        signal: signalPlain,
        signalBound: bound,
      });
    });
  });

  app.get("/tasks", async (c) => {
    const task = createTask(async () => {
      await randomDelay();
      user.set(`task of ${user.get()}`);
      await randomDelay();
      return { id: requestId.get(), user: user.get() };
    });
    const branches = await gather(
      async () => {
        stage.set("a");
        await randomDelay();
        return `${requestId.get()}|${user.get()}|${stage.get()}`;
      },
      async () => {
        await randomDelay();
        stage.set("b");
        await new Promise((resolve) => setImmediate(resolve));
        return `${requestId.get()}|${user.get()}|${stage.get()}`;
      },
    );
    const fromTask = await task;
    const here = { id: requestId.get(), user: user.get(), stage: stage.get("unset") };
    return c.json({ fromTask, branches, here });
  });

  // Each message is answered with what the socket's event handler reads, as
  // it is and through a function bound (contextvars' bind) at the upgrade.
  if (ws !== undefined) {
    const where = () => `${requestId.get("<none>")}|${marker.get("none")}`;
    app.get(
      "/ws",
      ws.upgradeWebSocket(() => {
        const upgradedIn = requestId.get();
        const bound = bind(where);
        return {
          onMessage(_event, socket) {
            socket.send(JSON.stringify({ upgradedIn, plain: where(), bound: bound() }));
          },
        };
      }),
    );
  }
  return app;
}

/** A POST whose body is a stream of `pieces` parts, with short pauses between them. */
function piecewise(text: string, pieces: number): RequestInit {
  const bytes = new TextEncoder().encode(text);
  const size = Math.ceil(bytes.length / pieces);
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      if (at > 0) await randomDelay(2);
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
  // `duplex` is required with a stream body (fetch spec); not in the DOM lib's RequestInit yet.
  const init: RequestInit & { duplex: "half" } = { method: "POST", body, duplex: "half" };
  return init;
}

describe("contextvars/hono behind the runtime's own server (Bun.serve, Deno.serve; node:http on Node)", {
  timeout: 60_000,
}, () => {
  const serverContext = copyContext();
  let served: Served | undefined;
  let base = "";
  before(async () => {
    const ws = await webSocketHelper();
    served = await serverContext.run(() => {
      marker.set("the server's");
      return serve(buildApp(ws).fetch, ws?.websocket);
    });
    base = served.base;
  });
  after(() => served?.close());

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { headers });

  it("200 concurrent requests, all in their handlers at once, each see only their own values", async () => {
    const count = 200;
    crowd = new Barrier(count);
    try {
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const response = await get("/concurrent", {
            "x-request-id": `native-${i}`,
            "x-user": `user-${i}`,
          });
          const body = (await response.json()) as Observed & { fromTimer: string; marker: string };
          return { status: response.status, echoed: response.headers.get("x-request-id"), body };
        }),
      );
      replies.forEach(({ status, echoed, body }, i) => {
        const own: Values = { id: `native-${i}`, user: `user-${i}`, stage: `mw:user-${i}` };
        assert.equal(status, 200);
        assert.equal(echoed, `native-${i}`);
        assert.deepEqual(body, { ...own, deep: own, fromTimer: own.id, marker: "none" });
      });
    } finally {
      crowd = undefined;
    }
  });

  it("the id is read from the header when well-formed, replaced when malformed, and echoed", async () => {
    const kept = await get("/id", { "x-request-id": "abc-123" });
    assert.equal(await kept.text(), "abc-123");
    assert.equal(kept.headers.get("x-request-id"), "abc-123");
    for (const bad of ["bad id", "x".repeat(201), '"quoted"']) {
      const replaced = await get("/id", { "x-request-id": bad });
      const id = await replaced.text();
      assert.match(id, UUID, bad);
      assert.equal(replaced.headers.get("x-request-id"), id);
    }
    const none = await get("/id");
    const generated = await none.text();
    assert.match(generated, UUID);
    assert.equal(none.headers.get("x-request-id"), generated);
    // Bytes fetch will not send (a tab, Latin-1, the header twice, empty), on a raw socket.
    await expectIdHandling(base);
  });

  it("the id is echoed on a Response the handler builds itself", async () => {
    const own = await get("/own-response", { "x-request-id": "r-1" });
    assert.equal(own.headers.get("x-request-id"), "r-1");
    assert.equal(await own.text(), "r-1");
    // Response.redirect's headers are immutable: Hono copies the response to add one.
    const redirect = await fetch(`${base}/redirect`, {
      headers: { "x-request-id": "r-2" },
      redirect: "manual",
    });
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get("x-request-id"), "r-2");
    await redirect.body?.cancel();
    const kept = await get("/own-id", { "x-request-id": "r-3" });
    assert.equal(kept.headers.get("x-request-id"), "the handler's");
    await kept.body?.cancel();
  });

  it("values set in earlier middleware reach later middleware and the handler, across c.req.json() and c.req.text()", async () => {
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const json = i % 2 === 0;
        const payload = json
          ? JSON.stringify({ n: i, pad: "x".repeat(3000) })
          : `text ${i} `.repeat(300);
        const init = piecewise(payload, 4);
        const response = await fetch(`${base}/body/${json ? "json" : "text"}`, {
          ...init,
          headers: {
            "content-type": json ? "application/json" : "text/plain",
            "x-request-id": `body-${i}`,
            "x-user": `poster-${i}`,
          },
        });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("x-request-id"), `body-${i}`);
        assert.deepEqual(await response.json(), {
          id: `body-${i}`,
          user: `poster-${i}`,
          stage: `mw:poster-${i}+second`,
          body: json ? { n: i, pad: "x".repeat(3000) } : payload,
        });
      }),
    );
  });

  it("a throw or rejection reaches app.onError in the request's Context; the next request sees nothing left over", async () => {
    for (const path of ["/throw", "/reject"]) {
      const failed = await get(path, { "x-request-id": `fail${path}` });
      assert.equal(failed.status, 500, path);
      assert.equal(failed.headers.get("x-request-id"), `fail${path}`, "the id is echoed on errors");
      assert.deepEqual(await failed.json(), { id: `fail${path}`, leak: `set by ${path}` });
      const next = await get("/peek", { "x-user": "next" });
      assert.deepEqual(await next.json(), { leak: "unset", stage: "unset", user: "next" });
    }
    assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
  });

  it("stream() and streamText() callbacks read the request's values after awaits", async () => {
    streamed.length = 0;
    const ids = Array.from({ length: 20 }, (_, i) => `stream-${i}`);
    const texts = await Promise.all(
      ids.map(async (id, i) => {
        const path = i % 2 === 0 ? "/stream" : "/stream-text";
        const response = await get(path, { "x-request-id": id, "x-user": `s${i}` });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get("x-request-id"), id);
        return response.text();
      }),
    );
    texts.forEach((text, i) => {
      const expected =
        i % 2 === 0
          ? `stream-${i}|s${i}\n`.repeat(5)
          : [0, 1, 2].map((n) => `${n}:stream-${i}|s${i}\n`).join("");
      assert.equal(text, expected);
    });
    // Each callback pushes once its last write is read, before its stream closes.
    assert.deepEqual([...streamed].sort(), [...ids].sort());
  });

  it("a stream whose client goes away: its callback keeps the Context; onAbort runs in the request's (Bun), in none (Node's fetch path, Deno), an abort listener on c.req.raw.signal in the request's (Deno), in none (Node's fetch path, Bun); bound, both in the request's", async () => {
    const ids = ["abort-0", "abort-1", "abort-2"];
    await Promise.all(
      ids.map(async (id) => {
        const headers = await abortAfterFirstChunk(`${base}/abortable`, id);
        assert.equal(headers.get("x-request-id"), id);
      }),
    );
    for (const id of ids) {
      const seen = await aborted.get(id);
      assert.ok(seen !== undefined, id);
      assert.equal(seen.aborted, true, `${id}: the server saw the client go away`);
      assert.equal(seen.callbackAfter, id);
      assert.equal(seen.onAbortBound, id);
      expectOn(seen.onAbort, { node: "<none>", bun: id, deno: "<none>" });
      assert.equal(seen.signalBound, id);
      expectOn(seen.signal, { node: "<none>", bun: "<none>", deno: id });
    }
  });

  it("a task given the request's signal outlives the response (Node's fetch path, Bun); on Deno the signal aborts once the response is sent, and the task is cancelled", async () => {
    for (const id of ["outlive-0", "outlive-1"]) {
      let resolve = () => {};
      responseRead = { promise: new Promise<void>((r) => (resolve = r)), resolve: () => resolve() };
      const response = await get("/outlive", { "x-request-id": id });
      assert.equal(await response.text(), "answered");
      responseRead.resolve();
      const outcome = await outlived.get(id);
      expectOn(outcome, {
        node: `ran in ${id}`,
        bun: `ran in ${id}`,
        deno: "cancelled: AbortError",
      });
    }
  });

  it("createTask and gather in a handler run in copies of the request's Context", async () => {
    const replies = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const response = await get("/tasks", { "x-request-id": `task-${i}`, "x-user": `t${i}` });
        assert.equal(response.status, 200);
        return response.json();
      }),
    );
    replies.forEach((reply, i) => {
      assert.deepEqual(reply, {
        fromTask: { id: `task-${i}`, user: `task of t${i}` },
        branches: [`task-${i}|t${i}|a`, `task-${i}|t${i}|b`],
        here: { id: `task-${i}`, user: `t${i}`, stage: "unset" },
      });
    });
  });

  it("a middleware before contextMiddleware runs in the server's Context (Node, Bun), in none (Deno); below it, a fresh copy of the root", async () => {
    const response = await get("/outer");
    const seen = (await response.json()) as { outer: string; inner: string };
    expectOn(seen, {
      node: { outer: "the server's", inner: "none" },
      bun: { outer: "the server's", inner: "none" },
      deno: { outer: "none", inner: "none" },
    });
  });

  it("a WebSocket upgraded below the middleware opens; its events run in the request's Context (Deno), in Bun.serve()'s (Bun); bound at the upgrade, in the request's", {
    skip:
      runtime === "node"
        ? "Node 20 has no WebSocket client; Hono needs @hono/node-ws there"
        : false,
  }, async () => {
    const replies = await Promise.all(
      [0, 1, 2].map(async () => {
        const socket = new WebSocket(`${base.replace("http:", "ws:")}/ws`);
        try {
          return await new Promise<{ upgradedIn: string; plain: string; bound: string }>(
            (resolve, reject) => {
              socket.onopen = () => socket.send("which Context?");
              socket.onmessage = (event) => resolve(JSON.parse(String(event.data)));
              socket.onerror = () => reject(new Error("WebSocket error"));
            },
          );
        } finally {
          socket.close();
        }
      }),
    );
    assert.equal(new Set(replies.map((r) => r.upgradedIn)).size, 3, "an id per request");
    for (const { upgradedIn, plain, bound } of replies) {
      assert.match(upgradedIn, UUID);
      const request = `${upgradedIn}|none`;
      expectOn(
        { plain, bound },
        {
          node: { plain: "(not run)", bound: "(not run)" },
          bun: { plain: "<none>|the server's", bound: request },
          deno: { plain: request, bound: request },
        },
      );
    }
  });

  it("the server's own Context is as it was after every request", () => {
    assert.deepEqual(
      [...serverContext.entries()].map(([v, value]) => [v.name, value]),
      [["native.marker", "the server's"]],
    );
    assert.equal(requestId.get("unset"), "unset");
    assert.equal(user.get("unset"), "unset");
    assert.equal(marker.get("unset"), "unset");
  });
});

describe("contextvars/fetch withContext behind the runtime's own server (Bun.serve, Deno.serve; node:http on Node)", {
  timeout: 60_000,
}, () => {
  const serverContext = copyContext();
  let served: Served | undefined;
  let base = "";
  before(async () => {
    const handler = fetchContext(
      async (request: Request) => {
        await randomDelay();
        stage.set(`handler:${user.get()}`);
        await randomDelay();
        const fromTimer = await new Promise<string>((resolve) =>
          setTimeout(() => resolve(requestId.get()), 1),
        );
        return Response.json({
          id: requestId.get(),
          user: user.get(),
          stage: stage.get(),
          fromTimer,
          marker: marker.get("none"),
          path: new URL(request.url).pathname,
        });
      },
      { seed: (request) => seedUser(request.headers.get("x-user") ?? undefined) },
    );
    served = await serverContext.run(() => {
      marker.set("the server's");
      return serve(handler);
    });
    base = served.base;
  });
  after(() => served?.close());

  it("100 concurrent requests each see their own id, seeded user and sets, after awaits and in a timer; the id is echoed, a malformed one replaced", async () => {
    const replies = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const id = i % 10 === 9 ? "bad id" : `plain-${i}`;
        const response = await fetch(`${base}/p${i}`, {
          headers: { "x-request-id": id, "x-user": `user-${i}` },
        });
        return { echoed: response.headers.get("x-request-id"), body: await response.json() };
      }),
    );
    replies.forEach(({ echoed, body }, i) => {
      const expected = i % 10 === 9 ? (echoed as string) : `plain-${i}`;
      if (i % 10 === 9) assert.match(expected, UUID);
      assert.equal(echoed, expected);
      assert.deepEqual(body, {
        id: expected,
        user: `user-${i}`,
        stage: `handler:user-${i}`,
        fromTimer: expected,
        marker: "none",
        path: `/p${i}`,
      });
    });
  });

  it("the server's own Context is as it was after every request", () => {
    assert.deepEqual(
      [...serverContext.entries()].map(([v, value]) => [v.name, value]),
      [["native.marker", "the server's"]],
    );
    assert.equal(requestId.get("unset"), "unset");
  });
});

/** Bun.serve with `routes`: Bun calls a route's handler itself, never `fetch`. */
interface BunRoutes {
  serve(options: {
    hostname: string;
    port: number;
    routes: Record<string, Fetch | Record<string, Fetch>>;
    fetch: Fetch;
  }): { readonly port: number; stop(closeActiveConnections?: boolean): Promise<void> };
}

describe("Bun.serve's routes: each route handler is wrapped itself", () => {
  it("wrapped route handlers, per path and per method, run each request in its own Context with the route's params; one left plain runs in Bun.serve()'s Context, where one request's set is read by the next", {
    skip: runtime === "bun" ? false : "Bun.serve's routes are Bun's",
  }, async () => {
    const { Bun } = globalThis as unknown as { Bun: BunRoutes };
    const route = (request: Request & { params?: Record<string, string> }) => {
      const found = user.get("-");
      user.set(request.headers.get("x-user") ?? "anonymous");
      return randomDelay().then(() =>
        Response.json({
          id: requestId.get("-"),
          found,
          after: user.get(),
          marker: marker.get("none"),
          params: request.params ?? {},
        }),
      );
    };
    const serverContext = copyContext();
    const server = serverContext.run(() => {
      marker.set("the server's");
      return Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        routes: {
          "/users/:id": fetchContext(route),
          "/orders/:id": { GET: fetchContext(route) },
          "/plain": route,
        },
        fetch: fetchContext(() => new Response("not found", { status: 404 })),
      });
    });
    const base = `http://127.0.0.1:${server.port}`;
    const get = async (path: string, who: string) => {
      const response = await fetch(`${base}${path}`, { headers: { "x-user": who } });
      return (await response.json()) as Record<string, unknown>;
    };
    try {
      for (const path of ["/users", "/orders"]) {
        const replies = await Promise.all(
          Array.from({ length: 50 }, (_, i) => get(`${path}/${i}`, `user-${i}`)),
        );
        replies.forEach((reply, i) => {
          assert.match(String(reply.id), UUID);
          assert.deepEqual(
            { ...reply, id: "" },
            { id: "", found: "-", after: `user-${i}`, marker: "none", params: { id: `${i}` } },
          );
        });
        assert.equal(new Set(replies.map((r) => r.id)).size, 50);
      }
      const first = await get("/plain", "alice");
      const second = await get("/plain", "bob");
      assert.deepEqual(
        [first.found, first.marker, second.found, second.id],
        ["-", "the server's", "alice", "-"],
      );
    } finally {
      await server.stop(true);
    }
    assert.equal(
      serverContext.get(user),
      "bob",
      "the plain route's sets landed in the server's Context",
    );
  });
});
