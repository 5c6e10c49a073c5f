/**
 * workerpool 10. With no help a job sees none of its caller's values, its
 * sets reach the next job on its worker, and then() callbacks on the
 * Promise of workerpool's own that exec returns run in the Context of the
 * caller that started the worker; wrapped in the few lines of
 * docs/threads.md ("Other pools"), contextPool gives each job a copy of its
 * caller's Context.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ContextPool, contextPool } from "contextvars/worker";
import workerpool from "workerpool";
import { JOB, type Job, requestId, wrappedPoolChecks } from "../helpers/pool-checks.ts";
import { fromWorkerpool, type WorkerPool } from "../helpers/pool-wrappers.ts";
import { fixture, workerExecArgv } from "../helpers/threads.ts";
import type { JobReply } from "./fixtures/job.ts";

describe("workerpool 10", () => {
  let wp: WorkerPool;
  let pool: ContextPool<Job, JobReply>;
  let skipping: ContextPool;
  const script = fixture("workerpool-worker.ts").pathname;
  const options = { workerType: "thread", workerThreadOpts: { execArgv: workerExecArgv } } as const;
  before(() => {
    wp = workerpool.pool(script, { ...options, maxWorkers: 2 });
    pool = contextPool<Job, JobReply>(fromWorkerpool(wp, JOB));
    skipping = contextPool(fromWorkerpool(wp, JOB), { onUncloneable: "skip" });
  });
  after(() => wp.terminate(true));

  it("with no help, a job sees none of its caller's values, its set reaches the next job, and then() callbacks run in the Context that started the worker", async () => {
    const one = workerpool.pool(script, { ...options, maxWorkers: 1 });
    try {
      const seen: { job: string; inThen: string; afterAwait: string }[] = [];
      for (const i of [0, 1]) {
        seen.push(
          await requestId.run(`r-${i}`, async () => {
            let inThen = "";
            const reply = (await one.exec("report", [{ i, delay: 0 }]).then((r: JobReply) => {
              inThen = requestId.get("<unset>");
              return r;
            })) as JobReply;
            return { job: reply.requestId, inThen, afterAwait: requestId.get() };
          }),
        );
      }
      assert.deepEqual(seen, [
        { job: "<unset>", inThen: "r-0", afterAwait: "r-0" },
        // The worker was started by r-0's exec: its replies are handled in r-0's Context.
        { job: "dirty after 0", inThen: "r-0", afterAwait: "r-1" },
      ]);
    } finally {
      await one.terminate(true);
    }
  });

  describe("through contextPool", () =>
    wrappedPoolChecks(
      () => pool,
      () => skipping,
    ));
});
