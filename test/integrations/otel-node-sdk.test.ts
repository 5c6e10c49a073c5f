/**
 * `@opentelemetry/sdk-node`'s NodeSDK (0.223, OpenTelemetry JS 2) with
 * ContextVarsContextManager as its `contextManager`, installed as
 * docs/observability.md installs it, with instrumentation-http, -undici and
 * -pino, real servers on 127.0.0.1 and real clients: the SDK makes the
 * manager the global one and enables no AsyncLocalStorageContextManager of
 * its own; the SERVER span the instrumentation makes is the parent of the
 * handler's spans under `withContext`, and those follow createTask, gather, a
 * TaskGroup and a captured Context, with every request held until all have
 * arrived; the SDK's default propagators (trace context and W3C baggage) put
 * the active OpenTelemetry context's baggage on outgoing requests in place of
 * `contextPropagation`'s, so a field set in the handler does not reach the
 * next service, with `http.get` or `fetch`; instrumentation-pino's log
 * records, through the SDK's `logRecordProcessors`, carry `contextMixin`'s
 * fields and the line's span. A child process (fixtures/otel-node-sdk.ts)
 * runs what needs a fresh process: the docs' NodeSDK with
 * `carry.propagator()`, and a second NodeSDK after `shutdown()`, under this
 * manager and under the SDK's default one.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";
import { Writable } from "node:stream";
import { after, beforeEach, describe, it } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import {
  context,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { PinoInstrumentation } from "@opentelemetry/instrumentation-pino";
import { UndiciInstrumentation } from "@opentelemetry/instrumentation-undici";
import { logs, NodeSDK } from "@opentelemetry/sdk-node";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar, copyContext, createTask, gather, TaskGroup } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import type importedPino from "pino";
import { fixtureResult } from "../helpers/fixture-process.ts";
import { close, keepAliveAgent, listen, send } from "../helpers/http.ts";
import { latch } from "../helpers/latch.ts";

// Every AsyncLocalStorageContextManager enabled while the SDK starts. Given a
// contextManager, the SDK makes none of its own.
const enabledAls: AsyncLocalStorageContextManager[] = [];
const enableAls = AsyncLocalStorageContextManager.prototype.enable;
AsyncLocalStorageContextManager.prototype.enable = function (
  this: AsyncLocalStorageContextManager,
) {
  enabledAls.push(this);
  return enableAls.call(this);
};
const manager = new ContextVarsContextManager();
let enabledBySdk = 0;
const enable = manager.enable.bind(manager);
manager.enable = () => {
  enabledBySdk++;
  return enable();
};

const exporter = new InMemorySpanExporter();
// `traceExporter` would put a BatchSpanProcessor in front of the exporter;
// a SimpleSpanProcessor exports each span as it ends.
const processor = new SimpleSpanProcessor(exporter);
const logExporter = new logs.InMemoryLogRecordExporter();
const sdk = new NodeSDK({
  contextManager: manager,
  spanProcessors: [processor],
  logRecordProcessors: [new logs.SimpleLogRecordProcessor({ exporter: logExporter })],
  // Without metricReaders the SDK reads OTEL_METRICS_EXPORTER, whose default is
  // OTLP: its shutdown() then waits for a collector that is not there.
  metricReaders: [],
  instrumentations: [
    new HttpInstrumentation(),
    new UndiciInstrumentation(),
    new PinoInstrumentation(),
  ],
});
sdk.start();
AsyncLocalStorageContextManager.prototype.enable = enableAls;
after(() => sdk.shutdown());
// The instrumentations patch node:http and pino when they are next required;
// an ESM import is no require (docs/observability.md).
const require = createRequire(import.meta.url);
require("node:http");
const pino = require("pino") as typeof importedPino;

const tracer = trace.getTracer("handlers");
const user = new ContextVar<string>("user");

beforeEach(() => {
  exporter.reset();
  logExporter.reset();
});

function activeSpanId(): string {
  return trace.getActiveSpan()?.spanContext().spanId ?? "none";
}

function nOf(req: http.IncomingMessage): string {
  return new URL(req.url ?? "/", "http://x").searchParams.get("n") ?? "-";
}

/**
 * The exported spans once `count` SERVER spans have ended (instrumentation-http
 * ends one on the response's 'close', which may come after the client has read
 * the response). Bounded: fails after 2,000 turns.
 */
async function spansAfterServers(count: number): Promise<ReadableSpan[]> {
  for (let turn = 0; turn < 2000; turn++) {
    await processor.forceFlush();
    const spans = exporter.getFinishedSpans();
    if (spans.filter((s) => s.kind === SpanKind.SERVER).length >= count) return spans;
    await immediate();
  }
  assert.fail(`fewer than ${count} SERVER spans ended`);
}

function named(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one span named ${name}`);
  return found[0] as ReadableSpan;
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

describe("NodeSDK with contextManager: new ContextVarsContextManager()", () => {
  it("enables the manager and makes it the global one, and enables no AsyncLocalStorageContextManager", () => {
    assert.equal(enabledBySdk, 1, "the SDK called enable()");
    const ctx = ROOT_CONTEXT.setValue(createContextKey("probe"), 1);
    assert.equal(
      context.with(ctx, () => manager.active()),
      ctx,
      "context.with goes through the manager",
    );
    assert.deepEqual(enabledAls, []);
  });

  it("60 concurrent requests under withContext: each handler's spans hang under its own SERVER span, through createTask, gather, a TaskGroup and a captured Context", async () => {
    const count = 60;
    const arrived = latch(count);
    const server = http.createServer(
      withContext(
        async (req, res) => {
          const n = nOf(req);
          const serverSpan = activeSpanId();
          // No request goes on until every one is in its handler.
          await arrived();
          const captured = await tracer.startActiveSpan(`checkout ${n}`, async (span) => {
            const task = createTask(() => tracer.startActiveSpan(`task ${n}`, (s) => s.end()));
            await gather(
              () => tracer.startActiveSpan(`price ${n}`, (s) => s.end()),
              async () => {
                await immediate();
                tracer.startSpan(`stock ${n}`).end();
              },
            );
            const group = new TaskGroup();
            group.createTask(async () => {
              await immediate();
              tracer.startSpan(`group ${n}`).end();
            });
            await group.wait();
            await task;
            const captured = copyContext();
            span.end();
            return captured;
          });
          await immediate();
          // Run after its span ended, outside it: the captured Context brings it back.
          captured.run(() => tracer.startSpan(`captured ${n}`).end());
          res.end(JSON.stringify({ serverSpan, user: user.get("-"), after: activeSpanId() }));
        },
        { seed: (req) => user.set(String(req.headers["x-user"])) },
      ),
    );
    const base = await listen(server);
    const agent = keepAliveAgent(count);
    try {
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, n) => {
          const reply = await send(base, `/?n=${n}`, {
            headers: { "x-user": `user-${n}` },
            agent,
          });
          return JSON.parse(reply.body) as { serverSpan: string; user: string; after: string };
        }),
      );
      const spans = await spansAfterServers(count);
      const ids = new Map(spans.map((s) => [s.spanContext().spanId, s]));
      const traces = new Set<string>();
      for (const [n, seen] of replies.entries()) {
        const serverSpan = ids.get(seen.serverSpan);
        assert.equal(serverSpan?.kind, SpanKind.SERVER, `request ${n} runs under a SERVER span`);
        assert.equal(seen.user, `user-${n}`);
        assert.equal(seen.after, seen.serverSpan, `request ${n}: the SERVER span is active after`);
        const checkout = named(spans, `checkout ${n}`);
        assert.equal(parentOf(checkout), seen.serverSpan, `checkout ${n}`);
        for (const child of ["task", "price", "stock", "group", "captured"]) {
          const span = named(spans, `${child} ${n}`);
          assert.equal(parentOf(span), checkout.spanContext().spanId, `${child} ${n}`);
          assert.equal(span.spanContext().traceId, checkout.spanContext().traceId);
        }
        traces.add(checkout.spanContext().traceId);
      }
      assert.equal(traces.size, count, "each request is its own trace");
    } finally {
      agent.destroy();
      await close(server);
    }
  });
});

describe("the SDK's default propagators", () => {
  it("are W3C trace context and baggage", () => {
    assert.deepEqual(propagation.fields(), ["traceparent", "tracestate", "baggage"]);
  });

  // A sets `role` in its handler and calls B with carry.inject's headers
  // (http.get) or with none (fetch, which docs/observability.md says not to
  // inject into under instrumentation-undici). The instrumentations write the
  // global propagator's headers after the caller's: `baggage` is the active
  // OpenTelemetry context's, which holds what came in from upstream only.
  const role = new ContextVar<string>("role");
  const carry = contextPropagation({ "user.id": user, role });
  const seed = (req: http.IncomingMessage) => carry.extractInto(req.headers);
  const b = http.createServer(
    withContext(
      (req, res) => {
        res.end(
          JSON.stringify({
            user: user.get("-"),
            role: role.get("-"),
            traceparent: req.headers.traceparent,
          }),
        );
      },
      { seed },
    ),
  );
  const toB = keepAliveAgent(8);
  let bBase = "";
  const a = http.createServer(
    withContext(
      async (req, res) => {
        const n = nOf(req);
        role.set(`role-${n}`);
        const url = `${bBase}/?n=${n}`;
        const reply = new URL(req.url ?? "/", "http://a").pathname.startsWith("/fetch")
          ? await (await fetch(url)).text()
          : await new Promise<string>((resolve, reject) => {
              http
                .get(
                  url,
                  { agent: toB, headers: carry.inject({}) as Record<string, string> },
                  (answer) => {
                    let body = "";
                    answer.setEncoding("utf8");
                    answer.on("data", (chunk: string) => {
                      body += chunk;
                    });
                    answer.on("end", () => resolve(body));
                  },
                )
                .on("error", reject);
            });
        res.end(reply);
      },
      { seed },
    ),
  );
  after(() => toB.destroy());

  for (const path of ["/get", "/fetch"]) {
    it(`a field set in A's handler does not reach B, one from upstream does (${path === "/get" ? "http.get with carry.inject's headers" : "plain fetch"}, 40 concurrent)`, async () => {
      bBase = await listen(b);
      const aBase = await listen(a);
      const agent = keepAliveAgent(40);
      try {
        const replies = await Promise.all(
          Array.from({ length: 40 }, async (_, n) => {
            const reply = await send(aBase, `${path}?n=${n}`, {
              headers: { baggage: `user.id=user-${n}` },
              agent,
            });
            return JSON.parse(reply.body) as { user: string; role: string; traceparent: string };
          }),
        );
        assert.deepEqual(
          replies.map((r) => r.user),
          replies.map((_, n) => `user-${n}`),
          "the upstream entry travels",
        );
        assert.equal(replies.filter((r) => r.role !== "-").length, 0, "0 of 40 carried role");
        const spans = await spansAfterServers(80);
        const clients = new Set(
          spans.filter((s) => s.kind === SpanKind.CLIENT).map((s) => s.spanContext().spanId),
        );
        for (const reply of replies) {
          assert.ok(clients.has(reply.traceparent.split("-")[2] as string), "under a CLIENT span");
        }
      } finally {
        agent.destroy();
        await close(a);
        await close(b);
      }
    });
  }
});

describe("instrumentation-pino with the SDK's logRecordProcessors", () => {
  interface Line {
    n: string;
    requestId?: string;
    user?: string;
    trace_id?: string;
    span_id?: string;
    trace_flags?: string;
  }

  it("a record carries contextMixin's fields as attributes and the line's span; a mixin field named trace_flags replaces the line's (30 concurrent)", async () => {
    const lines: Line[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Line);
        done();
      },
    });
    const logger = pino(
      { mixin: contextMixin({ requestId, user, trace_flags: () => "from-mixin" }) },
      sink,
    );
    const count = 30;
    const arrived = latch(count);
    const server = http.createServer(
      withContext(
        async (req, res) => {
          const n = nOf(req);
          await arrived();
          const span = tracer.startActiveSpan(`log ${n}`, (span) => {
            logger.info({ n }, "handled");
            span.end();
            return span.spanContext();
          });
          res.end(JSON.stringify(span));
        },
        { seed: (req) => user.set(String(req.headers["x-user"])) },
      ),
    );
    const base = await listen(server);
    const agent = keepAliveAgent(count);
    try {
      const replies = await Promise.all(
        Array.from({ length: count }, async (_, n) => {
          const reply = await send(base, `/?n=${n}`, {
            headers: { "x-request-id": `req-${n}`, "x-user": `user-${n}` },
            agent,
          });
          return JSON.parse(reply.body) as { traceId: string; spanId: string };
        }),
      );
      const records = logExporter.getFinishedLogRecords();
      assert.equal(records.length, count);
      for (const [n, span] of replies.entries()) {
        const line = lines.find((l) => l.n === String(n));
        assert.deepEqual(
          {
            requestId: line?.requestId,
            user: line?.user,
            trace_id: line?.trace_id,
            span_id: line?.span_id,
            trace_flags: line?.trace_flags,
          },
          {
            requestId: `req-${n}`,
            user: `user-${n}`,
            trace_id: span.traceId,
            span_id: span.spanId,
            trace_flags: "from-mixin",
          },
          `line ${n}`,
        );
        const record = records.find((r) => r.attributes.n === String(n));
        assert.ok(record, `record ${n}`);
        assert.deepEqual(
          record.attributes,
          { n: String(n), requestId: `req-${n}`, user: `user-${n}` },
          `record ${n}: the line's fields but trace_id, span_id and trace_flags`,
        );
        assert.equal(record.spanContext?.spanId, span.spanId, `record ${n}'s span`);
        assert.equal(record.spanContext?.traceId, span.traceId);
      }
    } finally {
      agent.destroy();
      await close(server);
    }
  });
});

const fixture = fileURLToPath(new URL("./fixtures/otel-node-sdk.ts", import.meta.url));

describe("in a process of its own", { concurrency: true }, () => {
  // One process runs both: 40 concurrent requests through http.get, then 40 through fetch.
  let carried: Promise<Record<"get" | "fetch", { reached: number; of: number }>> | undefined;
  for (const path of ["get", "fetch"] as const) {
    it(`the docs' NodeSDK with carry.propagator(): a field set in A's handler reaches B through ${path === "get" ? "http.get" : "fetch"}, with no inject (40 concurrent)`, async () => {
      carried ??= fixtureResult(fixture, { args: ["carry"] });
      assert.deepEqual((await carried)[path], { reached: 40, of: 40 });
    });
  }

  // What one start measured: whether its manager (and the first SDK's) is the
  // global one, and what reached its exporter: a span started by hand, and
  // instrumentation-http's SERVER span for a request to a server created
  // under the first SDK (early) and under this one (fresh), with whether the
  // handler ran under an active span at all.
  const started = {
    managerGlobal: true,
    firstManagerGlobal: true,
    byHand: 1,
    early: { active: true, exported: 1 },
    fresh: { active: true, exported: 1 },
  };
  for (const manager of ["contextvars", "default"]) {
    it(`a second NodeSDK after shutdown(), ${manager === "contextvars" ? "with ContextVarsContextManager" : "with the SDK's default manager"}: its manager and tracer provider are refused, and trace.disable() lets the provider in but not instrumentation-http's spans`, async () => {
      const result = await fixtureResult<Record<string, typeof started>>(fixture, {
        args: ["restart", manager],
      });
      assert.deepEqual(result, {
        first: started,
        second: {
          ...started,
          managerGlobal: false,
          byHand: 0,
          early: { active: true, exported: 0 },
          fresh: { active: true, exported: 0 },
        },
        afterTraceDisable: {
          ...started,
          managerGlobal: false,
          early: { active: true, exported: 0 },
          fresh: { active: true, exported: 0 },
        },
      });
    });
  }
});
