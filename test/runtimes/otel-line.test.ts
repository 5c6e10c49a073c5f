/**
 * The matrix runs the OpenTelemetry files a second time against
 * OpenTelemetry JS 3 (scripts/runtimes/test-matrix.ts, through
 * test/runtimes/otel3/register.mjs). This file fails if the redirect did not
 * take: the target would then test the 2.x line the project develops with
 * twice and say nothing of 3.x.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const expected = process.env.CONTEXTVARS_EXPECT_OTEL;

/** The version in the package.json of the package `specifier` resolves to here. */
function versionOf(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (;;) {
    const path = join(dir, "package.json");
    try {
      const manifest = JSON.parse(readFileSync(path, "utf8")) as { name?: string; version: string };
      if (manifest.name === name) return manifest.version;
    } catch {
      // No package.json at this level: keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json named ${name} above ${path}`);
    dir = parent;
  }
}

it("@opentelemetry/core and the tests' SDK are the OpenTelemetry JS line the matrix asked for", {
  skip: expected === undefined ? "not run by the matrix (no CONTEXTVARS_EXPECT_OTEL)" : false,
}, () => {
  assert.equal(versionOf("@opentelemetry/core").split(".")[0], expected);
  assert.equal(versionOf("@opentelemetry/context-async-hooks").split(".")[0], expected);
  const sdk = expected === "2" ? "@opentelemetry/sdk-trace-base" : "@opentelemetry/sdk-trace";
  assert.equal(versionOf(sdk).split(".")[0], expected);
});
