/**
 * Malformed `traceparent` and `baggage` headers, end to end: a real server
 * on each Node integration whose seed calls `contextPropagation(…)
 * .extractInto(req.headers)` (contextvars/otel), sent from a raw socket.
 * Oversized, wrong encoding, invalid trace ids, prototype keys: none throws
 * into the request, none pollutes a prototype, a value the codec rejects
 * leaves its var unset, an invalid traceparent gives no trace, and every log
 * line stays one parseable JSON object without the hostile text.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { context, trace } from "@opentelemetry/api";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import {
  baggageField,
  ContextVarsContextManager,
  codecs,
  contextPropagation,
} from "contextvars/otel";
import { contextMixin } from "contextvars/pino";
import pino from "pino";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { sendRaw } from "../helpers/http.ts";

const user = new ContextVar<string>("baggage.user");
const attempt = new ContextVar<number>("baggage.attempt");

const VALID_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const VALID_PARENT = `00-${VALID_TRACE}-00f067aa0ba902b7-01`;

/** [label, header lines, expected { user, attempt, traceId }] */
type Case = readonly [
  string,
  readonly string[],
  { user: string; attempt: number; traceId: string },
];
const none = { user: "unset", attempt: -1, traceId: "none" };
const cases: readonly Case[] = [
  [
    "valid traceparent and baggage",
    [`traceparent: ${VALID_PARENT}`, "baggage: user=alice,attempt=2"],
    { user: "alice", attempt: 2, traceId: VALID_TRACE },
  ],
  ["traceparent: version ff", [`traceparent: ff-${VALID_TRACE}-00f067aa0ba902b7-01`], none],
  [
    "traceparent: all-zero trace id",
    [`traceparent: 00-${"0".repeat(32)}-00f067aa0ba902b7-01`],
    none,
  ],
  ["traceparent: upper-case hex", [`traceparent: ${VALID_PARENT.toUpperCase()}`], none],
  ["traceparent: 4,000 characters", [`traceparent: 00-${"a".repeat(4000)}`], none],
  ["traceparent: latin1 bytes", ["traceparent: 00-caf\xe9-00f067aa0ba902b7-01"], none],
  [
    "traceparent: sent twice",
    [`traceparent: ${VALID_PARENT}`, `traceparent: ${VALID_PARENT}`],
    none,
  ],
  ["baggage: 9,000 bytes", [`baggage: user=${"b".repeat(9000)}`], none],
  [
    "baggage: 200 members",
    [`baggage: ${Array.from({ length: 200 }, (_, i) => `k${i}=v`).join(",")},user=bob`],
    none,
  ],
  ["baggage: latin1 bytes", ["baggage: user=caf\xe9"], none],
  ["baggage: UTF-8 bytes", ["baggage: user=\xe2\x80\xae"], none],
  ["baggage: broken percent-encoding", ["baggage: user=%E0%A4%A,attempt=%ZZ"], none],
  [
    "baggage: __proto__ and constructor keys",
    ["baggage: __proto__=polluted,constructor=polluted,user=carol"],
    { ...none, user: "carol" },
  ],
  ["baggage: __proto__[admin]", ["baggage: __proto__[admin]=true,toString=x"], none],
  [
    "baggage: a value the codec rejects",
    ["baggage: attempt=1.5,user=dave"],
    { ...none, user: "dave" },
  ],
  ["baggage: an integer out of range", ["baggage: attempt=1e400"], none],
  [
    "baggage: properties and whitespace",
    ["baggage:  user = erin ; prop=1 , attempt = 3 "],
    { user: "erin", attempt: 3, traceId: "none" },
  ],
];

describe("malformed traceparent and baggage, end to end", () => {
  context.setGlobalContextManager(new ContextVarsContextManager());
  const carry = contextPropagation({
    user,
    attempt: baggageField(attempt, codecs.integer),
  });
  const logText: string[] = [];
  const logger = pino(
    { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user, attempt }) },
    { write: (line: string) => logText.push(line) },
  );
  const seen: Record<string, unknown>[] = [];

  for (const name of frameworkNames) {
    it(name, async () => {
      const app = await startApp(name, {
        seed: (req) => void carry.extractInto(req.headers),
        handle() {
          const traceId = trace.getSpanContext(context.active())?.traceId ?? "none";
          logger.info({ traceId }, "handled");
          seen.push({ user: user.get("unset"), attempt: attempt.get(-1), traceId });
          return {};
        },
      });
      try {
        for (const [label, lines, expected] of cases) {
          const before = logText.length;
          const reply = await sendRaw(app.base, ["GET / HTTP/1.1", "Host: 127.0.0.1", ...lines]);
          assert.equal(reply.status, 200, `${label}: ${reply.body}`);
          assert.deepEqual(seen.at(-1), expected, label);
          const logged = logText.slice(before);
          assert.equal(logged.length, 1, `${label}: one log line`);
          const line = JSON.parse(logged[0] ?? "") as Record<string, unknown>;
          assert.equal(line.requestId, reply.headers["x-request-id"]);
          // (not "caf": a UUID may contain it)
          for (const hostile of ["polluted", "\u00e9", "\u202e", "%E0", "b".repeat(20)]) {
            assert.ok(
              !(logged[0] ?? "").includes(hostile),
              `${label}: "${hostile}" reached the log`,
            );
          }
          assert.equal(
            Object.hasOwn(Object.prototype, "admin"),
            false,
            `${label}: prototype polluted`,
          );
          assert.equal(
            ({} as Record<string, unknown>).polluted,
            undefined,
            `${label}: prototype polluted`,
          );
        }
      } finally {
        await app.close();
      }
    });
  }
});
