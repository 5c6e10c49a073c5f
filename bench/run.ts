/**
 * `npm run bench`: runs every bench file in its own child process (so the
 * ALS state and JIT feedback of one never reach another; this process never
 * loads the library), then CPython's side, and prints one table of ratios,
 * each against its baseline measured in the same process, and our figures
 * next to CPython's. BENCHMARKS.md explains the method and the figures.
 *
 *   npm run bench                 all files, then CPython (about 2 minutes)
 *   npm run bench -- get set      only these files (no CPython unless `cpython` is named)
 *   npm run bench -- --help       the names; an unknown name is an error
 *   BENCH_ROUNDS=15 BENCH_TIME=500 npm run bench   more rounds, longer per measure
 */

import { fork, spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import {
  type ComparisonResult,
  type FileResult,
  formatNs,
  printTable,
  ROUNDS,
  TIME_MS,
  targetText,
  verdict,
} from "./report.ts";

const FILES = ["get", "run", "copy", "set", "tasks", "als-tax", "otel"] as const;

interface CPythonResult {
  python: string;
  implementation: string;
  ns: Record<string, number>;
}

// Our figure, CPython's key, and the goal: ours must be at most CPython / factor.
const SIDE_BY_SIDE: {
  label: string;
  file: string;
  measure: string;
  python: string;
  factor: number;
}[] = [
  {
    label: "ContextVar.get (10 vars set)",
    file: "get.bench.ts",
    measure: "v.get(), 10 vars set",
    python: "get",
    factor: 1,
  },
  {
    label: "ContextVar.set (10 vars set)",
    file: "set.bench.ts",
    measure: "v.set(), 10 vars set",
    python: "set",
    factor: 1,
  },
  {
    label: "copy_context()",
    file: "copy.bench.ts",
    measure: "copyContext(), 10 vars set",
    python: "copy_context",
    factor: 1,
  },
  {
    label: "Context.run(fn)",
    file: "run.bench.ts",
    measure: "ctx.run(fn)",
    python: "ctx.run",
    factor: 1,
  },
  {
    label: "gather, 10,000 tasks set+await+get, per task",
    file: "tasks.bench.ts",
    measure: "gather(10,000 set+await+get), per task",
    python: "gather set+get, per task",
    factor: 4,
  },
];

function runFile(name: string): Promise<FileResult> {
  const path = fileURLToPath(new URL(`./${name}.bench.ts`, import.meta.url));
  return new Promise((resolve, reject) => {
    let result: FileResult | undefined;
    const child = fork(path, [], {
      // The source condition: `#carrier` resolves to src/, so no build is needed.
      execArgv: ["--conditions=contextvars-source", "--import", "tsx", "--expose-gc"],
      stdio: ["inherit", "inherit", "inherit", "ipc"],
    });
    child.on("message", (message) => {
      result = message as FileResult;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0 && result !== undefined) resolve(result);
      else reject(new Error(`${name}.bench.ts exited with code ${code}`));
    });
  });
}

function runCPython(): CPythonResult | undefined {
  const script = fileURLToPath(new URL("./cpython/contextvars_bench.py", import.meta.url));
  console.log("\n## CPython (bench/cpython/contextvars_bench.py)\n");
  const run = spawnSync("python3", [script], { encoding: "utf8" });
  if (run.status !== 0) {
    console.log(`skipped: python3 failed (${run.error?.message ?? run.stderr.trim()})`);
    return undefined;
  }
  const result = JSON.parse(run.stdout) as CPythonResult;
  console.log(`${result.implementation} ${result.python}: ${JSON.stringify(result.ns)}`);
  return result;
}

const USAGE = `usage: npm run bench [-- name...]
  names: ${FILES.join(", ")}, cpython; none: every file, then CPython
  BENCH_ROUNDS=15 BENCH_TIME=500 npm run bench    more rounds, longer per measure
bench/threads.bench.ts is not one of them: it runs the build, on its own
(docs/threads-benchmarks.md).`;

const asked = process.argv.slice(2);
if (asked.includes("--help") || asked.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
// A name that matches no file would otherwise run nothing and print an empty table.
const unknown = asked.filter((a) => a !== "cpython" && !(FILES as readonly string[]).includes(a));
if (unknown.length > 0) {
  console.error(`bench: no bench named ${unknown.map((a) => `"${a}"`).join(", ")}\n${USAGE}`);
  process.exit(2);
}
const files = asked.length === 0 ? FILES : FILES.filter((f) => asked.includes(f));
const withPython = asked.length === 0 || asked.includes("cpython");

console.log(`# contextvars benchmarks`);
console.log(
  `Node ${process.version} (V8 ${process.versions.v8}), ${process.platform}/${process.arch}, ` +
    `${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${new Date().toISOString()}`,
);
const output = (command: string, args: string[]): string =>
  spawnSync(command, args, { encoding: "utf8" }).stdout?.trim() ?? "";
const commit = output("git", ["rev-parse", "--short", "HEAD"]) || "unknown";
const dirty =
  output("git", ["status", "--porcelain", "src"]) === "" ? "" : " (src/ has uncommitted changes)";
const pythonVersion = output("python3", ["--version"]).replace("Python ", "") || "missing";
console.log(`commit ${commit}${dirty}, python3 ${pythonVersion}`);
console.log(`rounds: ${ROUNDS}, time per measure per round: ${TIME_MS} ms`);

const started = Date.now();
const results: FileResult[] = [];
for (const f of files) results.push(await runFile(f));
const python = withPython ? runCPython() : undefined;

console.log("\n# Summary: ratio = ours / baseline, both measured in the same process and rounds\n");
const all: ComparisonResult[] = results.flatMap((r) => r.comparisons);
printTable(
  ["file", "ratio", "ours / baseline", "target", ""],
  results.flatMap((r) =>
    r.comparisons.map((c) => [
      r.file,
      c.name,
      `${c.ratio.toFixed(2)}x`,
      targetText(c),
      verdict(c.met),
    ]),
  ),
);
const withTarget = all.filter((c) => c.met !== undefined);
console.log(
  `\n${withTarget.filter((c) => c.met).length} of ${withTarget.length} targets met` +
    (withTarget.some((c) => !c.met)
      ? `; missed: ${withTarget
          .filter((c) => !c.met)
          .map((c) => c.name)
          .join("; ")}`
      : ""),
);

if (python !== undefined) {
  console.log(
    `\n# Side by side with CPython ${python.python} (ns per operation, separate processes)\n`,
  );
  const byFile = new Map(results.map((r) => [r.file, r]));
  printTable(
    ["operation", "ours", "CPython", "CPython / ours", "goal", ""],
    SIDE_BY_SIDE.flatMap((s) => {
      const ours = byFile.get(s.file)?.measures.find((m) => m.name === s.measure)?.ns;
      const theirs = python.ns[s.python];
      if (ours === undefined || theirs === undefined) return [];
      const speedup = theirs / ours;
      return [
        [
          s.label,
          formatNs(ours),
          formatNs(theirs),
          `${speedup.toFixed(2)}x`,
          s.factor === 1 ? "faster (> 1x)" : `≥ ${s.factor}x`,
          (s.factor === 1 ? speedup > 1 : speedup >= s.factor) ? "met" : "MISSED",
        ],
      ];
    }),
  );
}

console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s)`);
