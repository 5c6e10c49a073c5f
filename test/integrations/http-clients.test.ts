/**
 * Outgoing HTTP calls made inside requests (docs/observability.md, "Outgoing
 * HTTP calls"): service A (withContext) calls service B on 127.0.0.1 with a
 * real client over pooled keep-alive connections, 200 requests at once. Each
 * call must carry its own request's id, baggage and trace, the client's
 * callbacks and hooks must see its own request's Context, and a deadline
 * must abort the call.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { type Agent, createServer, request as httpRequest, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { context, trace } from "@opentelemetry/api";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import axios, { AxiosHeaders, type AxiosInstance } from "axios";
import { bind, ContextVar, currentTask, timeout } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import got from "got";
import { type Dispatcher, interceptors, Pool, request as undiciRequest } from "undici";
import { close, keepAliveAgent, listen, sendJson } from "../helpers/http.ts";

context.setGlobalContextManager(new ContextVarsContextManager().enable());
trace.setGlobalTracerProvider(new BasicTracerProvider());
const tracer = trace.getTracer("http-clients");

const user = new ContextVar<string>("user");
const carry = contextPropagation({ "user.id": user });
/** The same requests' ids on a raw AsyncLocalStorage: what Node itself gives. */
const raw = new AsyncLocalStorage<string>();
const N = 200;

/** Where a client's callback ran: [requestId there, raw ALS store there]. */
type Seen = Map<string, [string, string | undefined]>;
const stamp = (seen: Seen, where: string) =>
  seen.set(where, [requestId.get("<none>"), raw.getStore()]);

/** A call to B: resolves to the headers B received. */
type Call = (b: string, path: string, seen: Seen) => Promise<Record<string, string>>;

interface Outcome {
  id: string;
  traceId: string;
  seen: [string, [string, string | undefined]][];
  headers?: Record<string, string>;
  error?: string;
  ms?: number;
}

let b: Server;
let bBase: string;
const aborted: string[] = [];
const failedOnce = new Set<string>();

before(async () => {
  // B echoes the headers it got after 0-4 ms; /slow answers after 3 s unless
  // the client goes away; /flaky answers 503 the first time an id asks.
  b = createServer((req, res) => {
    const id = String(req.headers["x-request-id"]);
    if (req.url?.startsWith("/slow")) {
      const late = setTimeout(() => res.end("late"), 3_000);
      res.on("close", () => {
        if (res.writableFinished) return;
        clearTimeout(late);
        aborted.push(id);
      });
      return;
    }
    // Keyed by `for` where the caller names itself in the path: a retry may
    // carry another request's headers (the pinned case below), and keyed by
    // the header it could meet a 503 again and run out of retries.
    const key = new URL(req.url ?? "/", "http://b").searchParams.get("for") ?? id;
    if (req.url?.startsWith("/flaky") && !failedOnce.has(key)) {
      failedOnce.add(key);
      res.statusCode = 503;
      res.end();
      return;
    }
    setTimeout(() => res.end(JSON.stringify(req.headers)), Math.random() * 4);
  });
  bBase = await listen(b);
});
after(() => close(b));

/** Runs N concurrent requests through a service A whose handler makes `call`. */
async function through(call: Call, path = "/echo", count = N): Promise<Outcome[]> {
  failedOnce.clear(); // each request's first call to /flaky fails
  const a = createServer(
    withContext(async (_req, res) => {
      const id = requestId.get();
      user.set(`u-${id}`);
      await tracer.startActiveSpan("handle", async (span) => {
        const outcome: Outcome = { id, traceId: span.spanContext().traceId, seen: [] };
        const seen: Seen = new Map();
        await raw.run(id, async () => {
          const started = Date.now();
          try {
            outcome.headers =
              path === "/slow"
                ? await timeout(50, () => call(bBase, path, seen))
                : await call(bBase, path, seen);
          } catch (error) {
            outcome.error = (error as Error).name;
            outcome.ms = Date.now() - started;
          }
        });
        outcome.seen = [...seen];
        span.end();
        res.end(JSON.stringify(outcome));
      });
    }),
  );
  const aBase = await listen(a);
  const agent = keepAliveAgent();
  try {
    return await Promise.all(
      Array.from({ length: count }, (_, i) =>
        sendJson<Outcome>(aBase, "/", { agent, headers: { "x-request-id": `r-${i}` } }),
      ),
    );
  } finally {
    agent.destroy();
    await close(a);
  }
}

/** Each outcome's calls carried its own id, user and trace, and every callback saw its own request. */
function assertOwn(outcomes: Outcome[], callbacks: string[], checkRaw = true): void {
  for (const o of outcomes) {
    assert.equal(o.error, undefined, `${o.id}: ${o.error}`);
    assert.equal(o.headers?.["x-request-id"], o.id);
    assert.match(o.headers?.baggage ?? "", new RegExp(`(^|,)user\\.id=u-${o.id}(,|$)`));
    assert.equal(o.headers?.traceparent?.split("-")[1], o.traceId);
    assert.deepEqual(
      o.seen.map(([where]) => where).sort(),
      [...callbacks].sort(),
      `${o.id}: callbacks`,
    );
    for (const [where, [id, store]] of o.seen) {
      assert.equal(id, o.id, `${where} of ${o.id} saw ${id}`);
      if (checkRaw) assert.equal(store, o.id, `${where} of ${o.id}: raw ALS saw ${store}`);
    }
  }
}

/** Deadline: every call rejected near 50 ms, and each one B received was aborted. */
async function assertCancelled(call: Call): Promise<void> {
  aborted.length = 0;
  const outcomes = await through(call, "/slow", 20);
  await sleep(100);
  for (const o of outcomes) {
    assert.equal(o.error, "TimeoutError", o.id);
    assert.ok((o.ms ?? 0) < 1_000, `${o.id} took ${o.ms} ms`);
  }
  assert.ok(aborted.length > 0, "B saw no abort");
  assert.ok(aborted.every((id) => id.startsWith("r-")));
}

describe("global fetch", () => {
  const call: Call = async (base, path, seen) => {
    const response = await carry.wrapFetch()(`${base}${path}`, {
      headers: { "x-request-id": requestId.get() },
      signal: currentTask()?.signal,
    });
    stamp(seen, "after await");
    return (await response.json()) as Record<string, string>;
  };
  it("wrapFetch: each call carries its own request's headers, concurrently", async () => {
    assertOwn(await through(call), ["after await"]);
  });
  it("inject into a Headers, a plain object; an array is refused", async () => {
    const viaHeaders: Call = async (base, path) => {
      const headers = carry.inject(new Headers({ "x-request-id": requestId.get() }));
      return (await (await fetch(`${base}${path}`, { headers })).json()) as Record<string, string>;
    };
    assertOwn(await through(viaHeaders), []);
    const viaObject: Call = async (base, path) => {
      const headers = carry.inject({ "x-request-id": requestId.get() });
      return (await (await fetch(`${base}${path}`, { headers })).json()) as Record<string, string>;
    };
    assertOwn(await through(viaObject), []);
    assert.throws(() => carry.inject([["x-request-id", "a"]] as never), TypeError);
  });
  it("a traceparent the caller spelled otherwise is replaced, not sent twice", async () => {
    // A stale trace under another spelling (copied from an incoming request, say):
    // fetch sends every key of a plain object, and B would join two traceparents.
    const stale = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const viaObject: Call = async (base, path) => {
      const headers = carry.inject({
        "x-request-id": requestId.get(),
        Traceparent: stale,
      });
      return (await (await fetch(`${base}${path}`, { headers })).json()) as Record<string, string>;
    };
    assertOwn(await through(viaObject), []);
  });
  it("the task's signal aborts the call at the deadline", () => assertCancelled(call));
});

describe("node:http request with a keep-alive Agent", () => {
  let agent: Agent;
  before(() => {
    agent = keepAliveAgent(8); // 200 requests on 8 sockets: each socket serves ~25 requests
  });
  after(() => agent.destroy());
  const call: Call = (base, path, seen) =>
    new Promise((resolve, reject) => {
      const headers = carry.inject({ "x-request-id": requestId.get() });
      const req = httpRequest(
        `${base}${path}`,
        { agent, headers, signal: currentTask()?.signal },
        (res) => {
          stamp(seen, "callback");
          let body = "";
          res.on("data", (chunk) => {
            body += chunk;
          });
          res.on("end", () => {
            stamp(seen, "res end");
            resolve(JSON.parse(body));
          });
        },
      );
      req.on("socket", () => stamp(seen, "socket"));
      req.on("response", () => stamp(seen, "response"));
      req.on("finish", () => stamp(seen, "finish"));
      req.on("error", reject);
      req.end();
    });
  it("callbacks and events on reused sockets see their own request", async () => {
    assertOwn(await through(call), ["callback", "res end", "socket", "response", "finish"]);
  });
  it("the task's signal aborts the call at the deadline", () => assertCancelled(call));
});

describe("undici 7", () => {
  let pool: Pool;
  before(() => {
    pool = new Pool(bBase, { connections: 8 });
  });
  after(() => pool?.close());

  const viaRequest: Call = async (base, path, seen) => {
    const { body } = await undiciRequest(`${base}${path}`, {
      dispatcher: pool,
      headers: carry.inject({ "x-request-id": requestId.get() }),
      signal: currentTask()?.signal,
    });
    stamp(seen, "after await");
    return (await body.json()) as Record<string, string>;
  };
  it("request() on a Pool: headers and the await's continuation are the request's", async () => {
    assertOwn(await through(viaRequest), ["after await"]);
  });
  it("request() on a Pool: the task's signal aborts the call", () => assertCancelled(viaRequest));

  /** An interceptor that stamps each handler callback, bound with `bind` or not. */
  function recording(seen: Seen, bound: boolean): Dispatcher.DispatcherComposeInterceptor {
    return (dispatch) => (options, handler) => {
      stamp(seen, "dispatch");
      const wrap =
        <A extends unknown[], R>(name: string, fn: ((...args: A) => R) | undefined) =>
        (...args: A) => {
          stamp(seen, name);
          return fn?.apply(handler, args) as R;
        };
      const at = (name: string, fn: ((...args: never[]) => unknown) | undefined) =>
        bound ? bind(wrap(name, fn)) : wrap(name, fn);
      return dispatch(options, {
        onRequestStart: at("onRequestStart", handler.onRequestStart),
        onResponseStart: at("onResponseStart", handler.onResponseStart),
        onResponseData: at("onResponseData", handler.onResponseData),
        onResponseEnd: at("onResponseEnd", handler.onResponseEnd),
        onResponseError: at("onResponseError", handler.onResponseError),
      } as Dispatcher.DispatchHandler);
    };
  }
  const viaInterceptor =
    (bound: boolean): Call =>
    async (base, path, seen) => {
      const { body } = await pool.compose(recording(seen, bound)).request({
        origin: base,
        path,
        method: "GET",
        headers: carry.inject({ "x-request-id": requestId.get() }),
      });
      stamp(seen, "after await");
      return (await body.json()) as Record<string, string>;
    };
  const handlerCallbacks = ["onRequestStart", "onResponseStart", "onResponseData", "onResponseEnd"];

  it("an interceptor's handler callbacks run in another request's Context, as with a raw ALS (pinned)", async () => {
    const outcomes = await through(viaInterceptor(false));
    let foreign = 0;
    let rawForeign = 0;
    for (const o of outcomes) {
      assert.equal(o.headers?.["x-request-id"], o.id);
      for (const [where, [id, store]] of o.seen) {
        if (where === "dispatch" || where === "after await") {
          assert.equal(id, o.id, where);
          continue;
        }
        if (id !== o.id) foreign++;
        if (store !== o.id) rawForeign++;
      }
    }
    // Socket callbacks run in the Context the connection was made in (or none).
    assert.ok(foreign > 0, "every handler callback saw its own request");
    assert.equal(foreign, rawForeign, "the library and a raw ALS disagree");
  });
  it("an interceptor that binds the handler's callbacks at dispatch sees its request", async () => {
    // bind() restores this package's Context only; the raw ALS still sees another request.
    const callbacks = ["dispatch", ...handlerCallbacks, "after await"];
    assertOwn(await through(viaInterceptor(true)), callbacks, false);
  });

  /** Writes x-request-id and the baggage in dispatch, as a client-wide interceptor would. */
  const injecting: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) => {
    const headers = carry.inject({ "x-request-id": requestId.get("<none>") });
    return dispatch(
      { ...options, headers: { ...(options.headers as object), ...headers } },
      handler,
    );
  };
  const viaRetry =
    (order: "inject inside retry" | "inject outside retry"): Call =>
    async (base, path, seen) => {
      const retry = interceptors.retry({
        maxRetries: 2,
        minTimeout: 1,
        statusCodes: [503],
        methods: ["GET"],
      });
      // compose(a, b): b wraps a, so b's dispatch is called first.
      const dispatcher =
        order === "inject inside retry"
          ? pool.compose(injecting, retry)
          : pool.compose(retry, injecting);
      const { body } = await dispatcher.request({
        origin: base,
        path: `${path}?for=${requestId.get()}`,
        method: "GET",
      });
      stamp(seen, "after await");
      return (await body.json()) as Record<string, string>;
    };

  it("undici's retry interceptor re-dispatches in another request's Context (pinned)", async () => {
    const outcomes = await through(viaRetry("inject inside retry"), "/flaky");
    // The retry is dispatched from a timer set in the 503's socket callback:
    // an interceptor it wraps writes whichever request's values that Context has.
    const foreign = outcomes.filter((o) => o.headers?.["x-request-id"] !== o.id);
    assert.ok(foreign.length > 0, "every retry carried its own request's id");
    for (const o of outcomes) assert.equal(o.seen[0]?.[1][0], o.id, "after await");
  });
  it("an interceptor composed outside the retry interceptor writes each retry's own headers", async () => {
    assertOwn(await through(viaRetry("inject outside retry"), "/flaky"), ["after await"]);
  });
});

describe("axios 1", () => {
  /** The calls' record of callbacks, found through the Context as anything else would be. */
  const currentSeen = new ContextVar<Seen>("seen");
  let client: AxiosInstance;
  let agent: Agent;
  before(() => {
    agent = keepAliveAgent(8);
    // One instance, its interceptors added once, shared by every request.
    client = axios.create({ httpAgent: agent });
    client.interceptors.request.use((config) => {
      stamp(currentSeen.get(), "request interceptor");
      // config.headers is an AxiosHeaders, which inject refuses (it is iterable):
      config.headers.set(carry.inject({ "x-request-id": requestId.get() }));
      return config;
    });
    client.interceptors.response.use((response) => {
      stamp(currentSeen.get(), "response interceptor");
      return response;
    });
  });
  after(() => agent.destroy());
  const call: Call = async (base, path, seen) => {
    currentSeen.set(seen);
    const response = await client.get(`${base}${path}`, { signal: currentTask()?.signal });
    stamp(seen, "after await");
    return response.data;
  };
  it("a shared instance's interceptors see each call's own request", async () => {
    assertOwn(await through(call), ["request interceptor", "response interceptor", "after await"]);
  });
  it("inject refuses an AxiosHeaders itself with a TypeError", () => {
    assert.throws(() => carry.inject(new AxiosHeaders() as never), TypeError);
  });
  it("the task's signal aborts the call at the deadline", () => assertCancelled(call));
});

describe("got 14", () => {
  let agent: Agent;
  before(() => {
    agent = keepAliveAgent(8);
  });
  after(() => agent.destroy());
  const call: Call = async (base, path, seen) => {
    const body = await got(`${base}${path}`, {
      agent: { http: agent },
      signal: currentTask()?.signal,
      retry: { limit: 2, methods: ["GET"], statusCodes: [503], backoffLimit: 5 },
      hooks: {
        beforeRequest: [
          (options) => {
            stamp(seen, "beforeRequest");
            carry.inject(options.headers);
          },
        ],
        beforeRetry: [
          () => {
            stamp(seen, "beforeRetry");
          },
        ],
        afterResponse: [
          (response) => {
            stamp(seen, `afterResponse ${response.statusCode}`);
            return response;
          },
        ],
      },
      headers: { "x-request-id": requestId.get() },
    }).json<Record<string, string>>();
    stamp(seen, "after await");
    return body;
  };
  it("hooks see their own request, a retry's too", async () => {
    assertOwn(await through(call, "/flaky"), [
      "beforeRequest",
      "afterResponse 503",
      "beforeRetry",
      "afterResponse 200",
      "after await",
    ]);
  });
  it("the task's signal aborts the call at the deadline", () => assertCancelled(call));
});
