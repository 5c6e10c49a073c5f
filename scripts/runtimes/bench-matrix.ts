/**
 * `npm run bench:matrix`: the core benches of `npm run bench` (bench/*.bench.ts)
 * on every runtime, each against that runtime's own raw AsyncLocalStorage
 * (the harness's baselines use the carrier's ALS instance).
 *
 *   npm run bench:matrix                          every runtime, the core files
 *   npm run bench:matrix -- bun deno              these runtimes only
 *   npm run bench:matrix -- --files get,run       these files only
 *   BENCH_ROUNDS=5 BENCH_TIME=100 npm run bench:matrix   shorter
 *
 * Each file runs in its own process on each runtime (bench-child.ts), as
 * bench/run.ts runs them; the figures are ratios taken in one process, so
 * they compare across runtimes better than the absolute times do. Prints a
 * markdown table per file (comparisons, then our measures in ns) ready for
 * docs/runtimes-benchmarks.md.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import type { FileResult } from "../../bench/harness.ts";
import { ROUNDS, TIME_MS } from "../../bench/report.ts";
import {
  ensureRuntimes,
  projectRoot,
  type Runtime,
  type RuntimeId,
  runtimes,
  versionOf,
} from "./runtimes.ts";

interface BenchTarget {
  readonly name: string;
  readonly runtime: RuntimeId;
  readonly nodeOptions?: string;
}

const TARGETS: readonly BenchTarget[] = [
  { name: "node20", runtime: "node20" },
  { name: "node22", runtime: "node22" },
  { name: "node24", runtime: "node24" },
  { name: "node24/frame-off", runtime: "node24", nodeOptions: "--no-async-context-frame" },
  { name: "node26", runtime: "node26" },
  { name: "bun", runtime: "bun" },
  { name: "deno", runtime: "deno" },
];

/** The core operations: what BENCHMARKS.md sets beside CPython. */
const CORE_FILES = ["get", "set", "copy", "run", "tasks"];

const CHILD = "scripts/runtimes/bench-child.ts";
/** What bench-child.ts prints before its result's JSON. */
const RESULT_MARKER = "@@contextvars-bench-result@@";

function argvFor(runtime: Runtime, file: string): string[] {
  const bench = `bench/${file}.bench.ts`;
  const bin = runtime.bin;
  switch (runtime.kind) {
    case "node":
      return [
        bin,
        "--conditions=contextvars-source",
        "--import",
        "tsx",
        "--expose-gc",
        CHILD,
        bench,
      ];
    case "bun":
      return [bin, "--conditions=contextvars-source", CHILD, bench];
    case "deno":
      return [
        bin,
        "run",
        "--allow-all",
        "--no-check",
        "--no-lock",
        "--sloppy-imports",
        "--conditions=contextvars-source",
        "--v8-flags=--expose-gc",
        CHILD,
        bench,
      ];
  }
}

function runBench(
  target: BenchTarget,
  runtime: Runtime,
  file: string,
): Promise<FileResult | string> {
  const [command, ...args] = argvFor(runtime, file) as [string, ...string[]];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: "1",
    CONTEXTVARS_BENCH_MARKER: RESULT_MARKER,
  };
  delete env.NODE_OPTIONS;
  if (target.nodeOptions !== undefined) env.NODE_OPTIONS = target.nodeOptions;
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: projectRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err += chunk.toString("utf8");
    });
    child.on("close", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(RESULT_MARKER));
      if (code === 0 && line !== undefined) {
        resolve(JSON.parse(line.slice(RESULT_MARKER.length)) as FileResult);
      } else {
        resolve(`exit ${code}: ${(err || out).trim().split("\n").slice(-3).join(" / ")}`);
      }
    });
  });
}

function formatNs(ns: number): string {
  if (ns < 1_000) return `${ns.toFixed(1)} ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(2)} µs`;
  return `${(ns / 1_000_000).toFixed(2)} ms`;
}

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let files = CORE_FILES;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--files") files = (argv[++i] ?? "").split(",");
    else if (arg.startsWith("--files=")) files = arg.slice(8).split(",");
    else words.push(arg);
  }
  // An unknown word selected nothing (a header and no tables); an unknown file failed on every runtime.
  const unknownWords = words.filter((w) => !TARGETS.some((t) => w === t.name || w === t.runtime));
  const unknownFiles = files.filter(
    (f) => !existsSync(join(projectRoot, "bench", `${f}.bench.ts`)),
  );
  const problems = [
    ...(unknownWords.length === 0
      ? []
      : [`no runtime ${unknownWords.join(", ")} (${TARGETS.map((t) => t.name).join(", ")})`]),
    ...(unknownFiles.length === 0
      ? []
      : [`no bench/<file>.bench.ts for ${unknownFiles.join(", ")}`]),
  ];
  if (problems.length > 0) throw new Error(problems.join("; "));
  const targets =
    words.length === 0
      ? TARGETS
      : TARGETS.filter((t) => words.includes(t.name) || words.includes(t.runtime));
  const all = runtimes(ensureRuntimes());
  const versions = new Map(targets.map((t) => [t.name, versionOf(all[t.runtime])]));

  console.log("# contextvars benchmarks on every runtime");
  console.log(
    `${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${new Date().toISOString()}, ` +
      `rounds ${ROUNDS}, ${TIME_MS} ms per measure per round`,
  );
  console.log(targets.map((t) => `${t.name} ${versions.get(t.name)}`).join(", "));

  const results = new Map<string, Map<string, FileResult | string>>();
  const started = Date.now();
  for (const file of files) {
    const byTarget = new Map<string, FileResult | string>();
    results.set(file, byTarget);
    for (const target of targets) {
      const t0 = Date.now();
      const result = await runBench(target, all[target.runtime], file);
      byTarget.set(target.name, result);
      const status = typeof result === "string" ? `FAILED ${result}` : "ok";
      console.error(
        `${file} on ${target.name}: ${status} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
      );
    }
  }

  for (const [file, byTarget] of results) {
    const ok = [...byTarget.values()].find((r): r is FileResult => typeof r !== "string");
    console.log(`\n## ${ok?.title ?? file} (bench/${file}.bench.ts)\n`);
    if (ok === undefined) {
      console.log("failed on every runtime");
      continue;
    }
    const cell = (name: string, pick: (r: FileResult) => string | undefined) => {
      const r = byTarget.get(name);
      return typeof r === "string" || r === undefined ? "failed" : (pick(r) ?? "—");
    };
    console.log("ours / raw ALS baseline, median of per-round ratios:\n");
    console.log(
      table(
        ["ratio", ...targets.map((t) => t.name)],
        ok.comparisons.map((c) => [
          c.name,
          ...targets.map((t) =>
            cell(t.name, (r) => {
              const x = r.comparisons.find((y) => y.name === c.name)?.ratio;
              return x === undefined ? undefined : `${x.toFixed(2)}x`;
            }),
          ),
        ]),
      ),
    );
    console.log("\nper operation:\n");
    console.log(
      table(
        ["measure", ...targets.map((t) => t.name)],
        ok.measures.map((m) => [
          m.name,
          ...targets.map((t) =>
            cell(t.name, (r) => {
              const x = r.measures.find((y) => y.name === m.name)?.ns;
              return x === undefined ? undefined : formatNs(x);
            }),
          ),
        ]),
      ),
    );
  }
  console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

await main();
