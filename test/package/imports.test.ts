/**
 * package.json "imports" (`#carrier`, `#worker-threads`): every target, under
 * every condition, is a file of the package. Node would take a builtin's
 * bare name there (`"worker_threads"`), but jest's resolver (30) does not:
 * the package failed to load under jest with "Cannot find module
 * 'worker_threads'" (docs/recipes.md, Testing an app), so the builtin is
 * reached through src/threads/node-worker-threads.ts instead. A `dist`
 * target is checked through the source file it is built from.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

const root = new URL("../../", import.meta.url);
const manifest = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as {
  imports: Record<string, unknown>;
};

/** Every [condition path, target] under a specifier's conditions. */
function targets(value: unknown, path: string): [string, unknown][] {
  if (typeof value !== "object" || value === null) return [[path, value]];
  return Object.entries(value).flatMap(([condition, inner]) =>
    targets(inner, `${path}.${condition}`),
  );
}

describe("package.json imports", () => {
  for (const [specifier, conditions] of Object.entries(manifest.imports)) {
    it(`${specifier}: every target is a file of the package`, () => {
      const all = targets(conditions, specifier);
      assert.ok(all.length > 0);
      for (const [path, target] of all) {
        assert.equal(typeof target, "string", path);
        assert.match(target as string, /^\.\/(src|dist)\//, `${path} is ${String(target)}`);
        const source = (target as string)
          .replace(/^\.\/dist\//, "./src/")
          .replace(/\.js$/, ".ts")
          .replace(/\.d\.ts$/, ".ts");
        assert.ok(existsSync(new URL(source, root)), `${path}: ${source} exists`);
      }
    });
  }
});
