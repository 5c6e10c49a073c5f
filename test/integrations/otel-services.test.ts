/**
 * Two real services on 127.0.0.1: service A (Express) calls service B over
 * loopback with `wrapFetch`; B is each framework in turn, set up with the
 * documented one-liner `seed: (…) => carry.extractInto(…headers)`. The
 * caller's values and trace cross; bad baggage and bad traceparent are
 * ignored and the request still succeeds.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { getRequestListener } from "@hono/node-server";
import { context, type Span, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar } from "contextvars";
import { contextMiddleware as expressContext } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { contextMiddleware as honoContext } from "contextvars/hono";
import { requestId, withContext } from "contextvars/http";
import { contextMiddleware as koaContext } from "contextvars/koa";
import {
  baggageField,
  ContextVarsContextManager,
  codecs,
  contextPropagation,
} from "contextvars/otel";
import express from "express";
import Fastify from "fastify";
import { Hono } from "hono";
import Koa from "koa";
import { close, keepAliveAgent, listen, randomDelay, send, UUID } from "../helpers/http.ts";

context.setGlobalContextManager(new ContextVarsContextManager().enable());
const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
}).getTracer("services");

const user = new ContextVar<string>("user");
const attempt = new ContextVar<number>("attempt");
const carry = contextPropagation({
  "user.id": user,
  attempt: baggageField(attempt, codecs.integer),
  "request.id": baggageField(requestId, codecs.matching(/^[\w.:=+/-]{1,200}$/)),
});

/** What B answers: what it sees in its own request Context. */
interface Seen {
  requestId: string;
  user: string;
  attempt: number | null;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  remoteParent: boolean;
}

async function observe(): Promise<Seen> {
  const parent = trace.getActiveSpan()?.spanContext();
  return tracer.startActiveSpan("B", async (span: Span) => {
    await randomDelay();
    span.end();
    const own = span.spanContext();
    return {
      requestId: requestId.get(),
      user: user.get("-"),
      attempt: attempt.get(null),
      traceId: own.traceId,
      spanId: own.spanId,
      parentSpanId: parent?.spanId ?? null,
      remoteParent: parent?.isRemote === true,
    };
  });
}

// Service B, once per framework, each with its one-liner.
const services: Record<string, () => Promise<{ url: string; stop: () => Promise<void> }>> = {
  http: async () => {
    const server = createServer(
      withContext(
        async (_req, res) => {
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify(await observe()));
        },
        { seed: (req) => carry.extractInto(req.headers) },
      ),
    );
    return { url: await listen(server), stop: () => close(server) };
  },
  express: async () => {
    const app = express();
    app.use(expressContext({ seed: (req) => carry.extractInto(req.headers) }));
    app.get("/whoami", async (_req, res) => {
      res.json(await observe());
    });
    const server = createServer(app);
    return { url: await listen(server), stop: () => close(server) };
  },
  fastify: async () => {
    // All connections closed on close, idle or not, as close() does for the
    // others: Deno's fetch keeps A's connection to B open, and a close() that
    // found it not yet idle waited out Deno's 90 s pool timeout.
    const app = Fastify({ forceCloseConnections: true });
    await app.register(contextPlugin, { seed: (request) => carry.extractInto(request.headers) });
    app.get("/whoami", () => observe());
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    return { url, stop: () => app.close() };
  },
  hono: async () => {
    const app = new Hono();
    app.use(honoContext({ seed: (c) => carry.extractInto(c.req.raw.headers) }));
    app.get("/whoami", async (c) => c.json(await observe()));
    const server = createServer(getRequestListener(app.fetch));
    return { url: await listen(server), stop: () => close(server) };
  },
  koa: async () => {
    const app = new Koa();
    app.use(koaContext({ seed: (ctx) => carry.extractInto(ctx.headers) }));
    app.use(async (ctx) => {
      ctx.body = await observe();
    });
    const server = createServer(app.callback());
    return { url: await listen(server), stop: () => close(server) };
  },
};

// Service A: Express, calling B with the wrapped fetch inside its own span.
function serviceA(bUrl: () => string): Server {
  const tracedFetch = carry.wrapFetch(fetch);
  const app = express();
  app.use(expressContext({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
  app.get("/call", async (req, res) => {
    await tracer.startActiveSpan("A", async (span) => {
      attempt.set(Number(req.query.attempt ?? 1));
      await randomDelay();
      const reply = await tracedFetch(`${bUrl()}/whoami`);
      const b = (await reply.json()) as Seen;
      span.end();
      const { traceId, spanId } = span.spanContext();
      res.json({ a: { requestId: requestId.get(), traceId, spanId }, b });
    });
  });
  return createServer(app);
}

for (const [framework, start] of Object.entries(services)) {
  describe(`A (express) → B (${framework})`, () => {
    let b: { url: string; stop: () => Promise<void> };
    let aUrl = "";
    const a = serviceA(() => b.url);
    before(async () => {
      b = await start();
      aUrl = await listen(a);
    });
    after(async () => {
      await close(a);
      await b.stop();
    });

    it("request id, user, attempt and trace cross, under 50 concurrent calls", async () => {
      const agent = keepAliveAgent();
      const replies = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const reply = await send(aUrl, `/call?attempt=${i}`, {
            headers: { "x-user": `user-${i}`, "x-request-id": `req-${framework}-${i}` },
            agent,
          });
          assert.equal(reply.status, 200, reply.body);
          return { i, ...(JSON.parse(reply.body) as { a: Omit<Seen, "user">; b: Seen }) };
        }),
      );
      agent.destroy();
      for (const { i, a: seenA, b: seenB } of replies) {
        assert.equal(seenA.requestId, `req-${framework}-${i}`);
        assert.equal(seenB.requestId, seenA.requestId, "request id crossed");
        assert.equal(seenB.user, `user-${i}`, "user crossed");
        assert.equal(seenB.attempt, i, "attempt crossed as a number");
        assert.equal(seenB.traceId, seenA.traceId, "same trace");
        assert.equal(seenB.parentSpanId, seenA.spanId, "B's span is a child of A's");
        assert.equal(seenB.remoteParent, true);
      }
    });

    it("a request id that arrives as baggage is B's requestId, but B echoes the id its integration chose before seed; sent as x-request-id too, the two agree (pinned)", async () => {
      const baggageOnly = await send(b.url, "/whoami", {
        headers: { baggage: "request.id=req-7" },
      });
      assert.equal((JSON.parse(baggageOnly.body) as Seen).requestId, "req-7");
      assert.match(String(baggageOnly.headers["x-request-id"]), UUID);
      const both = await send(b.url, "/whoami", {
        headers: { baggage: "request.id=req-8", "x-request-id": "req-8" },
      });
      assert.equal((JSON.parse(both.body) as Seen).requestId, "req-8");
      assert.equal(both.headers["x-request-id"], "req-8");
    });

    it("bad baggage and bad traceparent are ignored: the request succeeds without them", async () => {
      const cases: Record<string, string>[] = [
        { traceparent: "00-not-a-trace-01", baggage: "user.id=%E0%A4%A,attempt=x" },
        { traceparent: `00-${"0".repeat(32)}-${"1".repeat(16)}-01`, baggage: "=,,;" },
        { baggage: Array.from({ length: 200 }, (_, i) => `k${i}=v`).join(",") },
        { baggage: `user.id=${"x".repeat(9000)}` },
        { baggage: "user.id=ok,request.id=a%0AFAKE%20LOG%20LINE,__proto__=x" },
      ];
      for (const headers of cases) {
        const reply = await send(b.url, "/whoami", { headers });
        assert.equal(reply.status, 200, `${JSON.stringify(headers).slice(0, 80)}: ${reply.body}`);
        const seen = JSON.parse(reply.body) as Seen;
        assert.equal(seen.parentSpanId, null, "no remote parent");
        assert.ok(["-", "ok"].includes(seen.user));
        assert.equal(seen.attempt, null);
        assert.match(seen.requestId, UUID, "a rejected request id leaves B's own");
      }
    });
  });
}

// docs/observability.md, the way in: under another global manager extractInto
// sets the vars but makes no trace active, and nothing says so.
describe("B (express) under OpenTelemetry's AsyncLocalStorageContextManager", () => {
  const app = (extractIn: "seed" | "middleware") => {
    const b = express();
    if (extractIn === "seed") {
      b.use(expressContext({ seed: (req) => carry.extractInto(req.headers) }));
    } else {
      b.use(expressContext());
      b.use((req, _res, next) => context.with(carry.extractInto(req.headers), next));
    }
    b.get("/whoami", async (_req, res) => {
      res.json(await observe());
    });
    return createServer(b);
  };
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

  it("extractInto in seed sets the vars, but the handler's span starts a trace of its own; run under context.with(carry.extractInto(...), next) it continues the caller's", async () => {
    context.disable();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    try {
      for (const extractIn of ["seed", "middleware"] as const) {
        const server = app(extractIn);
        const url = await listen(server);
        try {
          const reply = await send(url, "/whoami", {
            headers: { traceparent, baggage: "user.id=ana" },
          });
          const seen = JSON.parse(reply.body) as Seen;
          assert.equal(seen.user, "ana", extractIn);
          assert.equal(
            seen.parentSpanId,
            extractIn === "seed" ? null : "b7ad6b7169203331",
            extractIn,
          );
        } finally {
          await close(server);
        }
      }
    } finally {
      context.disable();
      context.setGlobalContextManager(new ContextVarsContextManager().enable());
    }
  });
});
