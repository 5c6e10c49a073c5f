/**
 * Pools of child processes: tinypool 2 with `runtime: "child_process"` and
 * workerpool 10 with `workerType: "process"`, wrapped as docs/threads.md
 * ("Other pools") says. A child process runs its jobs in its main thread,
 * and each job sees its own caller's values there as in a worker thread,
 * whether the job's vars are created before the pool's entry file loads
 * (the workerpool worker script imports job.ts first; a tinypool child with
 * job.ts preloaded by --import) or after it. The values cross as the pool's
 * IPC channel serializes them: JSON unless it is told "advanced". In a
 * process with no IPC channel only vars created after the pool's job runner
 * loads are found (the rule docs/threads.md states).
 */
import assert from "node:assert/strict";
import { execFile, fork } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ContextVar } from "contextvars";
import { type ContextPool, contextPool } from "contextvars/worker";
import Tinypool from "tinypool";
import workerpool from "workerpool";
import { JOB, type Job, requestId, wrappedPoolChecks } from "../helpers/pool-checks.ts";
import {
  fromTinypool,
  fromWorkerpool,
  jobTinypool,
  type WorkerPool,
} from "../helpers/pool-wrappers.ts";
import { fixture, workerExecArgv } from "../helpers/threads.ts";
import type { JobReply } from "./fixtures/job.ts";

const held = new ContextVar<unknown>("held");

/** A Map in `held`: what kind of value the job's `held` holds. */
function heldKind(pool: ContextPool): Promise<unknown> {
  return held.run(new Map([["a", 1]]), () => pool.run(undefined, { name: "heldKind" }));
}

describe('tinypool 2, runtime: "child_process"', () => {
  let tinypool: Tinypool;
  let pool: ContextPool<Job, JobReply>;
  let skipping: ContextPool;
  before(() => {
    tinypool = jobTinypool("child_process");
    pool = contextPool<Job, JobReply>(fromTinypool(tinypool));
    skipping = contextPool(fromTinypool(tinypool), { onUncloneable: "skip" });
  });
  after(() => tinypool.destroy());

  describe("through contextPool", () =>
    wrappedPoolChecks(
      () => pool,
      () => skipping,
    ));

  it("vars created before the pool's entry file loads (job.ts preloaded with --import) receive values", async () => {
    const preloaded = new Tinypool({
      runtime: "child_process",
      filename: JOB,
      execArgv: [...workerExecArgv, "--import", fileURLToPath(JOB)],
      maxThreads: 1,
    });
    try {
      const wrapped = contextPool<Job, JobReply>(fromTinypool(preloaded));
      const replies = await Promise.all(
        [0, 1, 2].map((i) => requestId.run(`r-${i}`, () => wrapped.run({ i, delay: 3 - i }))),
      );
      assert.deepEqual(
        replies.map((reply) => reply.requestId),
        ["r-0", "r-1", "r-2"],
      );
    } finally {
      await preloaded.destroy();
    }
  });

  it('values cross as JSON by default (a Map arrives as an empty object), intact with serialization: "advanced"', async () => {
    assert.equal(await heldKind(pool), "[object Object]");
    const advanced = new Tinypool({
      runtime: "child_process",
      filename: JOB,
      execArgv: workerExecArgv,
      maxThreads: 1,
      serialization: "advanced",
    });
    try {
      assert.equal(await heldKind(contextPool(fromTinypool(advanced))), "[object Map]");
    } finally {
      await advanced.destroy();
    }
  });
});

describe('workerpool 10, workerType: "process"', () => {
  let wp: WorkerPool;
  let pool: ContextPool<Job, JobReply>;
  let skipping: ContextPool;
  // The worker script imports job.ts before any job: its vars exist before the pool's entry file loads.
  const script = fixture("workerpool-worker.ts").pathname;
  before(() => {
    wp = workerpool.pool(script, {
      workerType: "process",
      forkOpts: { execArgv: workerExecArgv },
      maxWorkers: 2,
    });
    pool = contextPool<Job, JobReply>(fromWorkerpool(wp, JOB));
    skipping = contextPool(fromWorkerpool(wp, JOB), { onUncloneable: "skip" });
  });
  after(() => wp.terminate(true));

  describe("through contextPool", () =>
    wrappedPoolChecks(
      () => pool,
      () => skipping,
    ));

  it('values cross as JSON by default (a Map arrives as an empty object), intact with serialization: "advanced"', async () => {
    assert.equal(await heldKind(pool), "[object Object]");
    const advanced = workerpool.pool(script, {
      workerType: "process",
      forkOpts: { execArgv: workerExecArgv, serialization: "advanced" },
      maxWorkers: 1,
    });
    try {
      assert.equal(await heldKind(contextPool(fromWorkerpool(advanced, JOB))), "[object Map]");
    } finally {
      await advanced.terminate(true);
    }
  });
});

describe("a process with no IPC channel", () => {
  const main = fileURLToPath(fixture("no-channel.ts"));
  const execArgv = ["--conditions=contextvars-source", "--import", "tsx"];

  it("finds only the vars created after the pool's job runner loaded; with a channel, all", async () => {
    const spawned = await promisify(execFile)(process.execPath, [...execArgv, main], {
      timeout: 20_000,
    });
    assert.deepEqual(JSON.parse(spawned.stdout), { early: "<unset>", late: "l" });

    const forked = fork(main, { execArgv, stdio: ["ignore", "pipe", "inherit", "ipc"] });
    let stdout = "";
    forked.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk;
    });
    await once(forked, "exit");
    assert.deepEqual(JSON.parse(stdout), { early: "e", late: "l" });
  });
});
