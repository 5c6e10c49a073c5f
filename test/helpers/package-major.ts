/**
 * The major version of the package a bare specifier resolves to from the
 * tests, through any resolve hook in place (the matrix's peer lines,
 * test/runtimes/peers): what a test that differs by a peer's major reads.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The major version in the package.json of the package `name` resolves to here. */
export function majorOf(name: string): number {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (;;) {
    const path = join(dir, "package.json");
    try {
      const manifest = JSON.parse(readFileSync(path, "utf8")) as { name?: string; version: string };
      if (manifest.name === name) return Number(manifest.version.split(".")[0]);
    } catch {
      // No package.json at this level: keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json named ${name} above ${path}`);
    dir = parent;
  }
}
