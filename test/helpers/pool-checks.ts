/**
 * What every pool that contextPool wraps must do, checked the same way for
 * tinypool, workerpool and a long-lived worker (test/threads/tinypool.test.ts,
 * workerpool.test.ts, postmessage.test.ts), and for tinypool and workerpool
 * pools of child processes (process-pools.test.ts): each job in a copy of its
 * caller's Context, errors and uncloneable values as docs/threads.md says.
 * The jobs are test/threads/fixtures/job.ts's.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { ContextVar, gather, run } from "contextvars";
import { type ContextPool, TransferError } from "contextvars/worker";
import type { JobReply } from "../threads/fixtures/job.ts";
import { fixture } from "./threads.ts";

export const requestId = new ContextVar<string>("requestId");
const user = new ContextVar<string>("user");
const secret = new ContextVar<string>("secret", { transfer: false });
const session = new ContextVar<unknown>("session");

/** What job.ts's default export takes. */
export type Job = { i: number; delay: number };

/** job.ts, the module every pool's jobs run. */
export const JOB = fixture("job.ts").href;
const FAILING = fixture("failing.ts").href;

/**
 * The checks every wrapped pool passes. Each of 24 callers sets its own
 * values and runs a job that reads them, waits (so jobs on one thread
 * interleave where the pool allows it) and sets requestId at its end: the
 * job throws if requestId changed across its wait.
 */
export function wrappedPoolChecks(
  pool: () => ContextPool<Job, JobReply>,
  skipping: () => ContextPool,
) {
  it("each job sees its own caller's values, never another job's; its sets reach neither the caller nor the next job", async () => {
    const results = await gather(
      ...Array.from({ length: 24 }, (_, i) => async () => {
        requestId.set(`r-${i}`);
        user.set(`user-${i % 5}`);
        secret.set(`secret-${i}`);
        const reply = await pool().run({ i, delay: (i * 7) % 13 });
        return { reply, callerAfter: requestId.get() };
      }),
    );
    const perThread = new Map<string, number>();
    for (const [i, { reply, callerAfter }] of results.entries()) {
      assert.deepEqual(
        { i: reply.i, requestId: reply.requestId, user: reply.user, secret: reply.secret },
        // secret is { transfer: false }: it stays in the caller's thread.
        { i, requestId: `r-${i}`, user: `user-${i % 5}`, secret: "<unset>" },
      );
      assert.equal(callerAfter, `r-${i}`);
      const where = `${reply.pid}/${reply.threadId}`;
      perThread.set(where, (perThread.get(where) ?? 0) + 1);
    }
    // Jobs did share threads (or processes), so "never the next job's values" was tested.
    assert.ok(Math.max(...perThread.values()) > 1, `jobs per thread: ${[...perThread.values()]}`);
  });

  // Each test sets its vars inside run(), in a copy of the test's Context: nothing reaches the next test.
  it("a job that throws rejects with its error and leaves the caller's Context as it was", () =>
    run(async () => {
      requestId.set("caller");
      let seenInCatch = "";
      await assert.rejects(
        pool()
          .run({ i: 0, delay: 0 }, { filename: FAILING, name: "fail" })
          .catch((error: unknown) => {
            seenInCatch = requestId.get("<unset>");
            throw error;
          }),
        (error: Error) => error.message === "failed in caller",
      );
      assert.equal(seenInCatch, "caller");
      assert.equal(requestId.get(), "caller");
    }));

  it("a function or a class instance in a var rejects with a TransferError naming the var; with onUncloneable: skip the rest cross", () =>
    run(async () => {
      class Session {
        readonly id = "s-1";
      }
      requestId.set("uncloneable");
      for (const [value, problem] of [
        [() => "s-1", "value is a function"],
        [{ session: new Session() }, "value.session is a Session, which would arrive as a plain"],
      ] as const) {
        session.set(value);
        await assert.rejects(
          pool().run({ i: 0, delay: 0 }),
          (error: unknown) =>
            error instanceof TransferError &&
            error.code === "ERR_CONTEXTVAR_UNCLONEABLE" &&
            error.message.startsWith(`ContextVar("session") cannot cross`) &&
            error.message.includes(problem),
        );
        const reply = (await skipping().run({ i: 0, delay: 0 })) as JobReply;
        assert.equal(reply.requestId, "uncloneable");
      }
    }));
}
