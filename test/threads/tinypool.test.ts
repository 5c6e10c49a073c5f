/**
 * tinypool 2 (Vitest's pool, a fork of piscina). With no help a job sees
 * none of its caller's values and its sets reach the next job on its
 * thread; wrapped in the few lines of docs/threads.md ("Other pools"),
 * contextPool gives each job a copy of its caller's Context.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ContextPool, contextPool } from "contextvars/worker";
import Tinypool from "tinypool";
import { JOB, type Job, requestId, wrappedPoolChecks } from "../helpers/pool-checks.ts";
import { fromTinypool, jobTinypool } from "../helpers/pool-wrappers.ts";
import { workerExecArgv } from "../helpers/threads.ts";
import type { JobReply } from "./fixtures/job.ts";

describe("tinypool 2", () => {
  let tinypool: Tinypool;
  let pool: ContextPool<Job, JobReply>;
  let skipping: ContextPool;
  before(() => {
    tinypool = jobTinypool();
    pool = contextPool<Job, JobReply>(fromTinypool(tinypool));
    skipping = contextPool(fromTinypool(tinypool), { onUncloneable: "skip" });
  });
  after(() => tinypool.destroy());

  it("with no help, a job sees none of its caller's values, and its set reaches the next job on its thread", async () => {
    const one = new Tinypool({ filename: JOB, execArgv: workerExecArgv, maxThreads: 1 });
    try {
      const replies: JobReply[] = [];
      for (const i of [0, 1]) {
        replies.push(await requestId.run(`r-${i}`, () => one.run({ i, delay: 0 })));
      }
      assert.deepEqual(
        replies.map((reply) => reply.requestId),
        ["<unset>", "dirty after 0"],
      );
    } finally {
      await one.destroy();
    }
  });

  describe("through contextPool", () =>
    wrappedPoolChecks(
      () => pool,
      () => skipping,
    ));

  it("transferList moves a buffer; Tinypool.move's wrapper arrives as a plain object", async () => {
    const buffer = new ArrayBuffer(8);
    assert.equal(
      await pool.run(buffer as never, { name: "byteLength", transferList: [buffer] }),
      8,
    );
    assert.equal(buffer.byteLength, 0);
    // contextPool knows Piscina.move's mark, not Tinypool's: the wrapper is cloned, its symbols dropped.
    const moved = Tinypool.move(new ArrayBuffer(8));
    assert.equal(await pool.run(moved as never, { name: "byteLength" }), undefined);
    assert.deepEqual(await pool.run(moved as never, { name: "keysOf" }), []);
  });
});
