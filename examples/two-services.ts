// Two services over loopback, traced with OpenTelemetry and logged with pino:
// service A (Express) takes a checkout request and asks service B (Hono on
// @hono/node-server) for a price. Neither passes the request id, the user or
// the span around: A's fetch carries them as `baggage` and `traceparent`, B's
// middleware takes them back into its own request Context, and both loggers
// read them through `contextMixin`. The same request id, user and trace id
// appear on both sides' lines.
//
//   tsx --conditions=contextvars-source examples/two-services.ts   (npm run example:services)
//
// Prints the log lines of two concurrent checkouts (order varies), then:
//   req-alice: A and B agree on request id, user (alice) and trace 4bf92f35…
//   req-bob: A and B agree on request id, user (bob) and trace 0af76519…
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { getRequestListener } from "@hono/node-server";
import { context, trace } from "@opentelemetry/api";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import { ContextVar } from "contextvars";
import { contextMiddleware as expressContext } from "contextvars/express";
import { contextMiddleware as honoContext } from "contextvars/hono";
import { requestId } from "contextvars/http";
import {
  baggageField,
  ContextVarsContextManager,
  codecs,
  contextPropagation,
} from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import express from "express";
import { Hono } from "hono";
import pino from "pino";

// ---- shared by both services (in real life, a small internal package) --------

context.setGlobalContextManager(new ContextVarsContextManager().enable());
const tracer = new BasicTracerProvider().getTracer("two-services");

const user = new ContextVar<string>("user");
// What crosses as baggage. Baggage comes from the caller: the request id is
// checked with the same rule the web integrations apply to x-request-id.
const carry = contextPropagation({
  "user.id": user,
  "request.id": baggageField(requestId, codecs.matching(/^[\w.:=+/-]{1,200}$/)),
});

interface LogLine {
  service: string;
  requestId?: string;
  user?: string;
  traceId?: string;
  msg: string;
}
const lines: LogLine[] = [];

function loggerFor(service: string): pino.Logger {
  return pino(
    {
      base: { service },
      timestamp: false,
      mixin: contextMixin({
        requestId,
        user,
        traceId: () => trace.getActiveSpan()?.spanContext().traceId,
      }),
    },
    {
      write(line: string) {
        process.stdout.write(line);
        lines.push(JSON.parse(line) as LogLine);
      },
    },
  );
}

// ---- service B: Hono, prices ----------------------------------------------------

const logB = loggerFor("B");
const b = new Hono();
b.use(honoContext({ seed: (c) => carry.extractInto(c.req.raw.headers) }));
b.get("/price/:sku", (c) =>
  tracer.startActiveSpan("B price", async (span) => {
    logB.info({ sku: c.req.param("sku") }, "pricing");
    await sleep(5); // a database
    span.end();
    return c.json({ sku: c.req.param("sku"), cents: 1250 });
  }),
);

// ---- service A: Express, checkout -----------------------------------------------

const logA = loggerFor("A");
const priceService = { url: "" };
const tracedFetch = carry.wrapFetch(fetch);
const a = express();
a.use(expressContext({ seed: (req) => user.set(req.get("x-user") ?? "anonymous") }));
a.post("/checkout", (_req, res) =>
  tracer.startActiveSpan("A checkout", async (span) => {
    logA.info("checkout started");
    const reply = await tracedFetch(`${priceService.url}/price/tea`);
    const price = (await reply.json()) as { cents: number };
    logA.info({ cents: price.cents }, "priced by B");
    span.end();
    res.json({ ok: true });
  }),
);

// ---- run both, send two checkouts at once, compare the lines, exit --------------

async function start(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const serverB = createServer(getRequestListener(b.fetch));
const serverA = createServer(a);
priceService.url = await start(serverB);
const urlA = await start(serverA);

const customers = ["alice", "bob"];
await Promise.all(
  customers.map((name) =>
    fetch(`${urlA}/checkout`, {
      method: "POST",
      headers: { "x-request-id": `req-${name}`, "x-user": name },
    }).then((r) => r.json()),
  ),
);

console.log("");
let agreed = 0;
const tracesSeen = new Set<string>();
for (const name of customers) {
  const id = `req-${name}`;
  const mine = lines.filter((line) => line.requestId === id);
  const sides = new Set(mine.map((line) => line.service));
  const users = new Set(mine.map((line) => line.user));
  const traces = new Set(mine.map((line) => line.traceId));
  const [traceId] = traces;
  // Each checkout is its own trace: one seen before means a span leaked across requests.
  const own = traceId !== undefined && !tracesSeen.has(traceId);
  if (traceId !== undefined) tracesSeen.add(traceId);
  if (sides.size === 2 && users.size === 1 && users.has(name) && traces.size === 1 && own) {
    console.log(
      `${id}: A and B agree on request id, user (${name}) and trace ${traceId.slice(0, 8)}…`,
    );
    agreed++;
  } else {
    console.log(`${id}: MISMATCH ${JSON.stringify(mine)}`);
  }
}

serverA.closeAllConnections();
serverB.closeAllConnections();
serverA.close();
serverB.close();
process.exitCode = agreed === customers.length ? 0 : 1;
