/**
 * The matrix runs some files a second time against another major line of a
 * peer dependency (scripts/runtimes/test-matrix.ts, through
 * test/runtimes/peers/register.mjs): OpenTelemetry JS 3, Koa 2, pino 9,
 * fastify-plugin 5. This file fails if the redirect did not take: the
 * target would then test the line the project develops with twice and say
 * nothing of the other.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const line = process.env.CONTEXTVARS_PEER_LINE;

/** The major version in the package.json of the package `name` resolves to here. */
function majorOf(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (;;) {
    const path = join(dir, "package.json");
    try {
      const manifest = JSON.parse(readFileSync(path, "utf8")) as { name?: string; version: string };
      if (manifest.name === name) return manifest.version.split(".")[0] as string;
    } catch {
      // No package.json at this level: keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json named ${name} above ${path}`);
    dir = parent;
  }
}

it("the peer dependency resolves to the major line the matrix asked for", {
  skip: line === undefined ? "not run by the matrix (no CONTEXTVARS_PEER_LINE)" : false,
}, () => {
  if (line === "otel3") {
    assert.equal(majorOf("@opentelemetry/core"), "3");
    assert.equal(majorOf("@opentelemetry/context-async-hooks"), "3");
    assert.equal(majorOf("@opentelemetry/sdk-trace"), "3");
  } else if (line === "koa2") {
    assert.equal(majorOf("koa"), "2");
  } else if (line === "pino9") {
    assert.equal(majorOf("pino"), "9");
  } else if (line === "fastify-plugin5") {
    assert.equal(majorOf("fastify-plugin"), "5");
  } else {
    assert.fail(`unknown CONTEXTVARS_PEER_LINE "${line}"`);
  }
});
