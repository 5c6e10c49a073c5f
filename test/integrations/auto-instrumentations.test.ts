/**
 * OpenTelemetry's automatic instrumentations together, as a service registers
 * them: instrumentation-http, -undici (global `fetch`), -express and -pino
 * through `registerInstrumentations`, a real sdk-trace-base provider with an
 * InMemorySpanExporter, and two real services on 127.0.0.1. Service A is
 * Express with `contextMiddleware` and calls service B (node:http with
 * `withContext`) with the global `fetch`. The same concurrent requests run
 * under ContextVarsContextManager and under OpenTelemetry's own
 * AsyncLocalStorageContextManager, and must give the same trees: A's SERVER
 * span, Express's middleware and handler spans under it, the handler's span,
 * undici's CLIENT span under that, B's SERVER span under the CLIENT span, one
 * trace per request. pino lines carry instrumentation-pino's `trace_id` and
 * `span_id` beside `contextMixin`'s fields, and the two agree. Where the two
 * managers differ (instrumentation that runs user code inside `context.with`
 * or `bind`: Express's layers, @fastify/otel's hooks), the difference is
 * asserted under each, with the way around it.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import { FastifyOtelInstrumentation } from "@fastify/otel";
import {
  type ContextManager,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { ExpressInstrumentation } from "@opentelemetry/instrumentation-express";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { PinoInstrumentation } from "@opentelemetry/instrumentation-pino";
import { UndiciInstrumentation } from "@opentelemetry/instrumentation-undici";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import Fastify from "fastify";
// Imported (ESM) before the instrumentations are registered, as an app's
// imports are: this binding stays the unpatched function (see the last test).
import importedPino from "pino";
import { close, listen, randomDelay, send } from "../helpers/http.ts";

const expressInstrumentation = new ExpressInstrumentation();
const disable = registerInstrumentations({
  instrumentations: [
    new HttpInstrumentation(),
    new UndiciInstrumentation(),
    expressInstrumentation,
    new PinoInstrumentation(),
    // Fastify's own: it plugs into each app through Fastify's diagnostics
    // channel on initialization, so the ESM import of Fastify is enough.
    new FastifyOtelInstrumentation({ registerOnInitialization: true }),
  ],
});
after(() => disable());
// The instrumentations patch modules when they are next required; an ESM
// import is not a require. Requiring them once after registering patches
// node:http's and Express's module objects in place (so the `http` import
// above sees it) and returns instrumentation-pino's wrapper of pino, a new
// function.
const require = createRequire(import.meta.url);
require("node:http");
const express = require("express") as typeof import("express");
const pino = require("pino") as typeof importedPino;

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
after(() => provider.shutdown());
const tracer = trace.getTracer("services");

const user = new ContextVar<string>("user");
const carry = contextPropagation({ "user.id": user });
// carry.propagator() in place of W3CBaggagePropagator: undici's instrumentation
// writes the fields set in A's handler by itself.
propagation.setGlobalPropagator(
  new CompositePropagator({
    propagators: [new W3CTraceContextPropagator(), carry.propagator()],
  }),
);

function useManager(manager: ContextManager): void {
  context.disable();
  assert.ok(context.setGlobalContextManager(manager.enable()));
}

interface Line {
  side: string;
  n: string;
  msg: string;
  trace_id?: string;
  span_id?: string;
  requestId?: string;
  user?: string;
  spanId?: string;
}
const lines: Line[] = [];
const sink = new Writable({
  write(chunk: Buffer, _encoding, done) {
    lines.push(JSON.parse(chunk.toString()) as Line);
    done();
  },
});
const mixin = contextMixin({
  requestId,
  user,
  spanId: () => trace.getActiveSpan()?.spanContext().spanId,
});
const logger = pino({ mixin }, sink);

const activeSpanId = (): string => trace.getActiveSpan()?.spanContext().spanId ?? "none";

interface FromB {
  user: string;
  traceparent: string | string[] | undefined;
  serverSpan: string;
}

// Service B: node:http with withContext; the incoming baggage sets `user`.
const serviceB = http.createServer(
  withContext(
    async (req, res) => {
      const n = new URL(req.url ?? "/", "http://b").searchParams.get("n") ?? "-";
      const serverSpan = activeSpanId();
      await randomDelay();
      await tracer.startActiveSpan(`b ${n}`, async (span) => {
        await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 3)));
        logger.info({ side: "B", n }, "b");
        span.end();
      });
      const body: FromB = { user: user.get("-"), traceparent: req.headers.traceparent, serverSpan };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(body));
    },
    { seed: (req) => carry.extractInto(req.headers) },
  ),
);

let bBase = "";
let wrapped = false;

// Service A: Express with contextMiddleware; calls B with the global fetch.
const app = express();
app.use(contextMiddleware({ seed: (req) => carry.extractInto(req.headers) }));
app.get("/a/:n", async (req, res) => {
  const n = String(req.params.n);
  user.set(`user-${n}`);
  await randomDelay();
  logger.info({ side: "A", n }, "before");
  const fromB = await tracer.startActiveSpan(`work ${n}`, async (span) => {
    await randomDelay();
    const call = wrapped ? carry.wrapFetch(fetch) : fetch;
    const reply = await call(`${bBase}/b?n=${n}`);
    const body = (await reply.json()) as FromB;
    span.end();
    return body;
  });
  logger.info({ side: "A", n }, "after");
  res.json({ fromB, user: user.get("-") });
});
const serviceA = http.createServer(app);

let aBase = "";
before(async () => {
  bBase = await listen(serviceB);
  // Outside any span: a span active at listen() would parent every request's.
  aBase = await context.with(ROOT_CONTEXT, () => listen(serviceA));
});
after(async () => {
  await close(serviceA);
  await close(serviceB);
});
beforeEach(() => {
  exporter.reset();
  lines.length = 0;
  wrapped = false;
});

/** The exported spans once `count` have ended (servers end theirs on 'close'). Bounded. */
async function spansAfter(count: number): Promise<ReadableSpan[]> {
  // Bounded by time, not turns: 2000 idle turns pass in a few ms, less than
  // a loaded machine may take to run the I/O callbacks that end the last spans.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const spans = exporter.getFinishedSpans();
    if (spans.length >= count) return spans;
    await immediate();
  }
  assert.fail(`fewer than ${count} spans ended`);
}

const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan): string => span.spanContext().spanId;

function only(spans: readonly ReadableSpan[], test: (span: ReadableSpan) => boolean): ReadableSpan {
  const found = spans.filter(test);
  assert.equal(found.length, 1, `one of ${spans.map((s) => s.name).join(", ")}`);
  return found[0] as ReadableSpan;
}

/** One request's spans, all in one trace: the tree, asserted; returns its spans. */
function assertTree(trace: readonly ReadableSpan[], n: number): Record<string, ReadableSpan> {
  const server = trace.filter((s) => s.kind === SpanKind.SERVER);
  assert.equal(server.length, 2, `two SERVER spans in request ${n}'s trace`);
  const aServer = only(server, (s) => parentOf(s) === undefined);
  const bServer = only(server, (s) => parentOf(s) !== undefined);
  const middleware = only(trace, (s) => s.name === "middleware - contextMiddleware");
  const handler = only(trace, (s) => s.name.startsWith("request handler"));
  const work = only(trace, (s) => s.name === `work ${n}`);
  const client = only(trace, (s) => s.kind === SpanKind.CLIENT);
  const b = only(trace, (s) => s.name === `b ${n}`);
  assert.equal(trace.length, 7, trace.map((s) => s.name).join(", "));
  assert.equal(parentOf(middleware), idOf(aServer));
  assert.equal(parentOf(handler), idOf(aServer));
  assert.equal(parentOf(work), idOf(handler));
  assert.equal(parentOf(client), idOf(work));
  assert.equal(parentOf(bServer), idOf(client));
  assert.equal(parentOf(b), idOf(bServer));
  return { aServer, bServer, handler, work, client, b };
}

const COUNT = 30;

async function drive(): Promise<Array<{ fromB: FromB; user: string; requestId: string }>> {
  return Promise.all(
    Array.from({ length: COUNT }, async (_, n) => {
      const reply = await send(aBase, `/a/${n}`, { headers: { "x-request-id": `req-${n}` } });
      assert.equal(reply.status, 200, reply.body);
      return { ...JSON.parse(reply.body), requestId: String(reply.headers["x-request-id"]) };
    }),
  );
}

for (const [name, make] of [
  ["ContextVarsContextManager", () => new ContextVarsContextManager()],
  ["AsyncLocalStorageContextManager", () => new AsyncLocalStorageContextManager()],
] as const) {
  describe(`A (Express) → fetch → B (node:http) under ${name}`, () => {
    before(() => useManager(make()));

    it(`${COUNT} concurrent requests: one trace each, every span under the right parent, pino's ids agree with contextMixin's`, async () => {
      const replies = await drive();
      const spans = await spansAfter(COUNT * 7);
      const traces = new Map<string, ReadableSpan[]>();
      for (const span of spans) {
        const id = span.spanContext().traceId;
        traces.set(id, [...(traces.get(id) ?? []), span]);
      }
      assert.equal(traces.size, COUNT);
      const byN = new Map<string, Record<string, ReadableSpan>>();
      for (const spansOfTrace of traces.values()) {
        const work = only(spansOfTrace, (s) => s.name.startsWith("work "));
        const n = work.name.slice("work ".length);
        byN.set(n, assertTree(spansOfTrace, Number(n)));
      }
      assert.equal(byN.size, COUNT);

      for (const [n, reply] of replies.entries()) {
        const tree = byN.get(String(n)) as Record<string, ReadableSpan>;
        // The field set in A's handler reached B as baggage, beside one
        // traceparent: the CLIENT span's.
        assert.equal(reply.fromB.user, `user-${n}`);
        assert.equal(reply.user, `user-${n}`);
        assert.equal(
          reply.fromB.traceparent,
          `00-${tree.client?.spanContext().traceId}-${idOf(tree.client as ReadableSpan)}-01`,
        );
        assert.equal(reply.fromB.serverSpan, idOf(tree.bServer as ReadableSpan));
        assert.equal(reply.requestId, `req-${n}`);
      }

      // Two lines in A (in Express's handler span), one in B (in `b n`).
      assert.equal(lines.length, COUNT * 3);
      for (const line of lines) {
        const tree = byN.get(line.n) as Record<string, ReadableSpan>;
        const expected = line.side === "A" ? tree.handler : tree.b;
        assert.equal(
          line.trace_id,
          expected?.spanContext().traceId,
          `${line.side} ${line.n} ${line.msg}`,
        );
        assert.equal(line.span_id, idOf(expected as ReadableSpan));
        assert.equal(
          line.spanId,
          line.span_id,
          "instrumentation-pino and contextMixin read the same span",
        );
        assert.equal(line.user, `user-${line.n}`);
        // B's requestId is its own fresh one: only A's comes from x-request-id.
        if (line.side === "A") assert.equal(line.requestId, `req-${line.n}`);
        else assert.match(line.requestId ?? "", /^[0-9a-f-]{36}$/);
      }
    });

    it("carry.wrapFetch under instrumentation-undici: two traceparent headers, and B starts a trace of its own", async () => {
      wrapped = true;
      const replies = await drive();
      const spans = await spansAfter(COUNT * 7);
      for (const [n, reply] of replies.entries()) {
        assert.equal(reply.fromB.user, `user-${n}`);
        // undici's instrumentation appends its headers to the ones wrapFetch wrote.
        const sent = String(reply.fromB.traceparent).split(", ");
        assert.equal(sent.length, 2, String(reply.fromB.traceparent));
        const bServer = spans.find((s) => idOf(s) === reply.fromB.serverSpan) as ReadableSpan;
        assert.equal(parentOf(bServer), undefined, "B's SERVER span has no parent");
      }
    });
  });
}

// What startActiveSpan and context.with leave behind differs by manager: under
// ContextVarsContextManager each runs its callback in a copy of the Context, as
// ContextVar#run does; OpenTelemetry's manager leaves this package's Context as it is.
for (const [name, make, expected] of [
  [
    "ContextVarsContextManager",
    () => new ContextVarsContextManager(),
    ["in outer", "in inner / true", "in inner", "in outer", "outer"],
  ],
  [
    "AsyncLocalStorageContextManager",
    () => new AsyncLocalStorageContextManager(),
    ["in outer", "in inner / true", "in with", "in with", "in with"],
  ],
] as const) {
  describe(`vars set inside startActiveSpan and context.with, under ${name}`, () => {
    before(() => useManager(make()));

    it("a var set inside the callback is seen after it returns only under AsyncLocalStorageContextManager", async () => {
      const stage = new ContextVar<string>("stage", { default: "outer" });
      const seen: string[] = [];
      await tracer.startActiveSpan("outer", async (outer) => {
        stage.set("in outer");
        await tracer.startActiveSpan("inner", async (inner) => {
          seen.push(stage.get());
          stage.set("in inner");
          await randomDelay();
          context.with(trace.setSpan(context.active(), outer), () => {
            const outerActive = activeSpanId() === outer.spanContext().spanId;
            seen.push(`${stage.get()} / ${outerActive}`);
            stage.set("in with");
          });
          seen.push(stage.get());
          inner.end();
        });
        seen.push(stage.get());
        outer.end();
      });
      seen.push(stage.get());
      assert.deepEqual(seen, expected);
    });
  });
}

// instrumentation-express runs each middleware and handler through
// `context.bind(spanContext, handle)`, and `next` through another bind. Under
// ContextVarsContextManager a bound function runs in a copy of the Context, so
// what a layer sets is seen by the layers after it (they run inside its copy)
// but not by `req`/`res` listeners, which run in the request's own Context. A
// mutable object set in `seed` is shared by every copy. contextMiddleware is
// a layer too: the request's Context opens inside its bind, and under
// ContextVarsContextManager takes its span ("middleware - contextMiddleware",
// ended by `next`) as the one its listeners see, unless that layer is ignored.
for (const [name, make, finish, listenerSpan] of [
  [
    "ContextVarsContextManager",
    () => new ContextVarsContextManager(),
    "-",
    "middleware - contextMiddleware",
  ],
  ["AsyncLocalStorageContextManager", () => new AsyncLocalStorageContextManager(), "bob", "SERVER"],
] as const) {
  describe(`vars set in Express layers under instrumentation-express and ${name}`, () => {
    const who = new ContextVar<string>("who", { default: "-" });
    const state = new ContextVar<{ who?: string }>("state");
    const seen: string[] = [];
    const spansInFinish: Array<string | undefined> = [];
    const layers = express();
    layers.use(contextMiddleware({ seed: () => state.set({}) }));
    layers.use((_req, res, next) => {
      res.on("finish", () => {
        seen.push(`finish ${who.get()} ${state.get()?.who}`);
        const span = trace.getActiveSpan() as unknown as ReadableSpan | undefined;
        spansInFinish.push(span?.kind === SpanKind.SERVER ? "SERVER" : span?.name);
      });
      next();
    });
    layers.use((_req, _res, next) => {
      who.set("alice");
      next();
    });
    layers.get("/", async (_req, res) => {
      await randomDelay();
      seen.push(`handler ${who.get()}`);
      who.set("bob");
      (state.get() as { who?: string }).who = "bob";
      res.end("ok");
    });
    const server = http.createServer(layers);
    let base = "";
    before(async () => {
      useManager(make());
      base = await context.with(ROOT_CONTEXT, () => listen(server));
    });
    after(() => close(server));

    it(`a res 'finish' listener sees ${finish} for a var the handler set; an object set in seed carries it`, async () => {
      seen.length = 0;
      await Promise.all(Array.from({ length: 5 }, () => send(base, "/")));
      for (let turn = 0; turn < 2000 && seen.length < 10; turn++) await immediate();
      assert.equal(seen.filter((s) => s === "handler alice").length, 5);
      assert.equal(seen.filter((s) => s === `finish ${finish} bob`).length, 5, seen.join(", "));
      assert.deepEqual(new Set(spansInFinish), new Set([listenerSpan]));
    });

    it("with contextMiddleware's layer in ignoreLayers, its listeners see instrumentation-http's SERVER span", async () => {
      expressInstrumentation.setConfig({ ignoreLayers: ["middleware - contextMiddleware"] });
      try {
        seen.length = 0;
        spansInFinish.length = 0;
        await Promise.all(Array.from({ length: 5 }, () => send(base, "/")));
        for (let turn = 0; turn < 2000 && seen.length < 10; turn++) await immediate();
        assert.equal(seen.filter((s) => s === `finish ${finish} bob`).length, 5, seen.join(", "));
        assert.deepEqual(new Set(spansInFinish), new Set(["SERVER"]));
      } finally {
        expressInstrumentation.setConfig({});
      }
    });
  });
}

// @fastify/otel runs every hook and the handler inside `context.with`: under
// ContextVarsContextManager a copy of the Context each, and contextPlugin's
// preValidation hook re-enters the request's own Context. So a var set in an
// onRequest or preHandler hook is not seen by the handler (it is under
// AsyncLocalStorageContextManager, and without @fastify/otel); an object set
// in `seed` and filled in by the hook is.
for (const [name, make, downstream] of [
  ["ContextVarsContextManager", () => new ContextVarsContextManager(), "- -"],
  ["AsyncLocalStorageContextManager", () => new AsyncLocalStorageContextManager(), "admin alice"],
] as const) {
  describe(`vars set in Fastify hooks under @fastify/otel and ${name}`, () => {
    const role = new ContextVar<string>("role", { default: "-" });
    const who = new ContextVar<string>("who", { default: "-" });
    const state = new ContextVar<{ who?: string }>("state");
    const app = Fastify();
    const seen: string[] = [];
    before(async () => {
      useManager(make());
      await app.register(contextPlugin, { seed: () => state.set({}) });
      app.addHook("onRequest", (_request, _reply, done) => {
        role.set("admin");
        done();
      });
      app.addHook("preHandler", async () => {
        await randomDelay();
        who.set("alice");
        (state.get() as { who?: string }).who = "alice";
      });
      app.get("/", async () => {
        const span = trace.getActiveSpan() as unknown as ReadableSpan | undefined;
        // @fastify/otel's span for the handler is active ("handler - " and the plugin chain).
        seen.push(`${role.get()} ${who.get()} ${state.get()?.who} ${span?.name.split(" ")[0]}`);
        return "ok";
      });
      await context.with(ROOT_CONTEXT, () => app.listen({ port: 0, host: "127.0.0.1" }));
    });
    after(() => app.close());

    it(`the handler sees "${downstream}" for vars the hooks set; the object set in seed carries it`, async () => {
      const { port } = app.server.address() as { port: number };
      await Promise.all(Array.from({ length: 5 }, () => send(`http://127.0.0.1:${port}`, "/")));
      assert.deepEqual(
        seen,
        Array.from({ length: 5 }, () => `${downstream} alice handler`),
      );
    });
  });
}

describe("order of setup", () => {
  before(() => useManager(new ContextVarsContextManager()));

  it("registering a second manager is refused; the first stays global and spans still parent", async () => {
    const second = new ContextVarsContextManager();
    assert.equal(context.setGlobalContextManager(second), false);
    await tracer.startActiveSpan("parent", async (parent) => {
      await randomDelay();
      tracer.startSpan("child").end();
      parent.end();
    });
    const [child, parent] = exporter.getFinishedSpans();
    assert.equal(parentOf(child as ReadableSpan), idOf(parent as ReadableSpan));
  });

  it("a contextMixin field named like instrumentation-pino's keys replaces its value", async () => {
    const seen: Line[] = [];
    const tagged = pino(
      { mixin: contextMixin({ user, span_id: () => "from-mixin" }) },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          seen.push(JSON.parse(chunk.toString()) as Line);
          done();
        },
      }),
    );
    await tracer.startActiveSpan("logging", async (span) => {
      user.set("u");
      tagged.info("x");
      assert.equal(seen[0]?.trace_id, span.spanContext().traceId);
      span.end();
    });
    assert.equal(seen[0]?.span_id, "from-mixin");
    assert.equal(seen[0]?.user, "u");
  });

  it("pino imported as an ES module before the instrumentations: contextMixin's fields, no trace_id", async () => {
    const seen: Line[] = [];
    const other = importedPino(
      { mixin },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          seen.push(JSON.parse(chunk.toString()) as Line);
          done();
        },
      }),
    );
    await tracer.startActiveSpan("logging", async (span) => {
      user.set("u");
      other.info("x");
      logger.info("y");
      span.end();
    });
    assert.equal(seen[0]?.trace_id, undefined);
    assert.equal(seen[0]?.user, "u");
    assert.equal(typeof seen[0]?.spanId, "string");
    assert.equal(lines[0]?.trace_id?.length, 32, "the required pino's logger has it");
  });
});
