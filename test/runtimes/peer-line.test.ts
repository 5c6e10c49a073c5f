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

it("the peer dependency resolves to the major line the matrix asked for", {
  skip: line === undefined ? "not run by the matrix (no CONTEXTVARS_PEER_LINE)" : false,
}, () => {
  if (line === "otel3") {
    assert.equal(majorOf("@opentelemetry/core"), 3);
    assert.equal(majorOf("@opentelemetry/context-async-hooks"), 3);
    assert.equal(majorOf("@opentelemetry/sdk-trace"), 3);
  } else if (line === "koa2") {
    assert.equal(majorOf("koa"), 2);
  } else if (line === "pino9") {
    assert.equal(majorOf("pino"), 9);
  } else if (line === "fastify-plugin5") {
    assert.equal(majorOf("fastify-plugin"), 5);
  } else if (line === "express4") {
    assert.equal(majorOf("express"), 4);
  } else if (line === "piscina4") {
    assert.equal(majorOf("piscina"), 4);
  } else {
    assert.fail(`unknown CONTEXTVARS_PEER_LINE "${line}"`);
  }
});
