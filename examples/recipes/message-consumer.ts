// Recipe: message brokers, a Context per message (docs/recipes.md).
// A producer publishes each order from a request of its own (a request id,
// a user, a span) and puts contextPropagation's headers in the message; the
// consumer restores them with extractInto, logs with pino, and acks. A
// plain message listener runs every message in the Context the client was
// connected in, here the program's root: each message starts with the last
// one's values, and after an await reads whichever message restored its
// values last. bind(handler, new Context()) gives each message a fresh
// Context of its own.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/message-consumer.ts
//
// The broker is aedes, in this process, on 127.0.0.1. It speaks MQTT 3.1.1,
// which has no message headers, so they travel in the payload.
import { once } from "node:events";
import { type AddressInfo, createServer } from "node:net";
import { context } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Aedes } from "aedes";
import { bind, Context, ContextVar, createTask } from "contextvars";
import { requestId } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import mqtt from "mqtt";
import pino from "pino";

context.setGlobalContextManager(new ContextVarsContextManager().enable());
const exporter = new InMemorySpanExporter();
const tracer = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
}).getTracer("shop");

const user = new ContextVar<string>("user");
const carry = contextPropagation({ "user.id": user, "request.id": requestId });
const logLines: string[] = [];
const logger = pino(
  { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user }) },
  { write: (line: string) => logLines.push(line.trimEnd()) },
);

interface Envelope {
  headers: Record<string, string>;
  order: { id: string; fail: boolean };
}

const broker = await Aedes.createBroker();
const server = createServer(broker.handle).listen(0, "127.0.0.1");
await once(server, "listening");
// A new object per client: mqtt.connect() writes its clientId into the one it is given.
const options = () => ({
  host: "127.0.0.1",
  port: (server.address() as AddressInfo).port,
  reconnectPeriod: 0,
});

// The producer: each order published from a request of its own, with a span.
const producer = await mqtt.connectAsync(options());
const producerSpans = new Map<string, string>();
function publish(topic: string, id: string, name: string, fail = false) {
  return createTask(() => {
    requestId.set(id);
    user.set(name);
    return tracer.startActiveSpan(`publish ${id}`, async (span) => {
      producerSpans.set(id, span.spanContext().spanId);
      const envelope: Envelope = { headers: carry.inject({}), order: { id, fail } };
      await producer.publishAsync(topic, JSON.stringify(envelope), { qos: 1 });
      span.end();
    });
  });
}

// The work waits until every message of a batch has arrived, so that they
// all overlap, as a busy consumer's do.
let batch = { size: 0, arrived: 0, release: () => {}, released: Promise.resolve() };
function nextBatch(size: number) {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  batch = { size, arrived: 0, release, released };
}
function work(): Promise<void> {
  if (++batch.arrived === batch.size) batch.release();
  return batch.released;
}
let handled = () => {};

const results: string[] = [];
async function handleOrder(_topic: string, payload: Buffer): Promise<void> {
  const started = `requestId ${requestId.get("-")}, user ${user.get("-")}`;
  const { headers, order } = JSON.parse(String(payload)) as Envelope;
  carry.extractInto(headers); // this message's vars, and its trace as the parent
  try {
    await tracer.startActiveSpan(`process ${order.id}`, async (span) => {
      try {
        await work();
        if (order.fail) throw new Error("out of stock");
      } finally {
        span.end();
      }
    });
    logger.info({ order: order.id }, "acked");
    results.push(`${order.id} started with ${started}; acked as ${requestId.get()}, ${user.get()}`);
    handled();
  } catch (error) {
    logger.error({ order: order.id, err: (error as Error).message }, "failed");
    results.push(
      `${order.id} started with ${started}; failed as ${requestId.get()}, ${user.get()}`,
    );
    handled();
  }
}

type Order = [id: string, name: string, fail?: boolean];

/** A consumer connected at the top level (the root Context), fed the batches one after another. */
async function consume(
  title: string,
  listener: (topic: string, payload: Buffer) => Promise<void>,
  batches: Order[][],
) {
  console.log(title);
  const topic = `orders/${batches[0]?.[0]?.[0]}`;
  const consumer = await mqtt.connectAsync(options());
  consumer.on("message", listener);
  await consumer.subscribeAsync(topic, { qos: 1 });
  results.length = 0;
  exporter.reset();
  let count = 0;
  for (const orders of batches) {
    count += orders.length;
    nextBatch(orders.length);
    const all = new Promise<void>((resolve) => {
      handled = () => results.length === count && resolve();
    });
    await Promise.all(orders.map(([id, name, fail]) => publish(topic, id, name, fail)));
    await all;
  }
  for (const line of results) console.log(`  ${line}`);
  const own = exporter
    .getFinishedSpans()
    .filter((span) => span.parentSpanContext?.spanId === producerSpans.get(span.name.slice(8)));
  console.log(`  spans that are children of their own producer's span: ${own.length} of ${count}`);
  await consumer.endAsync();
}

await consume("a plain message listener:", handleOrder, [
  [
    ["order-1", "alice"],
    ["order-2", "bob"],
    ["order-3", "carol"],
  ],
]);
console.log(
  `the program's top level now reads requestId ${requestId.get("-")}, user ${user.get("-")}`,
);

await consume(
  "bind(handler, new Context()), order-6 failing, then order-7:",
  bind(handleOrder, new Context()),
  [
    [
      ["order-4", "dave"],
      ["order-5", "erin"],
      ["order-6", "frank", true],
    ],
    [["order-7", "grace"]],
  ],
);

console.log("log lines:");
for (const line of logLines) console.log(`  ${line}`);
await producer.endAsync();
await new Promise<void>((resolve) => broker.close(() => resolve()));
server.close();
