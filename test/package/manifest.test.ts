/**
 * package.json's fields have the types npm and the tools that read a
 * dependency's manifest expect. Astro 5 reads every dependency's `keywords`
 * with `keywords.includes(...)`: when a rewrite of the file had turned the
 * array into an object (`{"0": "contextvars", …}`), an Astro app that listed
 * the package failed to build (`pkgJson.keywords?.includes is not a
 * function`), and neither npm nor publint complained.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const manifest = JSON.parse(
  readFileSync(new URL("../../package.json", import.meta.url), "utf8"),
) as Record<string, unknown>;

const isStringArray = (value: unknown): boolean =>
  Array.isArray(value) && value.every((item) => typeof item === "string");

const isStringRecord = (value: unknown): boolean =>
  typeof value === "object" &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every((item) => typeof item === "string");

describe("package.json", () => {
  it("keywords and files are arrays of strings", () => {
    assert.ok(isStringArray(manifest.keywords), "keywords");
    assert.ok(isStringArray(manifest.files), "files");
  });

  it("dependency maps, engines and scripts map names to strings", () => {
    for (const field of ["peerDependencies", "devDependencies", "engines", "scripts"] as const) {
      assert.ok(isStringRecord(manifest[field]), field);
    }
  });

  it("no array anywhere in it was written as an object of indexes", () => {
    const found: string[] = [];
    const walk = (value: unknown, path: string): void => {
      if (typeof value !== "object" || value === null) return;
      const keys = Object.keys(value);
      if (!Array.isArray(value) && keys.length > 0 && keys.every((key, i) => key === String(i))) {
        found.push(path);
      }
      for (const key of keys) walk((value as Record<string, unknown>)[key], `${path}.${key}`);
    };
    walk(manifest, "package.json");
    assert.deepEqual(found, []);
  });
});
