/**
 * Threads: what carrying a Context to another thread costs, each against
 * plain Node or plain piscina doing the same work in the same rounds.
 *
 * - Starting a worker: `new Worker(...)` from contextvars/worker with 10
 *   vars set, against node:worker_threads' Worker, both running the same
 *   script (it imports the package and reads 10 vars) until its first
 *   message, then terminated. Ours also checks and clones the 10 values.
 * - A pool job: `contextPool(piscina).run(task)` with 10 vars set, against
 *   `piscina.run(task)` on the same one-thread pool: one job at a time
 *   (latency), and 100 jobs at once (throughput, per job). Ours also walks
 *   and clones the 10 values and builds the job's Context in the worker.
 * - The sending side alone, in this thread (steadier than anything that
 *   waits for another thread): collecting and cloning 10 values with a task,
 *   against cloning the task alone.
 *
 * Worker threads cannot load TypeScript here (tsx does not register itself
 * in worker threads on Node 20), so this file runs the *built* package:
 * `npm run build` first, or point BENCH_DIST at a build directory. A check
 * before measuring fails if the build does not carry values across.
 */

import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker as NodeWorker } from "node:worker_threads";
import { Piscina } from "piscina";
import { Suite, sink } from "./harness.ts";

type Main = typeof import("../src/index.ts");
type Threads = typeof import("../src/threads/index.ts");
type Transfer = typeof import("../src/threads/transfer.ts");

const distDir = process.env.BENCH_DIST ?? fileURLToPath(new URL("../dist", import.meta.url));
const dist = pathToFileURL(`${distDir}/index.js`).href;
if (!existsSync(`${distDir}/threads/index.js`)) {
  throw new Error(`bench/threads.bench.ts runs the built package: run \`npm run build\` first`);
}
const { Context, ContextVar } = (await import(dist)) as Main;
const { Worker, contextPool } = (await import(
  pathToFileURL(`${distDir}/threads/index.js`).href
)) as Threads;

// Internal: the sending side alone, measured in this thread, free of thread wake-up noise.
const { collectValues } = (await import(
  pathToFileURL(`${distDir}/threads/transfer.js`).href
)) as Transfer;

const vars = Array.from({ length: 10 }, (_, i) => new ContextVar<string>(`v${i}`));
const ten = new Context();
ten.run(() => {
  for (const v of vars) v.set(`value of ${v.name}, a short string`);
});

// Imports the package, reads the 10 vars, posts how many have a value.
const script = `
  const { parentPort } = require("node:worker_threads");
  import(${JSON.stringify(dist)}).then(({ ContextVar }) => {
    const vars = Array.from({ length: 10 }, (_, i) => new ContextVar("v" + i));
    parentPort.postMessage(vars.filter((v) => v.get(undefined) !== undefined).length);
  });`;

async function startAndWait(worker: NodeWorker): Promise<number> {
  const seen = await new Promise<number>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  await worker.terminate();
  return seen;
}

const piscina = new Piscina({
  filename: fileURLToPath(new URL("./threads-job.mjs", import.meta.url)),
  workerData: { dist },
  // One thread: the machine may have two cores, and the main thread needs one.
  minThreads: 1,
  maxThreads: 1,
});
const pool = contextPool<number, number>(piscina);
const hundred = Array.from({ length: 100 }, (_, i) => i);

// Both sides must do what they claim before anything is timed.
const inherited = await ten.run(() => startAndWait(new Worker(script, { eval: true })));
const plain = await ten.run(() => startAndWait(new NodeWorker(script, { eval: true })));
const pooled = await ten.run(() => pool.run(0));
if (inherited !== 10 || plain !== 0 || pooled !== 10) {
  throw new Error(
    `the build in ${distDir} does not carry values (worker saw ${inherited}, pool job ${pooled}): run \`npm run build\``,
  );
}

const suite = new Suite("threads.bench.ts", "Threads: Worker start and pool jobs with a Context");

suite
  .addAsync(
    "Worker start, 10 vars set",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await startAndWait(new Worker(script, { eval: true }));
      }),
    { batch: 1 },
  )
  .addAsync(
    "node:worker_threads Worker start",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await startAndWait(new NodeWorker(script, { eval: true }));
      }),
    { batch: 1 },
  )
  .addAsync(
    "contextPool run, 10 vars set",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await pool.run(i);
      }),
    { batch: 200 },
  )
  .addAsync(
    "piscina run",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await piscina.run(i);
      }),
    { batch: 200 },
  )
  .addAsync(
    "contextPool, 100 jobs at once, per job",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await Promise.all(hundred.map((j) => pool.run(j)));
      }),
    { batch: 2, units: 100 },
  )
  .addAsync(
    "piscina, 100 jobs at once, per job",
    (n) =>
      ten.run(async () => {
        for (let i = 0; i < n; i++) await Promise.all(hundred.map((j) => piscina.run(j)));
      }),
    { batch: 2, units: 100 },
  )
  .add(
    "send side: collect 10 values + clone them with a task",
    (n) => {
      for (let i = 0; i < n; i++) {
        const values = collectValues(ten, { passThrough: true, exact: false });
        sink.o = structuredClone({ task: i, values });
      }
    },
    { batch: 2_000 },
  )
  .add(
    "clone a task alone",
    (n) => {
      for (let i = 0; i < n; i++) sink.o = structuredClone({ task: i });
    },
    { batch: 2_000 },
  )
  .compare(
    "Worker start: ours / node's",
    "Worker start, 10 vars set",
    "node:worker_threads Worker start",
  )
  .compare("pool job: contextPool / piscina", "contextPool run, 10 vars set", "piscina run")
  .compare(
    "100 pool jobs: contextPool / piscina",
    "contextPool, 100 jobs at once, per job",
    "piscina, 100 jobs at once, per job",
  )
  .compare(
    "send side: with 10 values / task alone",
    "send side: collect 10 values + clone them with a task",
    "clone a task alone",
  );

await suite.run();
await piscina.destroy();
