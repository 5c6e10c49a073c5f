/**
 * Which runtime a test runs on, for the tests that pin what differs between
 * runtimes, and how to start a fixture script on the same runtime (and, on
 * Node, in the same AsyncContextFrame mode: the matrix passes that flag in
 * NODE_OPTIONS, which the child inherits).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export type RuntimeName = "node" | "bun" | "deno";

const versions = process.versions as NodeJS.ProcessVersions & { bun?: string };
const deno = (globalThis as { Deno?: { execPath(): string; version: { deno: string } } }).Deno;

/** The runtime running this test. */
export const runtime: RuntimeName =
  versions.bun !== undefined ? "bun" : deno !== undefined ? "deno" : "node";

/** Node's major version, or undefined on Bun and Deno. */
export const nodeMajor: number | undefined =
  runtime === "node" ? Number(process.versions.node.split(".")[0]) : undefined;

/**
 * Whether Node's AsyncLocalStorage runs on AsyncContextFrame: the async_hooks
 * backend keeps a `kResourceStore` symbol on each instance, the frame
 * backend does not. Undefined on Bun and Deno, which have their own.
 */
export const asyncContextFrame: boolean | undefined =
  runtime === "node" ? !("kResourceStore" in new AsyncLocalStorage()) : undefined;

/** `node24 (AsyncContextFrame on)`, `bun 1.4.5`: for messages. */
export const runtimeLabel: string =
  runtime === "node"
    ? `node${nodeMajor} (AsyncContextFrame ${asyncContextFrame ? "on" : "off"})`
    : runtime === "bun"
      ? `bun ${versions.bun}`
      : `deno ${deno?.version.deno}`;

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The command that runs a TypeScript file on this same runtime, with the
 * package's source condition: `[bin, ...args]`, the file last.
 */
export function typeScriptCommand(file: string): [string, ...string[]] {
  return runtime === "node"
    ? [process.execPath, "--conditions=contextvars-source", "--import", "tsx", file]
    : runtime === "bun"
      ? [process.execPath, "--conditions=contextvars-source", file]
      : [
          deno?.execPath() ?? "deno",
          "run",
          "--allow-all",
          "--no-check",
          "--no-lock",
          "--sloppy-imports",
          "--conditions=contextvars-source",
          file,
        ];
}

/** Runs a TypeScript fixture on this same runtime; resolves with its last stdout line parsed as JSON. */
export async function runFixture<T>(path: string): Promise<T> {
  const file = fileURLToPath(new URL(path, import.meta.url));
  const [bin, ...args] = typeScriptCommand(file);
  const { stdout } = await promisify(execFile)(bin, args, { cwd: root });
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "null") as T;
}
