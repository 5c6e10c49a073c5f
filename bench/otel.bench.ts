/**
 * Observability: ContextVarsContextManager against OpenTelemetry's own
 * AsyncLocalStorageContextManager (the one the Node SDK installs), and
 * pino's `contextMixin` against a mixin that returns fixed values.
 *
 * The manager measure is `with(ctx, fn)` where fn reads `active()`: what a
 * tracer does for every `startActiveSpan`. Ours makes a copy of the current
 * Context with one var changed (a HAMT insert) where the baseline swaps one
 * ALS store, so it is measured from the root and from a Context with 10
 * vars set. The baseline keeps its own AsyncLocalStorage, as it does in an
 * application.
 *
 * `attach` + `dispose` (API 1.10) is a set and a reset here, an `enterWith`
 * and another there; each runs in a Context or store of its own.
 *
 * `startActiveSpan` is the same through a real tracer (sdk-trace-base, no
 * processor), the global manager switched before each measure: what the
 * manager's share of a span is once the span's own work is counted.
 *
 * The pino measures log one line to a destination that drops it, so the
 * difference between them is the mixin's own cost per line.
 *
 *   node --conditions=contextvars-source --import tsx --expose-gc bench/otel.bench.ts
 */

import { type ContextManager, context, createContextKey, ROOT_CONTEXT } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { Context, ContextVar } from "../src/index.ts";
import { requestId } from "../src/integrations/http.ts";
import { ContextVarsContextManager } from "../src/integrations/otel.ts";
import { contextMixin } from "../src/integrations/pino.ts";
import { formatNs, Suite, sink } from "./harness.ts";

const ours = new ContextVarsContextManager().enable();
const theirs = new AsyncLocalStorageContextManager().enable();
const span = ROOT_CONTEXT.setValue(createContextKey("span"), { id: 1 });

const readOurs = (): number => (ours.active() === span ? 1 : 0);
const readTheirs = (): number => (theirs.active() === span ? 1 : 0);

const vars = Array.from({ length: 10 }, (_, i) => new ContextVar<number>(`v${i}`));
const ten = new Context();
ten.run(() => {
  for (const [i, v] of vars.entries()) v.set(i);
});

const tracer = new BasicTracerProvider().getTracer("bench");
function install(manager: ContextManager): () => void {
  return () => {
    context.disable();
    context.setGlobalContextManager(manager);
  };
}

const user = new ContextVar<string>("user");
const tenant = new ContextVar<string>("tenant");
const drop = { write: (_line: string) => {} };
const withMixin = pino({ base: undefined, mixin: contextMixin({ requestId, user, tenant }) }, drop);
const fixed = { requestId: "req-00000001", user: "alice", tenant: "acme" };
const withStatic = pino({ base: undefined, mixin: () => ({ ...fixed }) }, drop);
const request = new Context();
request.run(() => {
  requestId.set(fixed.requestId);
  user.set(fixed.user);
  tenant.set(fixed.tenant);
});

const suite = new Suite("otel.bench.ts", "OpenTelemetry ContextManager and pino mixin");

suite
  .add(
    "ours: with(ctx, () => active())",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += ours.with(span, readOurs);
    },
    { batch: 10_000 },
  )
  .add(
    "ours: with + active, 10 vars set",
    (n) =>
      ten.run(() => {
        for (let i = 0; i < n; i++) sink.n += ours.with(span, readOurs);
      }),
    { batch: 10_000 },
  )
  .add(
    "ALS manager: with(ctx, () => active())",
    (n) => {
      for (let i = 0; i < n; i++) sink.n += theirs.with(span, readTheirs);
    },
    { batch: 10_000 },
  )
  .add(
    "ours: active()",
    (n) =>
      ours.with(span, () => {
        for (let i = 0; i < n; i++) sink.n += readOurs();
      }),
    { batch: 100_000 },
  )
  .add(
    "ALS manager: active()",
    (n) =>
      theirs.with(span, () => {
        for (let i = 0; i < n; i++) sink.n += readTheirs();
      }),
    { batch: 100_000 },
  )
  .add(
    "ours: attach + active + dispose",
    (n) =>
      new Context().run(() => {
        for (let i = 0; i < n; i++) {
          const token = ours.attach(span);
          sink.n += readOurs();
          token.dispose();
        }
      }),
    { batch: 10_000 },
  )
  .add(
    "ALS manager: attach + active + dispose",
    (n) =>
      theirs.with(ROOT_CONTEXT, () => {
        for (let i = 0; i < n; i++) {
          const token = theirs.attach(span);
          sink.n += readTheirs();
          token.dispose();
        }
      }),
    { batch: 10_000 },
  )
  .add(
    "ours: startActiveSpan + end",
    (n) => {
      for (let i = 0; i < n; i++) tracer.startActiveSpan("s", (s) => s.end());
    },
    { batch: 2_000, before: install(ours) },
  )
  .add(
    "ALS manager: startActiveSpan + end",
    (n) => {
      for (let i = 0; i < n; i++) tracer.startActiveSpan("s", (s) => s.end());
    },
    { batch: 2_000, before: install(theirs) },
  )
  .add(
    "pino line, contextMixin (3 vars)",
    (n) =>
      request.run(() => {
        for (let i = 0; i < n; i++) withMixin.info("hello");
      }),
    { batch: 2_000 },
  )
  .add(
    "pino line, static mixin (same 3 fields)",
    (n) =>
      request.run(() => {
        for (let i = 0; i < n; i++) withStatic.info("hello");
      }),
    { batch: 2_000 },
  )
  .compare(
    "with+active / ALS manager",
    "ours: with(ctx, () => active())",
    "ALS manager: with(ctx, () => active())",
    { max: 1.2 },
  )
  .compare(
    "with+active, 10 vars / ALS manager",
    "ours: with + active, 10 vars set",
    "ALS manager: with(ctx, () => active())",
    { max: 1.2 },
  )
  .compare("active() / ALS manager", "ours: active()", "ALS manager: active()")
  .compare(
    "attach+active+dispose / ALS manager",
    "ours: attach + active + dispose",
    "ALS manager: attach + active + dispose",
  )
  .compare(
    "startActiveSpan / ALS manager",
    "ours: startActiveSpan + end",
    "ALS manager: startActiveSpan + end",
    { max: 1.2 },
  )
  .compare(
    "pino contextMixin / static mixin",
    "pino line, contextMixin (3 vars)",
    "pino line, static mixin (same 3 fields)",
  );

const result = await suite.run();
const ns = new Map(result.measures.map((m) => [m.name, m.ns]));
const overhead =
  (ns.get("pino line, contextMixin (3 vars)") ?? 0) -
  (ns.get("pino line, static mixin (same 3 fields)") ?? 0);
console.log(`\npino: contextMixin costs ${formatNs(overhead)} per line over a static mixin`);
