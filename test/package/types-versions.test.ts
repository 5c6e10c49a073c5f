/**
 * TypeScript's `moduleResolution: "node"` (node10) reads no "exports": it
 * finds a subpath's declarations only through "typesVersions". Each code
 * subpath of "exports" has its entry there, pointing at the same file as its
 * "types" condition, and nothing else does; `attw --pack .` in .ci/run checks
 * that each one resolves in the packed package.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const manifest = JSON.parse(
  readFileSync(new URL("../../package.json", import.meta.url), "utf8"),
) as {
  exports: Record<string, string | { types?: string }>;
  types: string;
  typesVersions: Record<string, Record<string, string[]>>;
};

describe("typesVersions", () => {
  it("maps every subpath of exports to the declarations its types condition names", () => {
    const expected: Record<string, string[]> = {};
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      if (subpath === "." || typeof target === "string") continue;
      assert.ok(target.types, `exports["${subpath}"] has a types condition`);
      expected[subpath.slice("./".length)] = [target.types];
    }
    assert.deepEqual(manifest.typesVersions, { "*": expected });
  });

  it("leaves the root to types, which names the root's declarations", () => {
    const root = manifest.exports["."];
    assert.ok(typeof root === "object");
    assert.equal(manifest.types, root.types);
  });
});
