/**
 * The package as tsc compiles it, for the benchmark servers (bench/http,
 * bench/ws, bench/socket-io): they load it as users load dist/, not through
 * tsx (see bench/http/apps.ts for why). Returns the build's directory.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export function buildPackage(): string {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const build = join(root, "node_modules", ".cache", "contextvars-http-bench");
  try {
    execFileSync(
      process.execPath,
      [
        join(root, "node_modules", "typescript", "bin", "tsc"),
        ...["-p", join(root, "tsconfig.build.json"), "--outDir", build],
        ...["--declaration", "false", "--declarationMap", "false", "--sourceMap", "false"],
      ],
      { stdio: "ignore" },
    );
  } catch {
    // tsc exits non-zero on a type error anywhere in src, but still emits.
  }
  // The package's `imports` (#carrier, …) point into dist/: give the build its own
  // package.json with the same map pointing into the build.
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    imports?: unknown;
  };
  const intoBuild = (target: unknown): unknown =>
    typeof target === "string"
      ? target.replace(/^\.\/dist\//, "./")
      : typeof target === "object" && target !== null
        ? Object.fromEntries(
            Object.entries(target)
              .filter(([condition]) => condition !== "contextvars-source")
              .map(([condition, value]) => [condition, intoBuild(value)]),
          )
        : target;
  writeFileSync(
    join(build, "package.json"),
    JSON.stringify({ type: "module", imports: intoBuild(manifest.imports ?? {}) }, null, 2),
  );
  return build;
}
