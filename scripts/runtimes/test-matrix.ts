/**
 * `npm run test:matrix`: the project's own test files, unchanged, on every
 * runtime the package supports.
 *
 *   npm run test:matrix                     every target
 *   npm run test:matrix -- ci               what .ci/run runs (see CI_TARGETS)
 *   npm run test:matrix -- node24 bun       every target of these runtimes
 *   npm run test:matrix -- node22/frame-on  one target
 *   npm run test:matrix -- --list           the targets and the files each runs
 *   options: --jobs N (files run at once, default 1), --verbose (a line per file)
 *
 * Targets. Node 20 is the machine's node; Node 22, 24 and 26, Bun and Deno
 * come from this folder's package.json (runtimes.ts). Node 22, 24 and 26 run
 * twice, with AsyncContextFrame on and off; the flag goes in NODE_OPTIONS so
 * that child processes the tests start run in the same mode, and
 * test/runtimes/frame.test.ts fails if the mode is not the one asked for.
 * The `/async-context` targets preload test/runtimes/install-async-context-double.ts,
 * so the package carries its Contexts on `AsyncContext.Variable` (the test
 * double), and run the core, tasks, carrier and async-context files again.
 * The peer-line targets preload test/runtimes/peers/register.mjs, so one
 * peer dependency resolves to its other major line (installed with the
 * runtimes), and run that peer's files again, since the package's peer
 * ranges take both lines: `node24/otel3`, every `@opentelemetry/*` import on
 * OpenTelemetry JS 3 (it needs Node 22.15+; the project develops on 2.x);
 * `node20/koa2`, `koa` on Koa 2 (the project develops on Koa 3); `node20/pino9`,
 * `pino` on pino 9 (the project develops on pino 10); `node20/fastify-plugin5`,
 * `fastify-plugin` 5 (the project develops on 6); `node20/express4`, `express`
 * on Express 4 (the project develops on Express 5); `node20/piscina4`,
 * `piscina` 4 (the project develops on piscina 5).
 *
 * How. Each test file runs in its own process (as `node --test` runs them):
 * the file itself on Node (`--import tsx`), `bun test` on Bun, `deno test`
 * on Deno, each with the `contextvars-source` condition and a JUnit report,
 * which junit.ts reads into one shape. Files that do not apply to a runtime
 * are listed, with the reason, in skips.ts and nowhere else.
 *
 * Fails when a test fails, a file exits non-zero, a skip matches no file,
 * or the two AsyncContextFrame modes of one Node version differ in any test.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { type Outcome, parseJUnit } from "./junit.ts";
import {
  ensureRuntimes,
  projectRoot,
  type Runtime,
  type RuntimeId,
  runtimes,
  versionOf,
} from "./runtimes.ts";
import {
  covers,
  DIFFERENCES,
  differencesOf,
  differsByFrame,
  missingPaths,
  SKIPS,
  skipOf,
} from "./skips.ts";

interface Target {
  readonly name: string;
  readonly runtime: RuntimeId;
  /** AsyncContextFrame, for the Node versions that have the switch. */
  readonly frame?: "on" | "off";
  /** The flag that gives `frame` (undefined: the version's default). */
  readonly frameFlag?: string;
  /** Preload the AsyncContext double and run ASYNC_CONTEXT_FILES only. */
  readonly asyncContext?: boolean;
  /** Resolve one peer to its other major line (peers/hooks.mjs) and run PEER_LINE_FILES only. */
  readonly peerLine?: PeerLine;
}

const TARGETS: readonly Target[] = [
  { name: "node20", runtime: "node20" },
  // Node 22: off by default; `--experimental-async-context-frame` turns it on.
  { name: "node22/frame-off", runtime: "node22", frame: "off" },
  {
    name: "node22/frame-on",
    runtime: "node22",
    frame: "on",
    frameFlag: "--experimental-async-context-frame",
  },
  // Node 24 and 26: on by default; `--no-async-context-frame` turns it off.
  { name: "node24/frame-on", runtime: "node24", frame: "on" },
  {
    name: "node24/frame-off",
    runtime: "node24",
    frame: "off",
    frameFlag: "--no-async-context-frame",
  },
  { name: "node26/frame-on", runtime: "node26", frame: "on" },
  {
    name: "node26/frame-off",
    runtime: "node26",
    frame: "off",
    frameFlag: "--no-async-context-frame",
  },
  { name: "bun", runtime: "bun" },
  { name: "deno", runtime: "deno" },
  { name: "node20/async-context", runtime: "node20", asyncContext: true },
  { name: "node24/async-context", runtime: "node24", frame: "on", asyncContext: true },
  { name: "bun/async-context", runtime: "bun", asyncContext: true },
  { name: "deno/async-context", runtime: "deno", asyncContext: true },
  { name: "node24/otel3", runtime: "node24", frame: "on", peerLine: "otel3" },
  { name: "node20/koa2", runtime: "node20", peerLine: "koa2" },
  { name: "node20/pino9", runtime: "node20", peerLine: "pino9" },
  { name: "node20/fastify-plugin5", runtime: "node20", peerLine: "fastify-plugin5" },
  { name: "node20/express4", runtime: "node20", peerLine: "express4" },
  { name: "node20/piscina4", runtime: "node20", peerLine: "piscina4" },
];

/**
 * What .ci/run runs (`npm run test:matrix -- ci`): Node 24 with
 * AsyncContextFrame on (less CI_LEFT_TO_FULL_MATRIX), Bun, Deno, the AsyncContext carrier on Node 20 (and on Bun and Deno:
 * "bun" and "deno" name a runtime, so select all of its targets), and the
 * peer lines (OpenTelemetry JS 3 on Node 24; Koa 2, pino 9, fastify-plugin 5,
 * Express 4 and piscina 4 on Node 20). Node 20 itself is `npm test`. Node 22 and 26 are left to the
 * full matrix for time (see docs/runtimes.md for the measured times).
 */
// Node 24 with AsyncContextFrame off runs the async_hooks AsyncLocalStorage
// that Node 20's npm test covers; it stays in the full matrix, with the
// comparison of the two modes, to keep .ci/run well inside its time.
const CI_TARGETS = [
  "node24/frame-on",
  "bun",
  "deno",
  "node20/async-context",
  ...TARGETS.filter((t) => t.peerLine !== undefined).map((t) => t.name),
];

/**
 * Files the ci run leaves out of its Node 24 target, for time: each builds
 * or starts a third-party toolchain in child processes (Vitest and jest,
 * Vite for SvelteKit and Astro, Next.js's Turbopack, nitropack), about 75 s
 * of that target's file time, and all are skipped on Bun and Deno. npm test
 * runs them on Node 20 in the same .ci/run, and the full matrix on Node 22,
 * 24 and 26 in both modes.
 */
const CI_LEFT_TO_FULL_MATRIX: ReadonlySet<string> = new Set([
  "test/integrations/test-runners.test.ts",
  "test/integrations/meta-frameworks.test.ts",
  "test/integrations/nextjs.test.ts",
  "test/integrations/nitro.test.ts",
]);

const ASYNC_CONTEXT_FILES = ["test/core/", "test/tasks/", "test/carrier/", "test/async-context/"];
const DOUBLE = "./test/runtimes/install-async-context-double.ts";
type PeerLine = "otel3" | "koa2" | "pino9" | "fastify-plugin5" | "express4" | "piscina4";
const PEER_LINE_FILES: Record<PeerLine, readonly string[]> = {
  otel3: ["test/integrations/otel", "test/integrations/propagation.test.ts"],
  koa2: ["test/integrations/koa.test.ts", "test/integrations/http2.test.ts"],
  pino9: ["test/integrations/pino.test.ts"],
  "fastify-plugin5": ["test/integrations/fastify.test.ts", "test/integrations/http2.test.ts"],
  express4: ["test/integrations/express.test.ts"],
  piscina4: [
    "test/threads/pool.test.ts",
    "test/threads/transfer.test.ts",
    "test/threads/requests.test.ts",
  ],
};
/** Files a line's prefixes take in that import what its install lacks. */
const PEER_LINE_EXCLUDED: Partial<Record<PeerLine, readonly string[]>> = {
  // @opentelemetry/sdk-node is a devDependency on the 2.x line only (0.223).
  otel3: ["test/integrations/otel-node-sdk.test.ts"],
};
const PEER_LINE_CHECK = "test/runtimes/peer-line.test.ts";
const PEER_LINE = "./test/runtimes/peers/register.mjs";

/** Whether `target` runs `file` at all (before skips.ts). */
function appliesTo(target: Target, file: string): boolean {
  if (target.asyncContext === true) return ASYNC_CONTEXT_FILES.some((p) => file.startsWith(p));
  if (target.peerLine !== undefined) {
    return (
      file === PEER_LINE_CHECK ||
      (PEER_LINE_FILES[target.peerLine].some((p) => file.startsWith(p)) &&
        !(PEER_LINE_EXCLUDED[target.peerLine] ?? []).includes(file))
    );
  }
  return true;
}

const FILE_TIMEOUT_MS = 300_000;

/** A test's outcome; `differs`: failed as skips.ts DIFFERENCES says it must on this runtime. */
interface Result {
  readonly name: string;
  readonly outcome: Outcome | "differs";
  readonly message?: string;
}

interface FileRun {
  readonly file: string;
  readonly results: Result[];
  readonly ms: number;
  /** Why the file failed as a whole (exit status, crash), beside its tests. */
  readonly crash?: string;
  /** DIFFERENCES entries for this file that no longer hold. */
  readonly stale: string[];
}

interface TargetRun {
  readonly target: Target;
  readonly version: string;
  readonly files: FileRun[];
  readonly skipped: { file: string; reason: string }[];
  readonly ms: number;
}

function allTestFiles(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(projectRoot, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (path !== "test/long") walk(path);
      } else if (entry.name.endsWith(".test.ts")) found.push(path);
    }
  };
  walk("test");
  return found.sort();
}

function command(
  runtime: Runtime,
  target: Target,
  file: string,
  junit: string,
): { bin: string; args: string[] } {
  const preload = target.asyncContext === true;
  switch (runtime.kind) {
    case "node":
      return {
        bin: runtime.bin,
        args: [
          "--conditions=contextvars-source",
          "--import",
          "tsx",
          ...(preload ? ["--import", DOUBLE] : []),
          ...(target.peerLine !== undefined ? ["--import", PEER_LINE] : []),
          "--test-reporter=junit",
          `--test-reporter-destination=${junit}`,
          "--test-reporter=dot",
          "--test-reporter-destination=stdout",
          file,
        ],
      };
    case "bun":
      return {
        bin: runtime.bin,
        args: [
          "test",
          "--conditions=contextvars-source",
          // Bun's default is 5 s per test; Node's runner has none.
          "--timeout=120000",
          "--reporter=junit",
          `--reporter-outfile=${junit}`,
          ...(preload ? ["--preload", DOUBLE] : []),
          `./${file}`,
        ],
      };
    case "deno":
      return {
        bin: runtime.bin,
        args: [
          "test",
          "--allow-all",
          "--no-check",
          "--no-lock",
          "--sloppy-imports",
          "--conditions=contextvars-source",
          "--reporter=dot",
          `--junit-path=${junit}`,
          ...(preload ? ["--preload", DOUBLE] : []),
          file,
        ],
      };
  }
}

function runFile(
  runtime: Runtime,
  target: Target,
  file: string,
  logDir: string,
  installed: string,
): Promise<FileRun> {
  const slug = `${target.name}/${file}`.replace(/[^\w.-]+/g, "_");
  const junit = join(logDir, `${slug}.xml`);
  const logPath = join(logDir, `${slug}.log`);
  const { bin, args } = command(runtime, target, file, junit);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTEXTVARS_MATRIX_TARGET: target.name,
    CONTEXTVARS_EXPECT_CARRIER: target.asyncContext === true ? "async-context" : "platform",
    NO_COLOR: "1",
  };
  delete env.NODE_OPTIONS;
  delete env.FORCE_COLOR;
  if (target.frame !== undefined) env.CONTEXTVARS_EXPECT_FRAME = target.frame;
  if (target.frameFlag !== undefined) env.NODE_OPTIONS = target.frameFlag;
  if (target.peerLine !== undefined) {
    env.CONTEXTVARS_PEER_LINE = target.peerLine;
    env.CONTEXTVARS_PEER_MODULES = join(installed, "node_modules");
  }
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    const output: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => output.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => output.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), FILE_TIMEOUT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const log = Buffer.concat(output).toString("utf8");
      writeFileSync(logPath, `$ ${bin} ${args.join(" ")}\n\n${log}`);
      const ms = Date.now() - started;
      const results = existsSync(junit)
        ? parseJUnit(readFileSync(junit, "utf8"), runtime.kind)
        : [];
      let crash: string | undefined;
      if (signal !== null) crash = `killed by ${signal} after ${ms} ms (see ${logPath})`;
      else if (code !== 0 && !results.some((r) => r.outcome === "fail")) {
        crash = `exited with code ${code} and no failing test (see ${logPath})`;
      } else if (results.length === 0) crash = `reported no test (see ${logPath})`;
      const { classified, stale } = applyDifferences(target, file, results);
      const run = { file, results: classified, ms, stale };
      resolve(crash === undefined ? run : { ...run, crash });
    });
  });
}

/** Marks the failures skips.ts expects on this runtime; reports the entries that no longer hold. */
function applyDifferences(
  target: Target,
  file: string,
  results: readonly Result[],
): { classified: Result[]; stale: string[] } {
  const differences = differencesOf(
    { runtime: target.runtime, frame: target.frame === "on" },
    file,
  );
  const stale: string[] = [];
  for (const d of differences) {
    const covered = results.filter((r) => covers(d, r.name));
    if (covered.length === 0) stale.push(`"${String(d.test)}" matches no test in ${file}`);
    if (d.mayPass) continue;
    for (const r of covered.filter((x) => x.outcome === "pass")) {
      stale.push(`"${r.name}" in ${file} now passes: remove it from skips.ts DIFFERENCES`);
    }
  }
  const classified = results.map((r) =>
    r.outcome === "fail" && differences.some((d) => covers(d, r.name))
      ? { ...r, outcome: "differs" as const }
      : r,
  );
  return { classified, stale };
}

async function runTarget(
  runtime: Runtime,
  target: Target,
  files: readonly string[],
  jobs: number,
  logDir: string,
  installed: string,
  verbose: boolean,
  leftOut: ReadonlySet<string> = new Set(),
): Promise<TargetRun> {
  const started = Date.now();
  const version = versionOf(runtime);
  const skipped: { file: string; reason: string }[] = [];
  const toRun: string[] = [];
  for (const file of files) {
    if (!appliesTo(target, file) || leftOut.has(file)) continue;
    const skip = skipOf(target.runtime, file);
    if (skip === undefined) toRun.push(file);
    else skipped.push({ file, reason: skip.reason });
  }
  console.log(`\n## ${target.name} (${version}): ${toRun.length} files, ${skipped.length} skipped`);
  const runs: FileRun[] = new Array(toRun.length);
  let next = 0;
  const worker = async () => {
    while (next < toRun.length) {
      const index = next++;
      const run = await runFile(runtime, target, toRun[index] as string, logDir, installed);
      runs[index] = run;
      const counts = count([run]);
      if (verbose || counts.failed > 0) {
        const mark = counts.failed > 0 ? "FAIL" : "ok  ";
        const differs = counts.differs > 0 ? `, ${counts.differs} differ as expected` : "";
        console.log(
          `${mark} ${run.file}  ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped${differs}  ${(run.ms / 1000).toFixed(1)} s`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  const result: TargetRun = { target, version, files: runs, skipped, ms: Date.now() - started };
  const c = count(runs);
  console.log(
    `${target.name}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped, ${c.differs} differ as expected,` +
      ` in ${toRun.length} files (${skipped.length} files skipped) in ${(result.ms / 1000).toFixed(1)} s`,
  );
  return result;
}

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
  differs: number;
}

/** Test counts; a crashed file and each stale DIFFERENCES entry count as one failure. */
function count(runs: readonly FileRun[]): Counts {
  const c: Counts = { passed: 0, failed: 0, skipped: 0, differs: 0 };
  for (const run of runs) {
    for (const r of run.results) {
      if (r.outcome === "pass") c.passed++;
      else if (r.outcome === "fail") c.failed++;
      else if (r.outcome === "skip") c.skipped++;
      else c.differs++;
    }
    if (run.crash !== undefined) c.failed++;
    c.failed += run.stale.length;
  }
  return c;
}

interface Keyed {
  readonly file: string;
  readonly name: string;
  readonly outcome: string;
}

/** `file :: test name #n` → the test, n telling apart tests that share a name. */
function outcomes(run: TargetRun): Map<string, Keyed> {
  const map = new Map<string, Keyed>();
  for (const f of run.files) {
    const seen = new Map<string, number>();
    for (const r of f.results) {
      const n = (seen.get(r.name) ?? 0) + 1;
      seen.set(r.name, n);
      map.set(`${f.file} :: ${r.name}${n > 1 ? ` #${n}` : ""}`, {
        file: f.file,
        name: r.name,
        outcome: r.outcome,
      });
    }
    if (f.crash !== undefined) {
      map.set(`${f.file} :: (the file as a whole)`, { file: f.file, name: "", outcome: "crash" });
    }
  }
  return map;
}

/**
 * Every test whose outcome differs between the two AsyncContextFrame modes,
 * or that only one ran, except the differences skips.ts lists for the mode.
 */
function frameDifferences(on: TargetRun, off: TargetRun): string[] {
  const left = outcomes(on);
  const right = outcomes(off);
  const lines: string[] = [];
  for (const key of new Set([...left.keys(), ...right.keys()])) {
    const x = left.get(key);
    const y = right.get(key);
    const test = x ?? y;
    if (x?.outcome === y?.outcome || test === undefined) continue;
    if (differsByFrame(test.file, test.name)) continue;
    lines.push(`${key}: frame on ${x?.outcome ?? "absent"}, frame off ${y?.outcome ?? "absent"}`);
  }
  return lines;
}

/**
 * Tests the reference run ran that `run` did not, in the files both ran: a
 * runtime whose test runner drops tests must not pass by running fewer.
 */
function missingTests(reference: TargetRun, run: TargetRun): string[] {
  const ran = new Set(run.files.map((f) => f.file));
  const theirs = outcomes(run);
  const lines: string[] = [];
  for (const [key, test] of outcomes(reference)) {
    if (test.name === "" || !ran.has(test.file) || theirs.has(key)) continue;
    lines.push(`${key}: ran on ${reference.target.name}, not on ${run.target.name}`);
  }
  return lines;
}

function select(asked: readonly string[]): Target[] {
  if (asked.length === 0) return [...TARGETS];
  const chosen = new Set<Target>();
  for (const word of asked) {
    const names = word === "ci" ? CI_TARGETS : word === "all" ? TARGETS.map((t) => t.name) : [word];
    for (const name of names) {
      const found = TARGETS.filter((t) => t.name === name || t.runtime === name);
      if (found.length === 0) {
        throw new Error(
          `unknown target "${name}"; known: ci, all, ${TARGETS.map((t) => t.name).join(", ")}`,
        );
      }
      for (const t of found) chosen.add(t);
    }
  }
  return TARGETS.filter((t) => chosen.has(t));
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let jobs = 1;
  let verbose = false;
  let list = false;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--jobs") jobs = Number(argv[++i]);
    else if (arg.startsWith("--jobs=")) jobs = Number(arg.slice(7));
    else if (arg === "--verbose") verbose = true;
    else if (arg === "--list") list = true;
    else words.push(arg);
  }
  const targets = select(words);
  const files = allTestFiles();

  console.log("# Test matrix");
  const stale = missingPaths(files);
  for (const path of stale) console.log(`FAIL skips.ts: "${path}" matches no test file`);
  console.log("\nSkipped files (scripts/runtimes/skips.ts SKIPS):");
  for (const s of SKIPS) console.log(`  ${s.path} on ${s.runtimes.join(", ")}: ${s.reason}`);
  console.log("\nTests that must fail where the runtime differs (skips.ts DIFFERENCES):");
  for (const d of DIFFERENCES) {
    const pinned = d.pinnedBy === undefined ? "" : ` [pinned by ${d.pinnedBy}]`;
    const where = `${d.runtimes.join(", ")}${d.frame === "on" ? " with AsyncContextFrame on" : ""}`;
    console.log(`  ${d.path} > ${String(d.test)} on ${where}: ${d.reason}${pinned}`);
  }

  if (list) {
    for (const t of targets) {
      const mine = files.filter((f) => appliesTo(t, f));
      const skipped = mine.filter((f) => skipOf(t.runtime, f) !== undefined);
      console.log(`${t.name}: ${mine.length - skipped.length} files, ${skipped.length} skipped`);
    }
    return 0;
  }

  const installed = ensureRuntimes();
  const all = runtimes(installed);
  const logDir = join(tmpdir(), `contextvars-matrix-${process.pid}`);
  mkdirSync(logDir, { recursive: true });
  const started = Date.now();
  const runs: TargetRun[] = [];
  // In a ci run, its Node target leaves CI_LEFT_TO_FULL_MATRIX out.
  const ci = words.includes("ci");
  if (ci) {
    console.log("\nLeft out of the ci run's Node targets (run by npm test and the full matrix):");
    for (const file of CI_LEFT_TO_FULL_MATRIX) console.log(`  ${file}`);
  }
  for (const target of targets) {
    const leftOut =
      ci && CI_TARGETS.includes(target.name) && target.runtime.startsWith("node")
        ? CI_LEFT_TO_FULL_MATRIX
        : new Set<string>();
    runs.push(
      await runTarget(
        all[target.runtime],
        target,
        files,
        jobs,
        logDir,
        installed,
        verbose,
        leftOut,
      ),
    );
  }

  console.log("\n# Summary\n");
  console.log(
    "| target | version | passed | failed | skipped tests | differ as expected | skipped files | seconds |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of runs) {
    const c = count(r.files);
    console.log(
      `| ${r.target.name} | ${r.version} | ${c.passed} | ${c.failed} | ${c.skipped} | ${c.differs} | ${r.skipped.length} | ${(r.ms / 1000).toFixed(0)} |`,
    );
  }

  let failed = stale.length;
  for (const r of runs) {
    for (const f of r.files) {
      if (f.crash !== undefined) console.log(`\nFAIL ${r.target.name} ${f.file}: ${f.crash}`);
      for (const line of f.stale) console.log(`\nFAIL ${r.target.name} skips.ts: ${line}`);
      for (const t of f.results.filter((x) => x.outcome === "fail")) {
        const message = (t.message ?? "").split("\n").slice(0, 6).join("\n    ");
        console.log(`\nFAIL ${r.target.name} ${f.file} > ${t.name}\n    ${message}`);
      }
    }
    failed += count(r.files).failed;
  }

  console.log("\n# AsyncContextFrame on and off\n");
  const byName = new Map(runs.map((r) => [r.target.name, r]));
  let compared = 0;
  for (const version of ["node22", "node24", "node26"]) {
    const on = byName.get(`${version}/frame-on`);
    const off = byName.get(`${version}/frame-off`);
    if (on === undefined || off === undefined) continue;
    compared++;
    const diff = frameDifferences(on, off);
    if (diff.length === 0) {
      const listed = [...outcomes(on).values()].filter((t) =>
        differsByFrame(t.file, t.name),
      ).length;
      console.log(
        `${version}: identical (${outcomes(on).size} tests, on and off${listed > 0 ? `; ${listed} listed in skips.ts differ as pinned` : ""})`,
      );
    } else {
      failed += diff.length;
      console.log(`FAIL ${version}: ${diff.length} tests differ between frame on and off`);
      for (const line of diff) console.log(`  ${line}`);
    }
  }
  if (compared === 0) console.log("no Node version ran in both modes");

  console.log("\n# Every test ran\n");
  const reference = runs.find(
    (r) => r.target.asyncContext !== true && all[r.target.runtime].kind === "node",
  );
  if (reference === undefined) console.log("no Node target to compare with");
  else {
    for (const r of runs.filter((x) => x !== reference)) {
      const missing = missingTests(reference, r);
      if (missing.length === 0) {
        console.log(`${r.target.name}: every test ${reference.target.name} ran in the same files`);
        continue;
      }
      failed += missing.length;
      console.log(`FAIL ${r.target.name}: ${missing.length} tests did not run`);
      for (const line of missing) console.log(`  ${line}`);
    }
  }

  const total = runs.reduce(
    (acc, r) => {
      const c = count(r.files);
      return { passed: acc.passed + c.passed, skipped: acc.skipped + c.skipped };
    },
    { passed: 0, skipped: 0 },
  );
  console.log(`\nlogs: ${relative(projectRoot, logDir) || logDir}`);
  console.log(`time: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(`matrix: ${total.passed} passed, ${failed} failed, ${total.skipped} skipped`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
