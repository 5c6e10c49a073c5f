/**
 * A real OpenTelemetry tracer (sdk-trace-base: BasicTracerProvider,
 * SimpleSpanProcessor, InMemorySpanExporter) on ContextVarsContextManager:
 * every span's parent is the span that was active where it started, across
 * awaits, timers, this package's tasks, and concurrent requests.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";
import { setImmediate as immediate, setTimeout as sleep } from "node:timers/promises";
import { context, ROOT_CONTEXT, type Span, trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar, createTask, gather, TaskGroup } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

context.setGlobalContextManager(new ContextVarsContextManager().enable());
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("contextvars-test");
const CALLER_SPAN_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-0af7651916cd43dd8448eb211c80319c-${CALLER_SPAN_ID}-01`;

/** Runs fn in a new active span and ends it when fn settles. */
function inSpan<T>(name: string, fn: (span: Span) => Promise<T> | T): Promise<T> {
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return await fn(span);
    } finally {
      span.end();
    }
  });
}

// forceFlush first: from OpenTelemetry JS 3, SimpleSpanProcessor exports after the span ends, not in end().
async function spansByName(): Promise<Map<string, ReadableSpan>> {
  await provider.forceFlush();
  return new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
}

/** Asserts each child's parent is the named span (same trace, parent span id). */
async function assertTree(tree: Record<string, string | undefined>): Promise<void> {
  const spans = await spansByName();
  for (const [child, parent] of Object.entries(tree)) {
    const span = spans.get(child);
    assert.ok(span, `span ${child} was exported`);
    if (parent === undefined) {
      assert.equal(span.parentSpanContext, undefined, `${child} is a root span`);
      continue;
    }
    const parentSpan = spans.get(parent);
    assert.ok(parentSpan, `span ${parent} was exported`);
    assert.equal(
      span.parentSpanContext?.spanId,
      parentSpan.spanContext().spanId,
      `${child} → ${parent}`,
    );
    assert.equal(span.spanContext().traceId, parentSpan.spanContext().traceId);
  }
}

describe("sdk-trace-base on ContextVarsContextManager", () => {
  beforeEach(() => exporter.reset());

  it("children across awaits, timers and immediates have the right parent", async () => {
    await inSpan("root", async () => {
      await sleep(2);
      await inSpan("after await", async () => {
        await immediate();
        await inSpan("nested after immediate", () => undefined);
      });
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          void inSpan("in timer", () => undefined).then(resolve);
        }, 1),
      );
      await inSpan("sibling", () => undefined);
    });
    await assertTree({
      root: undefined,
      "after await": "root",
      "nested after immediate": "after await",
      "in timer": "root",
      sibling: "root",
    });
  });

  it("createTask, gather and TaskGroup children get the span active where they were created", async () => {
    await inSpan("parent", async () => {
      const task = createTask(() => inSpan("createTask child", () => sleep(2)));
      await gather(
        () => inSpan("gather a", () => sleep(3)),
        () => inSpan("gather b", async () => inSpan("gather b/inner", () => sleep(1))),
      );
      const group = new TaskGroup();
      await inSpan("group owner", async () => {
        group.createTask(() => inSpan("taskgroup child", () => sleep(1)));
      });
      group.createTask(() => inSpan("taskgroup sibling", () => sleep(1)));
      await group.wait();
      await task;
    });
    await assertTree({
      parent: undefined,
      "createTask child": "parent",
      "gather a": "parent",
      "gather b": "parent",
      "gather b/inner": "gather b",
      "group owner": "parent",
      "taskgroup child": "group owner",
      "taskgroup sibling": "parent",
    });
  });

  it("a span started after its parent ended still gets that parent (the context was captured)", async () => {
    let late: Promise<void> | undefined;
    await inSpan("short", () => {
      late = sleep(5).then(() => inSpan("late", () => undefined));
    });
    await late;
    await assertTree({ short: undefined, late: "short" });
  });

  it("startSpan outside any span makes a root; context.with(ROOT_CONTEXT) detaches", async () => {
    await inSpan("outer", () =>
      context.with(ROOT_CONTEXT, () => inSpan("detached", () => undefined)),
    );
    await assertTree({ outer: undefined, detached: undefined });
  });
});

describe("200 concurrent requests", () => {
  const user = new ContextVar<string>("user");
  const carry = contextPropagation({ user });
  let base = "";
  const server = createServer(
    withContext(
      async (_req, res) => {
        const seen = await inSpan(`request ${requestId.get()}`, async (span) => {
          await randomDelay();
          const children = await gather(
            ...[1, 2].map(
              (n) => () =>
                inSpan(`child ${n} ${requestId.get()}`, async (child) => {
                  await randomDelay();
                  return child.spanContext().spanId;
                }),
            ),
          );
          return { span: span.spanContext(), children, user: user.get("-") };
        });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(seen));
      },
      { seed: (req) => carry.extractInto(req.headers) },
    ),
  );
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  it("every request's spans form their own tree, under the caller's trace", async () => {
    exporter.reset();
    const agent = keepAliveAgent(50);
    const calls = Array.from({ length: 200 }, (_, i) =>
      inSpan(`client ${i}`, async (clientSpan) => {
        user.set(`user-${i}`);
        const headers = carry.inject({ "x-request-id": `req-${i}` } as Record<string, string>);
        const reply = await send(base, "/", { headers, agent });
        return { i, client: clientSpan.spanContext(), reply: JSON.parse(reply.body) };
      }),
    );
    const results = await Promise.all(calls);
    agent.destroy();
    const spans = await spansByName();
    for (const { i, client, reply } of results) {
      assert.equal(reply.user, `user-${i}`);
      assert.equal(reply.span.traceId, client.traceId, `request ${i} continues its client's trace`);
      const request = spans.get(`request req-${i}`);
      assert.equal(request?.parentSpanContext?.spanId, client.spanId);
      for (const n of [1, 2]) {
        const child = spans.get(`child ${n} req-${i}`);
        assert.equal(child?.parentSpanContext?.spanId, reply.span.spanId, `child ${n} of ${i}`);
        assert.equal(child?.spanContext().traceId, client.traceId);
      }
    }
  });

  // What @opentelemetry/instrumentation-http does: it makes the server span
  // active around the request listener. The request Context is a fresh copy of
  // the root Context, but the manager registers its var to be carried in from
  // the Context the request arrives in, so that span stays the parent.
  it("a span made active around the listener (as instrumentation-http does) is the handler's parent", async () => {
    const inner = withContext((_req, res) => {
      res.end(trace.getActiveSpan()?.spanContext().spanId ?? "none");
    });
    const instrumented = createServer((req, res) => {
      const span = tracer.startSpan("server");
      res.setHeader("x-span", span.spanContext().spanId);
      res.on("finish", () => span.end());
      context.with(trace.setSpan(ROOT_CONTEXT, span), () => inner(req, res));
    });
    const url = await listen(instrumented);
    try {
      const reply = await send(url, "/");
      assert.equal(reply.body, reply.headers["x-span"]);
    } finally {
      await close(instrumented);
    }
  });

  // docs/observability.md, pino: a res listener added inside startActiveSpan
  // runs in the request's Context, where that span is not active; a trace id
  // read there is the caller's, or none. context.bind keeps the span.
  it("a res listener added inside startActiveSpan sees the request's OpenTelemetry context, not that span; bound with context.bind, the span and the request's vars", async () => {
    const seen = new Map<string, Record<string, string | undefined>>();
    let calls = 0;
    let resolve = () => {};
    const allCalled = new Promise<void>((done) => {
      resolve = done;
    });
    const server = createServer(
      withContext(
        (_req, res) =>
          inSpan("handler", (span) => {
            const id = requestId.get();
            const record = (key: string) => () => {
              const entry = seen.get(id) ?? {};
              entry[key] = `${trace.getActiveSpan()?.spanContext().spanId} ${requestId.get()}`;
              seen.set(id, entry);
              if (++calls === 4) resolve();
            };
            res.on("finish", record("plain"));
            res.on("finish", context.bind(context.active(), record("bound")));
            seen.set(id, { handler: span.spanContext().spanId });
            res.end();
          }),
        { seed: (req) => carry.extractInto(req.headers) },
      ),
    );
    const url = await listen(server);
    try {
      await Promise.all([
        send(url, "/", { headers: { "x-request-id": "root" } }),
        send(url, "/", { headers: { "x-request-id": "remote", traceparent: TRACEPARENT } }),
      ]);
      await allCalled;
      const root = seen.get("root");
      const remote = seen.get("remote");
      assert.equal(root?.plain, "undefined root");
      assert.equal(root?.bound, `${root?.handler} root`);
      assert.equal(remote?.plain, `${CALLER_SPAN_ID} remote`);
      assert.equal(remote?.bound, `${remote?.handler} remote`);
    } finally {
      await close(server);
    }
  });

  // docs/observability.md: the OpenTelemetry context a request takes from where
  // it arrives is, without instrumentation, the one where the server listens.
  it("a server that listens inside a span makes it every request's parent, over an incoming traceparent; one listening under context.with(ROOT_CONTEXT) does not", async () => {
    const handler = withContext(
      (_req, res) =>
        inSpan("handler", (span) => {
          res.end(
            JSON.stringify((span as unknown as ReadableSpan).parentSpanContext?.spanId ?? null),
          );
        }),
      { seed: (req) => carry.extractInto(req.headers) },
    );
    const inside = createServer(handler);
    const detached = createServer(handler);
    const { startup, insideUrl, detachedUrl } = await inSpan("startup", async (span) => ({
      startup: span.spanContext().spanId,
      insideUrl: await listen(inside),
      detachedUrl: await context.with(ROOT_CONTEXT, () => listen(detached)),
    }));
    const parents = (url: string) =>
      Promise.all(
        ([{}, { traceparent: TRACEPARENT }] as Record<string, string>[]).map(async (headers) =>
          JSON.parse((await send(url, "/", { headers })).body),
        ),
      );
    try {
      assert.deepEqual(await parents(insideUrl), [startup, startup]);
      assert.deepEqual(await parents(detachedUrl), [null, CALLER_SPAN_ID]);
    } finally {
      await Promise.all([close(inside), close(detached)]);
    }
  });
});
