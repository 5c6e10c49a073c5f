/**
 * The matrix runs some files a second time against another major line of a
 * peer dependency (scripts/runtimes/test-matrix.ts, through
 * test/runtimes/peers/register.mjs): OpenTelemetry JS 3, Koa 2, pino 9,
 * fastify-plugin 5, Express 4, piscina 4. This file fails if the redirect did not take: the
 * target would then test the line the project develops with twice and say
 * nothing of the other.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { majorOf } from "../helpers/package-major.ts";

const line = process.env.CONTEXTVARS_PEER_LINE;

/** Per line: the major each redirected package must resolve to. */
const EXPECTED: Record<string, Record<string, number>> = {
  otel3: {
    "@opentelemetry/core": 3,
    "@opentelemetry/context-async-hooks": 3,
    "@opentelemetry/sdk-trace": 3,
  },
  koa2: { koa: 2 },
  pino9: { pino: 9 },
  "fastify-plugin5": { "fastify-plugin": 5 },
  express4: { express: 4 },
  piscina4: { piscina: 4 },
};

it("the peer dependency resolves to the major line the matrix asked for", {
  skip: line === undefined ? "not run by the matrix (no CONTEXTVARS_PEER_LINE)" : false,
}, () => {
  const expected = EXPECTED[line as string];
  if (expected === undefined) assert.fail(`unknown CONTEXTVARS_PEER_LINE "${line}"`);
  for (const [name, major] of Object.entries(expected)) assert.equal(majorOf(name), major, name);
});
