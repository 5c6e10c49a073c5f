/**
 * An app that loads Datadog's dd-trace before itself, as its docs say for
 * ES modules (`--import dd-trace/initialize.mjs`), with log injection on
 * (DD_LOGS_INJECTION=true) and contextvars' request integrations:
 * node:http's `withContext`, Express's `contextMiddleware` and Fastify's
 * `contextPlugin`, 20 concurrent requests each
 * (fixtures/apm/datadog-app.ts). dd-trace sends its traces to a sink on
 * 127.0.0.1 (DD_TRACE_AGENT_URL); its telemetry, remote configuration,
 * runtime metrics and profiler are off.
 *
 * Each request keeps its vars after awaits, a timer, `gather` and
 * `createTask`, and dd-trace's active span stays the request's (its
 * AsyncLocalStorage and the package's each carry their own value). Every
 * pino line carries both the mixin's `requestId` and `user` and dd-trace's
 * `dd.trace_id` and `dd.span_id`, each of the request the line was logged in.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertEachRequestOwn, type Tally } from "./fixtures/apm/requests.ts";
import { runApp } from "./fixtures/apm/run.ts";
import { startSink } from "./fixtures/apm/sink.ts";

interface Line {
  msg: string;
  requestId?: string;
  user?: string;
  expectTrace: string;
  dd?: { trace_id: string; span_id: string };
}

interface Result {
  http: Tally;
  express: Tally;
  fastify: Tally;
  work: { spans: number; inRequestTrace: number; ddActive: number; ddInRequestTrace: number };
  lines: Line[];
}

const REQUESTS = 20;

/** One run of the app, with a sink of its own: the runs go side by side. */
async function run(env: Record<string, string> = {}) {
  const sink = await startSink();
  try {
    const result = await runApp<Result>(["--import", "dd-trace/initialize.mjs"], "datadog-app.ts", {
      DD_TRACE_AGENT_URL: `http://${sink.host}`,
      DD_LOGS_INJECTION: "true",
      DD_SERVICE: "apm-test",
      DD_TRACE_STARTUP_LOGS: "false",
      DD_INSTRUMENTATION_TELEMETRY_ENABLED: "false",
      DD_REMOTE_CONFIGURATION_ENABLED: "false",
      DD_RUNTIME_METRICS_ENABLED: "false",
      DD_PROFILING_ENABLED: "false",
      DD_CRASHTRACKING_ENABLED: "false",
      REQUESTS: String(REQUESTS),
      ...env,
    });
    return { result, spans: sink.datadog };
  } finally {
    await sink.close();
  }
}

describe("beside dd-trace", { concurrency: true }, () => {
  it("each request keeps its vars and its dd-trace span; each pino line has the request's vars and trace", async () => {
    const { result, spans } = await run();
    assertEachRequestOwn(result, REQUESTS);

    // Two lines a request: "start" and "end", each with the trace id the request's start saw.
    assert.equal(result.lines.length, 2 * 3 * REQUESTS);
    const perUser = new Map<string, { requestIds: Set<string>; traces: Set<string> }>();
    for (const line of result.lines) {
      assert.ok(line.user && line.requestId && line.dd, JSON.stringify(line));
      // dd.trace_id is the 128-bit id in hex; toTraceId() gives its low 64 bits in decimal.
      assert.equal(
        BigInt(`0x${line.dd.trace_id.slice(-16)}`).toString(),
        line.expectTrace,
        JSON.stringify(line),
      );
      const seen = perUser.get(line.user) ?? { requestIds: new Set(), traces: new Set() };
      seen.requestIds.add(line.requestId);
      seen.traces.add(line.dd.trace_id);
      perUser.set(line.user, seen);
    }
    assert.equal(perUser.size, 3 * REQUESTS);
    for (const [user, seen] of perUser) {
      assert.equal(seen.requestIds.size, 1, user);
      assert.equal(seen.traces.size, 1, user);
    }
    const traces = new Set([...perUser.values()].flatMap((seen) => [...seen.traces]));
    assert.equal(traces.size, 3 * REQUESTS);

    // The tag each request set on its active span reached the sink once per request.
    const tagged = spans.filter((span) => span.meta["app.user"] !== undefined);
    assert.equal(tagged.length, 3 * REQUESTS);
    assert.equal(new Set(tagged.map((span) => span.meta["app.user"])).size, 3 * REQUESTS);
  });

  it("dd-trace's TracerProvider: the app's OpenTelemetry spans join the request's trace", async () => {
    const { result } = await run({ DD_OTEL: "1" });
    assertEachRequestOwn(result, REQUESTS);
    assert.deepEqual(result.work, {
      spans: 60,
      inRequestTrace: 60,
      ddActive: 60,
      ddInRequestTrace: 60,
    });
  });

  it("ContextVarsContextManager in place of dd-trace's: the app's spans start traces of their own", async () => {
    const { result } = await run({ DD_OTEL: "1", CONTEXT_MANAGER: "ours" });
    // The vars and dd-trace's own scope still follow each request (inside each span, dd-trace's
    // active span is still the request's); the OpenTelemetry spans do not meet it.
    assertEachRequestOwn(result, REQUESTS);
    assert.deepEqual(result.work, {
      spans: 60,
      inRequestTrace: 0,
      ddActive: 0,
      ddInRequestTrace: 60,
    });
  });
});
