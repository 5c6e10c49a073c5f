/**
 * Runs one bench file (bench/*.bench.ts) on whatever runtime started this
 * script, and prints its result as one JSON line after a marker.
 *
 * The bench harness hands its result to `process.send` when bench/run.ts
 * forks it; Node, Bun and Deno disagree on IPC between runtimes, so
 * bench-matrix.ts starts this script instead, and `process.send` prints.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

// Set by bench-matrix.ts, which finds the line by it.
const marker = process.env.CONTEXTVARS_BENCH_MARKER ?? "@@result@@";

const file = process.argv[2];
if (file === undefined) throw new Error("usage: bench-child.ts bench/<name>.bench.ts");

(process as { send?: (message: unknown) => boolean }).send = (message) => {
  process.stdout.write(`\n${marker}${JSON.stringify(message)}\n`);
  return true;
};
await import(pathToFileURL(resolve(file)).href);
