// Offloading CPU work to a worker pool without losing the request's context.
//
// Three "requests" run at once, each with its own request id. Each hands a
// prime count to a piscina pool; the job logs from its worker thread with the
// id of the request that asked for it, though it never receives the id as an
// argument: the caller's Context travels with the job. One more call goes
// through toThread (asyncio.to_thread).
//
// This one file is both the program and the jobs (the pool loads it again in
// each worker thread, where isMainThread is false).
//
// Run from the package directory:
//   node --conditions=contextvars-source --import tsx \
//     --import ./test/helpers/tsx-in-workers.mjs examples/worker-pool.ts   (npm run example:pool)
// (the second --import lets worker threads load TypeScript on Node 20; once
// compiled to JavaScript, `node worker-pool.js` is enough.)
import { isMainThread, threadId } from "node:worker_threads";
import { ContextVar, gather } from "contextvars";
import { type ContextPool, contextPool, toThread, useThreadPool } from "contextvars/worker";
import { Piscina } from "piscina";

// Created at the top level, so the worker threads have a var of the same name.
const requestId = new ContextVar<string>("requestId", { default: "-" });

function log(message: string): void {
  console.log(`[${requestId.get()}] (thread ${threadId}) ${message}`);
}

/** The CPU work: how many primes are below n (deliberately naive). */
export function countPrimes(n: number): number {
  log(`counting primes below ${n}`);
  let count = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  log(`found ${count}`);
  return count;
}

/** The pool's default job: one object in, one result out. */
export default function job({ n }: { n: number }): number {
  return countPrimes(n);
}

type Pool = ContextPool<{ n: number }, number>;

async function handle(pool: Pool, id: string, n: number): Promise<void> {
  requestId.set(id);
  log(`request in; offloading n=${n}`);
  const count = await pool.run({ n });
  log(`request out: ${count} primes`);
}

if (isMainThread) {
  // Jobs run the default export of this file; each job gets its caller's Context.
  const pool: Pool = contextPool(new Piscina({ filename: import.meta.url, maxThreads: 2 }));
  // Each handler runs in its own copy of the Context, as concurrent requests would.
  await gather(
    () => handle(pool, "req-1", 200_000),
    () => handle(pool, "req-2", 50_000),
    () => handle(pool, "req-3", 120_000),
  );
  useThreadPool(pool);
  await requestId.run("req-4", async () => {
    const count = await toThread<number>(import.meta.url, "countPrimes", 10_000);
    log(`toThread gave ${count}`);
  });
  await pool.close();
}
