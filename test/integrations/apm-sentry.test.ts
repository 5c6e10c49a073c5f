/**
 * An app that loads Sentry (`@sentry/node` 11) before itself, as Sentry's
 * docs say (`--import` of a file that calls `Sentry.init`), with
 * contextvars' request integrations: node:http's `withContext`, Express's
 * `contextMiddleware` and Fastify's `contextPlugin`, 20 concurrent requests
 * each (fixtures/apm/sentry-app.ts). Sentry sends to a sink on 127.0.0.1.
 *
 * - Sentry as it comes, and with its OpenTelemetry set-up
 *   (`enableOpenTelemetrySetup: true`): each request keeps its vars after
 *   awaits, a timer, `gather` and `createTask`, and its own Sentry span and
 *   isolation scope; an error event, from `captureException` in the handler
 *   or from Sentry's Express or Fastify error handler, carries the request's
 *   scope tag, and `beforeSend` runs in the request's Context, so it can copy
 *   vars in.
 * - `ContextVarsContextManager` for the app's own OpenTelemetry, beside
 *   Sentry without its set-up: both hold. With Sentry's tracing off and its
 *   `openTelemetryIntegration()` (Sentry's way to leave tracing to the app's
 *   OpenTelemetry), an error event carries the app's active span, on
 *   node:http and Express; on Fastify, Sentry's own span is active and wins.
 * - `ContextVarsContextManager` in place of Sentry's context manager (when
 *   Sentry's set-up is on): Sentry forks its scopes in its own manager's
 *   `with`, so without it every request writes its tags into one shared
 *   isolation scope, and error events go out with another request's tags;
 *   Sentry's spans for Express's middleware and handlers lose their parent.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertEachRequestOwn, SERVERS, type Tally } from "./fixtures/apm/requests.ts";
import { runApp } from "./fixtures/apm/run.ts";
import { type EnvelopeItem, startSink } from "./fixtures/apm/sink.ts";

interface Result {
  http: Tally;
  express: Tally;
  fastify: Tally;
  expressFailed: number;
  fastifyFailed: number;
  otelWrong: number;
  workSpans: Record<string, { trace_id: string; span_id: string }>;
  flushed: boolean;
}

interface StreamedSpan {
  name: string;
  span_id: string;
  parent_span_id?: string;
  is_segment: boolean;
  attributes: Record<string, { value: unknown }>;
}

const REQUESTS = 20;
/** 20 `captureException` calls on each of the three servers, and 20 throws for each of Express's and Fastify's Sentry error handlers. */
const EVENTS = 5 * REQUESTS;
/** One http.server segment for each of those requests. */
const REQUEST_SEGMENTS = 5 * REQUESTS;

/** Error events: how many carry the failing request's user as Sentry's scope tag, and as the var beforeSend copied. */
function events(items: EnvelopeItem[]) {
  const counts = { events: 0, ownTag: 0, ownVar: 0 };
  for (const { type, payload } of items) {
    if (type !== "event") continue;
    counts.events++;
    const tags = payload.tags as Record<string, string>;
    const values = (payload.exception as { values: { value: string }[] }).values;
    const failed = values[0]?.value.replace("failed for ", "");
    if (tags.user === failed) counts.ownTag++;
    if (tags["cv.user"] === failed) counts.ownVar++;
  }
  return counts;
}

/** Of the events from requests that ran under an app's "work" span, by server: how many carry that span's trace context. */
function onWorkSpan(items: EnvelopeItem[], workSpans: Result["workSpans"]) {
  const counts: Record<string, { events: number; onSpan: number }> = {};
  for (const { type, payload } of items) {
    if (type !== "event") continue;
    const values = (payload.exception as { values: { value: string }[] }).values;
    const failed = values[0]?.value.replace("failed for ", "") ?? "";
    const work = workSpans[failed];
    if (!work) continue;
    const server = failed.split("-")[0] as string;
    const count = counts[server] ?? { events: 0, onSpan: 0 };
    counts[server] = count;
    count.events++;
    const trace = (payload.contexts as { trace?: { trace_id: string; span_id: string } }).trace;
    if (trace?.trace_id === work.trace_id && trace.span_id === work.span_id) count.onSpan++;
  }
  return counts;
}

function spans(items: EnvelopeItem[]): StreamedSpan[] {
  return items
    .filter((item) => item.type === "span")
    .flatMap((item) => (item.payload as { items: StreamedSpan[] }).items);
}

const op = (span: StreamedSpan) => span.attributes["sentry.op"]?.value;

/** One run of the app, with a sink of its own: the runs go side by side. */
async function run(env: Record<string, string>) {
  const sink = await startSink();
  try {
    const result = await runApp<Result>(
      ["--import", "./test/integrations/fixtures/apm/sentry-instrument.ts"],
      "sentry-app.ts",
      {
        SENTRY_SINK: sink.host,
        REQUESTS: String(REQUESTS),
        ...env,
      },
    );
    assert.equal(result.flushed, true);
    return { result, items: sink.sentry };
  } finally {
    await sink.close();
  }
}

/** Each request read its own on every server, and every request to Express's and Fastify's /fail failed. */
function assertEachOwnAndFailed(result: Result) {
  assert.equal(result.expressFailed, REQUESTS);
  assert.equal(result.fastifyFailed, REQUESTS);
  assertEachRequestOwn(result, REQUESTS);
}

/**
 * Sentry's tracing off and its openTelemetryIntegration(), the app's own OpenTelemetry under
 * `manager` (this package's, or OpenTelemetry's AsyncLocalStorageContextManager): the same either way.
 */
async function openTelemetryIntegrationCase(manager: string) {
  const { result, items } = await run({ SENTRY_TRACING: "off", CONTEXT_MANAGER: manager });
  for (const server of SERVERS) {
    assert.equal(result[server].varsWrong, 0, server);
    assert.equal(result[server].tagWrong, 0, server);
  }
  // With tracing off, no Sentry span is active on node:http and Express (all five points of
  // each request read none); on Fastify, Sentry's integration keeps one, the request's own.
  assert.equal(result.http.rootWrong, 5 * REQUESTS);
  assert.equal(result.express.rootWrong, 5 * REQUESTS);
  assert.equal(result.fastify.rootWrong, 0);
  assert.equal(result.fastify.rootShared, 0);
  assert.equal(result.otelWrong, 0);
  assert.deepEqual(events(items), { events: EVENTS, ownTag: EVENTS, ownVar: EVENTS });
  assert.deepEqual(onWorkSpan(items, result.workSpans), {
    http: { events: REQUESTS, onSpan: REQUESTS },
    express: { events: REQUESTS, onSpan: REQUESTS },
    // Sentry's Fastify integration keeps a span of its own active in the handler, even with
    // tracing off, and "an active Sentry span still takes precedence" (openTelemetryIntegration's
    // doc).
    fastify: { events: REQUESTS, onSpan: 0 },
  });
}

describe("beside Sentry", { concurrency: true }, () => {
  it("each request keeps its vars, its Sentry span and its isolation scope; beforeSend sees the request's vars", async () => {
    const { result, items } = await run({});
    assertEachOwnAndFailed(result);
    assert.deepEqual(events(items), { events: EVENTS, ownTag: EVENTS, ownVar: EVENTS });
    const segments = spans(items).filter((span) => span.is_segment);
    assert.equal(segments.filter((span) => op(span) === "http.server").length, REQUEST_SEGMENTS);
    assert.equal(segments.length, REQUEST_SEGMENTS);
  });

  it("with Sentry's OpenTelemetry set-up, the same, and the app's own spans are Sentry spans under the request's", async () => {
    const { result, items } = await run({ SENTRY_OTEL: "1" });
    assertEachOwnAndFailed(result);
    assert.equal(result.otelWrong, 0);
    assert.deepEqual(events(items), { events: EVENTS, ownTag: EVENTS, ownVar: EVENTS });
    const all = spans(items);
    const ids = new Set(all.map((span) => span.span_id));
    const work = all.filter((span) => span.name === "work");
    assert.equal(work.length, 3 * REQUESTS);
    assert.equal(
      work.filter((span) => !span.is_segment && ids.has(span.parent_span_id ?? "")).length,
      3 * REQUESTS,
    );
    assert.equal(all.filter((span) => span.is_segment).length, REQUEST_SEGMENTS);
    // An error event captured under the app's span carries that span's trace context.
    const own = { events: REQUESTS, onSpan: REQUESTS };
    assert.deepEqual(onWorkSpan(items, result.workSpans), {
      http: own,
      express: own,
      fastify: own,
    });
  });

  it("ContextVarsContextManager for the app's own OpenTelemetry beside Sentry without its set-up: both hold", async () => {
    const { result, items } = await run({ CONTEXT_MANAGER: "ours" });
    assertEachOwnAndFailed(result);
    assert.equal(result.otelWrong, 0);
    assert.deepEqual(events(items), { events: EVENTS, ownTag: EVENTS, ownVar: EVENTS });
    assert.equal(
      spans(items).filter((span) => span.is_segment && op(span) === "http.server").length,
      REQUEST_SEGMENTS,
    );
    // The two do not meet: an event carries Sentry's span, not the app's.
    const none = { events: REQUESTS, onSpan: 0 };
    assert.deepEqual(onWorkSpan(items, result.workSpans), {
      http: none,
      express: none,
      fastify: none,
    });
  });

  for (const manager of ["ours", "als"]) {
    const name =
      manager === "ours" ? "ContextVarsContextManager" : "AsyncLocalStorageContextManager";
    it(`Sentry's openTelemetryIntegration with ${name}: error events carry the app's span`, async () => {
      await openTelemetryIntegrationCase(manager);
    });
  }

  it("ContextVarsContextManager in place of Sentry's: requests share Sentry's scope, and Express's spans become segments", async () => {
    const { result, items } = await run({ SENTRY_OTEL: "1", CONTEXT_MANAGER: "ours" });
    for (const server of SERVERS) {
      // The vars and Sentry's active span still follow each request; Sentry's scope tags do not.
      assert.equal(result[server].varsWrong, 0, server);
      assert.equal(result[server].rootWrong, 0, server);
      assert.ok(result[server].tagWrong > 0, `${server}: ${result[server].tagWrong}`);
    }
    const counts = events(items);
    assert.equal(counts.events, EVENTS);
    assert.equal(counts.ownVar, EVENTS); // beforeSend still runs in the request's Context
    assert.ok(counts.ownTag < EVENTS, `${counts.ownTag} events had their own request's tag`);
    // Nor do the events carry the app's span they were captured under (Sentry's own manager: all of them).
    const none = { events: REQUESTS, onSpan: 0 };
    assert.deepEqual(onWorkSpan(items, result.workSpans), {
      http: none,
      express: none,
      fastify: none,
    });
    // Sentry's Express spans (contextMiddleware's and the handlers') lose the request's span as
    // their parent: each is sent as a segment of its own, beside the request's http.server segment.
    const segments = spans(items).filter((span) => span.is_segment);
    assert.equal(segments.filter((span) => op(span) === "http.server").length, REQUEST_SEGMENTS);
    const split = segments.filter((span) => op(span) !== "http.server");
    assert.ok(split.length > 0);
    assert.deepEqual(new Set(split.map(op)), new Set(["middleware", "handler"]));
  });
});
