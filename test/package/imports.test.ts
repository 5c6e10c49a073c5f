/**
 * package.json "imports" (`#carrier`, `#worker-threads`): every target, under
 * every condition, is a file of the package. Node would take a builtin's
 * bare name there (`"worker_threads"`), but jest's resolver (30) does not:
 * the package failed to load under jest with "Cannot find module
 * 'worker_threads'" (docs/recipes.md, Testing an app), so the builtin is
 * reached through src/threads/node-worker-threads.ts instead. A `dist`
 * target is checked through the source file it is built from.
 *
 * Which carrier a server bundle gets: Next.js's Edge runtime (and Vercel's)
 * resolves with `edge-light` before `browser`, and has AsyncLocalStorage, so
 * `edge-light` picks the AsyncLocalStorage carrier; under `browser` alone a
 * Context lasts for the synchronous extent of a run only (docs/runtimes.md).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

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

/** What `v.run("kept", …)` reads after an await, in a Node started with these conditions. */
async function afterAnAwait(conditions: readonly string[]): Promise<string> {
  const program = `
    import { ContextVar } from "contextvars";
    const v = new ContextVar("v", { default: "lost" });
    console.log(await v.run("kept", async () => { await new Promise((r) => setTimeout(r, 1)); return v.get(); }));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--conditions=contextvars-source",
      ...conditions.map((condition) => `--conditions=${condition}`),
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      program,
    ],
    { cwd: fileURLToPath(root) },
  );
  return stdout.trim();
}

describe("#carrier under a server bundle's conditions", () => {
  it("edge-light (before browser, as Next.js's Edge runtime resolves): AsyncLocalStorage, a value survives an await", async () => {
    assert.equal(await afterAnAwait(["edge-light", "browser"]), "kept");
  });

  it("browser alone: the synchronous carrier, a value is gone after an await", async () => {
    assert.equal(await afterAnAwait(["browser"]), "lost");
  });
});
