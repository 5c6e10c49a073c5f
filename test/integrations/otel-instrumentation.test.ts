/**
 * OpenTelemetry's own automatic instrumentation of node:http
 * (`@opentelemetry/instrumentation-http`) on ContextVarsContextManager, with
 * a real sdk-trace-base tracer, real servers on 127.0.0.1 and real outgoing
 * requests made from inside handlers: the SERVER span the instrumentation
 * makes is the parent of the handler's spans, an outgoing request gets a
 * CLIENT span under the handler's active span and carries the trace to the
 * next server, and the request's ContextVars are seen beside the span, in
 * req/res listeners too, without leaking between requests; contextPropagation's
 * baggage reaches the next service beside the instrumentation's own headers
 * when the global propagator carries trace context only.
 */
import assert from "node:assert/strict";
// The module object itself: the instrumentation patches its request and get in
// place, which named ESM imports of a built-in (snapshots) would not see.
import http from "node:http";
import { createRequire } from "node:module";
import { after, before, beforeEach, describe, it } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import express from "express";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

// The instrumentation is enabled before the manager is registered: it asks
// @opentelemetry/api for the global manager on every call, so the order of
// the two does not matter (the docs say so).
const instrumentation = new HttpInstrumentation();
// Its require hook patches node:http when it is next required; an ESM import
// is not a require, so require it once here.
createRequire(import.meta.url)("node:http");

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
context.setGlobalContextManager(new ContextVarsContextManager().enable());

/** What @opentelemetry/sdk-node registers by default: trace context and baggage. */
function useW3CPropagators(withBaggage: boolean): void {
  propagation.disable();
  const propagators = [new W3CTraceContextPropagator()];
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: withBaggage ? [...propagators, new W3CBaggagePropagator()] : propagators,
    }),
  );
}
useW3CPropagators(true);

const tracer = trace.getTracer("handlers");
after(() => instrumentation.disable());

const user = new ContextVar<string>("user");
const stage = new ContextVar<string>("stage");

function activeSpanId(): string {
  return trace.getActiveSpan()?.spanContext().spanId ?? "none";
}

/** The query parameter `n` of a request. */
function nOf(req: http.IncomingMessage): string {
  return new URL(req.url ?? "/", "http://x").searchParams.get("n") ?? "-";
}

/** Reads a request's body through its own 'data' and 'end' listeners; `onEnd` runs in 'end'. */
function readBody<T>(req: http.IncomingMessage, onEnd: (body: string) => T): Promise<T> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
    });
    req.on("end", () => resolve(onEnd(body)));
    req.on("error", reject);
  });
}

/**
 * A GET made with the instrumented `http.get` (`http.request` for odd n);
 * resolves with the body and the span ids active in the response callback
 * and in the response's 'end' listener, with the ContextVars seen there.
 */
function fetchText(
  url: string,
  n: number,
  agent: http.Agent,
): Promise<{ body: string; inCallback: string; inEnd: string; user: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage) => {
      const inCallback = activeSpanId();
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () =>
        resolve({ body, inCallback, inEnd: activeSpanId(), user: user.get("-") }),
      );
      res.on("error", reject);
    };
    const req =
      n % 2 === 0
        ? http.get(url, { agent }, onResponse)
        : http.request(url, { agent, method: "GET" }, onResponse);
    req.on("error", reject);
    if (n % 2 === 1) req.end();
  });
}

async function finishedSpans(): Promise<ReadableSpan[]> {
  await provider.forceFlush();
  return exporter.getFinishedSpans();
}

/**
 * The exported spans once `count` SERVER spans have ended: the instrumentation
 * ends a server span on the response's 'close', which may come after the
 * client has read the whole response. Bounded: fails after 2,000 turns.
 */
async function spansAfterServers(count: number): Promise<ReadableSpan[]> {
  for (let turn = 0; turn < 2000; turn++) {
    const spans = await finishedSpans();
    if (spans.filter((s) => s.kind === SpanKind.SERVER).length >= count) return spans;
    await immediate();
  }
  assert.fail(`fewer than ${count} SERVER spans ended`);
}

function byId(spans: readonly ReadableSpan[]): Map<string, ReadableSpan> {
  return new Map(spans.map((s) => [s.spanContext().spanId, s]));
}

function named(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one span named ${name}`);
  return found[0] as ReadableSpan;
}

/** Asserts `child`'s parent is `parent`, in the same trace. */
function assertChild(child: ReadableSpan, parent: ReadableSpan): void {
  assert.equal(child.parentSpanContext?.spanId, parent.spanContext().spanId, child.name);
  assert.equal(child.spanContext().traceId, parent.spanContext().traceId, child.name);
}

beforeEach(() => exporter.reset());

describe("instrumentation-http's SERVER span is the handler's parent", () => {
  const server = http.createServer(async (req, res) => {
    const n = nOf(req);
    res.setHeader("x-server-span", activeSpanId());
    // Listening from the start: the body's later chunks and its 'end' come from
    // the socket, in the connection's Context, and the instrumentation's bind
    // of req (ContextManager#bind of an EventEmitter) must bring its span.
    const body = readBody(req, () => tracer.startSpan(`req end ${n}`).end());
    await randomDelay();
    await tracer.startActiveSpan(`after await ${n}`, async (span) => {
      await randomDelay();
      tracer.startSpan(`nested ${n}`).end();
      span.end();
    });
    await new Promise<void>((resolve) =>
      setTimeout(
        () => {
          tracer.startSpan(`in timer ${n}`).end();
          resolve();
        },
        Math.floor(Math.random() * 3),
      ),
    );
    await body;
    res.end(activeSpanId());
  });
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("100 concurrent requests: each handler's spans, after awaits, timers and in req 'end', hang under its own SERVER span", async () => {
    const agent = keepAliveAgent(20);
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, n) =>
        send(base, `/?n=${n}`, { body: `body of ${n}`, chunks: 3, agent }),
      ),
    );
    agent.destroy();
    const spans = await spansAfterServers(100);
    const ids = byId(spans);
    const traces = new Set<string>();
    for (const [n, reply] of replies.entries()) {
      const serverId = reply.headers["x-server-span"] as string;
      const serverSpan = ids.get(serverId);
      assert.ok(serverSpan, `request ${n}: its active span was exported`);
      assert.equal(serverSpan.kind, SpanKind.SERVER, "made by the instrumentation");
      assert.equal(reply.body, serverId, "still active after the awaits");
      traces.add(serverSpan.spanContext().traceId);
      for (const name of [`after await ${n}`, `in timer ${n}`, `req end ${n}`]) {
        assertChild(named(spans, name), serverSpan);
      }
      assertChild(named(spans, `nested ${n}`), named(spans, `after await ${n}`));
    }
    assert.equal(traces.size, 100, "each request is its own trace");
  });
});

describe("an outgoing request from a handler, to a second instrumented server", () => {
  // B answers with the traceparent it received and its own active span.
  const b = http.createServer((req, res) => {
    const span = trace.getActiveSpan()?.spanContext();
    res.end(JSON.stringify({ traceparent: req.headers.traceparent, span }));
  });
  let bBase = "";
  // Few sockets, so later calls reuse sockets opened by other requests.
  const toB = keepAliveAgent(4);
  const a = http.createServer(async (req, res) => {
    const n = Number(nOf(req));
    const seen = await tracer.startActiveSpan(`work ${n}`, async (work) => {
      await randomDelay();
      const reply = await fetchText(`${bBase}/?n=${n}`, n, toB);
      work.end();
      return { ...reply, work: work.spanContext().spanId };
    });
    res.end(JSON.stringify(seen));
  });
  let aBase = "";
  before(async () => {
    bBase = await listen(b);
    aBase = await listen(a);
  });
  after(async () => {
    toB.destroy();
    await close(a);
    await close(b);
  });

  it("gets a CLIENT span under the handler's span, and B continues that trace under it (50 concurrent)", async () => {
    const agent = keepAliveAgent(10);
    const replies = await Promise.all(
      Array.from({ length: 50 }, async (_, n) => {
        const reply = await send(aBase, `/?n=${n}`, { agent });
        return JSON.parse(reply.body) as {
          body: string;
          inCallback: string;
          inEnd: string;
          work: string;
        };
      }),
    );
    agent.destroy();
    const spans = await spansAfterServers(100);
    const ids = byId(spans);
    for (const [n, seen] of replies.entries()) {
      const work = named(spans, `work ${n}`);
      assert.equal(work.spanContext().spanId, seen.work);
      const aServer = ids.get(work.parentSpanContext?.spanId ?? "");
      assert.equal(aServer?.kind, SpanKind.SERVER, `work ${n} is under A's SERVER span`);
      const clients = spans.filter(
        (s) => s.kind === SpanKind.CLIENT && s.parentSpanContext?.spanId === seen.work,
      );
      assert.equal(clients.length, 1, `request ${n} made one CLIENT span under its work span`);
      const client = clients[0] as ReadableSpan;
      const { traceId, spanId } = client.spanContext();
      const fromB = JSON.parse(seen.body) as {
        traceparent: string;
        span: { traceId: string; spanId: string };
      };
      assert.equal(fromB.traceparent, `00-${traceId}-${spanId}-01`, "B received the CLIENT span");
      const bServer = ids.get(fromB.span.spanId);
      assert.equal(bServer?.kind, SpanKind.SERVER);
      assertChild(bServer as ReadableSpan, client);
      assert.equal(seen.inCallback, seen.work, "the response callback runs under the work span");
      assert.equal(seen.inEnd, seen.work, "so does the response's 'end' listener");
    }
  });
});

/** What a request saw at one point: its ContextVars and the active span. */
interface Sight {
  requestId: string;
  user: string;
  stage: string;
  span: string;
}

function sight(): Sight {
  return {
    requestId: requestId.get("-"),
    user: user.get("-"),
    stage: stage.get("-"),
    span: activeSpanId(),
  };
}

/**
 * The handler of both apps below: it reads the body with its own listeners
 * and calls `echo` with the instrumented client, and reports what it saw at
 * each point; its res 'finish' listener reports in `finished`.
 */
function seeingHandler(echoBase: () => string, agent: http.Agent, finished: Map<string, Sight>) {
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const n = Number(nOf(req));
    const start = sight();
    stage.set("handler");
    res.on("finish", () => finished.set(requestId.get("-"), sight()));
    const inEnd = await readBody(req, () => sight());
    await randomDelay();
    const call = await fetchText(`${echoBase()}/?n=${n}`, n, agent);
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ start, inEnd, call, after: sight() }));
  };
}

describe("with contextvars/http and contextvars/express: ContextVars beside the instrumentation's span", () => {
  const echo = http.createServer((_req, res) => res.end("echo"));
  let echoBase = "";
  const toEcho = keepAliveAgent(4);
  const finished = new Map<string, Sight>();
  const handler = seeingHandler(() => echoBase, toEcho, finished);
  const seed = (req: http.IncomingMessage) => user.set(String(req.headers["x-user"]));
  const app = express();
  app.use(contextMiddleware({ seed }));
  app.post("/", handler);
  // express.text() reads the body and calls next() from its req 'end' listener.
  app.post("/parsed", express.text(), (req, res) => {
    res.json({ body: req.body as string, ...sight() });
  });
  const servers = {
    "node:http withContext": http.createServer(withContext(handler, { seed })),
    "Express contextMiddleware": http.createServer(app),
  };
  before(async () => {
    echoBase = await listen(echo);
  });
  after(async () => {
    toEcho.destroy();
    await close(echo);
  });

  for (const [name, server] of Object.entries(servers)) {
    it(`${name}: 60 concurrent requests each see their own vars and SERVER span everywhere, and nothing leaks`, async () => {
      finished.clear();
      const base = await listen(server);
      const agent = keepAliveAgent(15);
      try {
        const replies = await Promise.all(
          Array.from({ length: 60 }, async (_, n) => {
            const reply = await send(base, `/?n=${n}`, {
              headers: { "x-request-id": `req-${n}`, "x-user": `user-${n}` },
              body: `body of ${n}`,
              chunks: 2,
              agent,
            });
            return JSON.parse(reply.body) as Record<"start" | "inEnd" | "after", Sight> & {
              call: { inCallback: string; inEnd: string; user: string };
            };
          }),
        );
        const spans = await spansAfterServers(120);
        const ids = byId(spans);
        for (const [n, seen] of replies.entries()) {
          const serverSpan = ids.get(seen.start.span);
          assert.equal(serverSpan?.kind, SpanKind.SERVER, `request ${n} runs under a SERVER span`);
          assert.equal(serverSpan?.parentSpanContext, undefined, "the test's client is not traced");
          const expected = { requestId: `req-${n}`, user: `user-${n}`, span: seen.start.span };
          assert.deepEqual(seen.start, { ...expected, stage: "-" }, `request ${n} at start`);
          assert.deepEqual(
            seen.inEnd,
            { ...expected, stage: "handler" },
            `request ${n} in req 'end'`,
          );
          assert.deepEqual(seen.after, { ...expected, stage: "handler" }, `request ${n} after`);
          assert.equal(seen.call.user, `user-${n}`, `request ${n} in the response's 'end'`);
          const client = spans.find(
            (s) =>
              s.kind === SpanKind.CLIENT &&
              s.spanContext().spanId !== seen.start.span &&
              s.parentSpanContext?.spanId === seen.start.span,
          );
          assert.ok(client, `request ${n}'s call has a CLIENT span under its SERVER span`);
          assert.equal(seen.call.inCallback, seen.start.span);
          assert.equal(seen.call.inEnd, seen.start.span);
        }
        for (let n = 0; n < 60; n++) {
          const inFinish = finished.get(`req-${n}`);
          assert.deepEqual(
            inFinish,
            {
              requestId: `req-${n}`,
              user: `user-${n}`,
              stage: "handler",
              span: replies[n]?.start.span,
            },
            `request ${n} in res 'finish'`,
          );
        }
        assert.deepEqual(sight(), { requestId: "-", user: "-", stage: "-", span: "none" });
      } finally {
        agent.destroy();
        await close(server);
      }
    });
  }
});

describe("Express behind instrumentation-http: a body parser's next()", () => {
  it("a handler after express.text() sees the request's vars and SERVER span (40 concurrent)", async () => {
    const app = express();
    app.use(contextMiddleware({ seed: (req) => user.set(String(req.headers["x-user"])) }));
    app.post("/", express.text(), (req, res) => {
      res.setHeader("x-server-span", activeSpanId());
      res.json({ body: req.body as string, ...sight() });
    });
    const server = http.createServer(app);
    const base = await listen(server);
    const agent = keepAliveAgent(10);
    try {
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, n) =>
          send(base, "/", {
            headers: {
              "content-type": "text/plain",
              "x-request-id": `req-${n}`,
              "x-user": `user-${n}`,
            },
            body: `body of ${n}`,
            chunks: 2,
            agent,
          }),
        ),
      );
      const ids = byId(await spansAfterServers(40));
      for (const [n, reply] of replies.entries()) {
        const span = reply.headers["x-server-span"] as string;
        assert.equal(ids.get(span)?.kind, SpanKind.SERVER, `request ${n} runs under a SERVER span`);
        assert.deepEqual(JSON.parse(reply.body), {
          body: `body of ${n}`,
          requestId: `req-${n}`,
          user: `user-${n}`,
          stage: "-",
          span,
        });
      }
    } finally {
      agent.destroy();
      await close(server);
    }
  });
});

describe("removing a listener from req and res bound by both the instrumentation and an integration", () => {
  /** Adds and removes one listener in each of the ways; answers with the counts left. */
  function removing(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ran: string[] = [];
    const data = (): void => void ran.push("data");
    const finish = (): void => void ran.push("finish");
    const before = [req.listenerCount("data"), res.listenerCount("finish")];
    req.on("data", data);
    req.removeListener("data", data);
    res.once("finish", finish);
    res.off("finish", finish);
    req.prependListener("data", data);
    req.off("data", data);
    const left = [req.listenerCount("data"), res.listenerCount("finish")];
    req.resume();
    req.on("end", () => res.end(JSON.stringify({ before, left, ran })));
  }
  const app = express();
  app.use(contextMiddleware());
  app.post("/", removing);
  const servers = {
    "node:http withContext": http.createServer(withContext(removing)),
    "Express contextMiddleware": http.createServer(app),
  };
  for (const [name, server] of Object.entries(servers)) {
    it(`${name}: removeListener, off and once/off with the original listener remove it`, async () => {
      const base = await listen(server);
      try {
        const reply = await send(base, "/", { body: "some body", chunks: 2 });
        assert.equal(reply.status, 200, reply.body);
        const seen = JSON.parse(reply.body) as { before: number[]; left: number[]; ran: string[] };
        assert.deepEqual(seen.left, seen.before);
        assert.deepEqual(seen.ran, [], "no removed listener ran");
        assert.equal((await spansAfterServers(1)).length, 1, "the request had its SERVER span");
      } finally {
        await close(server);
      }
    });
  }
});

describe("contextPropagation beside the instrumentation's own propagation", () => {
  const role = new ContextVar<string>("role");
  const carry = contextPropagation({ "user.id": user, role });
  const seed = (req: http.IncomingMessage) => carry.extractInto(req.headers);
  // B: what its request Context holds once seeded, and the trace it continues.
  const b = http.createServer(
    withContext(
      (req, res) => {
        const baggage = propagation.getBaggage(context.active());
        res.end(
          JSON.stringify({
            user: user.get("-"),
            role: role.get("-"),
            tenant: baggage?.getEntry("tenant")?.value ?? "-",
            traceparent: req.headers.traceparent,
            span: activeSpanId(),
          }),
        );
      },
      { seed },
    ),
  );
  let bBase = "";
  const toB = keepAliveAgent(4);
  // A: sets role (as an auth step would) and calls B with carry.inject's headers,
  // or with none, leaving every header to the global propagator.
  let injectByHand = true;
  const a = http.createServer(
    withContext(
      async (req, res) => {
        role.set(`role-${nOf(req)}`);
        await randomDelay();
        const reply = await new Promise<string>((resolve, reject) => {
          const headers = injectByHand ? (carry.inject({}) as Record<string, string>) : {};
          http
            .get(`${bBase}/`, { agent: toB, headers }, (answer) => {
              let body = "";
              answer.setEncoding("utf8");
              answer.on("data", (chunk: string) => {
                body += chunk;
              });
              answer.on("end", () => resolve(body));
            })
            .on("error", reject);
        });
        res.end(JSON.stringify({ fromB: JSON.parse(reply), span: activeSpanId() }));
      },
      { seed },
    ),
  );
  let aBase = "";
  before(async () => {
    bBase = await listen(b);
    aBase = await listen(a);
  });
  after(async () => {
    useW3CPropagators(true);
    injectByHand = true;
    toB.destroy();
    await close(a);
    await close(b);
  });

  async function callA(count: number) {
    const agent = keepAliveAgent(10);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const replies = await Promise.all(
      Array.from({ length: count }, async (_, n) => {
        const reply = await send(aBase, `/?n=${n}`, {
          headers: {
            traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
            baggage: `user.id=user-${n},tenant=acme`,
          },
          agent,
        });
        return JSON.parse(reply.body) as {
          span: string;
          fromB: { user: string; role: string; tenant: string; traceparent: string; span: string };
        };
      }),
    );
    agent.destroy();
    return { traceId, replies, spans: await spansAfterServers(2 * count) };
  }

  /**
   * What request n's call from A brought B: the user from upstream, `role`
   * as expected, the pass-through tenant, and the trace under A's CLIENT span.
   */
  function assertReachedB(
    n: number,
    span: string,
    fromB: { user: string; role: string; tenant: string; traceparent: string; span: string },
    role: string,
    run: { traceId: string; spans: ReadableSpan[]; ids: Map<string, ReadableSpan> },
  ): void {
    assert.deepEqual(
      { user: fromB.user, role: fromB.role, tenant: fromB.tenant },
      { user: `user-${n}`, role, tenant: "acme" },
      `request ${n}: what B received`,
    );
    const client = run.spans.find(
      (s) => s.kind === SpanKind.CLIENT && s.parentSpanContext?.spanId === span,
    );
    assert.ok(client, `request ${n}: A's call has a CLIENT span under A's SERVER span`);
    assert.equal(fromB.traceparent, `00-${run.traceId}-${client.spanContext().spanId}-01`);
    assertChild(run.ids.get(fromB.span) as ReadableSpan, client);
  }

  // The instrumentation injects with the global propagator after the caller's
  // headers are set: traceparent becomes its CLIENT span's (right), and with
  // W3CBaggagePropagator global (sdk-node's default) `baggage` becomes the
  // active OpenTelemetry context's, which holds what came in, not the vars set
  // since. docs/observability.md says to keep baggage out of the global
  // propagator when contextPropagation carries it.
  for (const withBaggage of [false, true]) {
    it(`global propagator of trace context${withBaggage ? " and baggage: a var set in the handler is overwritten" : " only: every field arrives"}, under the CLIENT span (30 concurrent)`, async () => {
      useW3CPropagators(withBaggage);
      const { traceId, replies, spans } = await callA(30);
      const ids = byId(spans);
      for (const [n, { span, fromB }] of replies.entries()) {
        const aServer = ids.get(span);
        assert.equal(aServer?.kind, SpanKind.SERVER, `request ${n}: A's SERVER span stays active`);
        assert.equal(aServer?.parentSpanContext?.spanId, "00f067aa0ba902b7", "under the caller");
        assert.equal(aServer?.spanContext().traceId, traceId);
        assertReachedB(n, span, fromB, withBaggage ? "-" : `role-${n}`, { traceId, spans, ids });
      }
    });
  }

  it("global propagator of trace context and carry.propagator(), no inject call: every field arrives, under the CLIENT span (30 concurrent)", async () => {
    propagation.disable();
    propagation.setGlobalPropagator(
      new CompositePropagator({
        propagators: [new W3CTraceContextPropagator(), carry.propagator()],
      }),
    );
    injectByHand = false;
    try {
      const { traceId, replies, spans } = await callA(30);
      const ids = byId(spans);
      for (const [n, { span, fromB }] of replies.entries()) {
        assertReachedB(n, span, fromB, `role-${n}`, { traceId, spans, ids });
      }
    } finally {
      injectByHand = true;
    }
  });
});
