/**
 * A long-lived worker that takes jobs by postMessage from concurrent
 * callers, each awaiting its reply. With no help every message runs in the
 * worker's one root Context, and the Worker's "message" listener in the
 * Context that made the Worker; wrapped in the few lines of docs/threads.md
 * ("Other pools"), contextPool gives each message a copy of its caller's
 * Context.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Worker as NodeWorker } from "node:worker_threads";
import { type ContextPool, contextPool, type PiscinaLike, Worker } from "contextvars/worker";
import { JOB, type Job, requestId, wrappedPoolChecks } from "../helpers/pool-checks.ts";
import { fixture, workerExecArgv } from "../helpers/threads.ts";
import type { JobReply } from "./fixtures/job.ts";
import type { RpcReply, RpcRequest } from "./fixtures/rpc-worker.ts";

// The recipe of docs/threads.md, as a user copies it (the worker side is fixtures/rpc-worker.ts).
/** A hand-rolled client of a long-lived worker: one request per call, matched to its reply by id. */
class Rpc {
  readonly worker: NodeWorker;
  /** requestId as the worker's "message" listener read it, one entry per reply. */
  readonly listenerSaw: string[] = [];
  #next = 0;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();

  constructor(worker: NodeWorker) {
    this.worker = worker;
    worker.on("message", (reply: RpcReply) => {
      this.listenerSaw.push(requestId.get("<unset>"));
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if ("error" in reply) pending?.reject(reply.error);
      else pending?.resolve(reply.result);
    });
  }

  call(request: Omit<RpcRequest, "id">): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...request });
    });
  }
}

/** The long-lived worker as contextPool takes it. */
function fromRpc(rpc: Rpc, filename: string): PiscinaLike {
  const stop = () => rpc.worker.terminate().then(() => undefined);
  return {
    options: { filename, name: "default" },
    run: (task, { filename, name }) => rpc.call({ filename, name, task }),
    close: stop,
    destroy: stop,
  };
}

describe("a long-lived worker taking jobs by postMessage", () => {
  let rpc: Rpc;
  let pool: ContextPool<Job, JobReply>;
  let skipping: ContextPool;
  before(() => {
    rpc = new Rpc(new Worker(fixture("rpc-worker.ts"), { execArgv: workerExecArgv }));
    pool = contextPool<Job, JobReply>(fromRpc(rpc, JOB));
    skipping = contextPool(fromRpc(rpc, JOB), { onUncloneable: "skip" });
  });
  after(() => rpc.worker.terminate());

  it("with no help: messages run in the worker's one root Context, which holds the values the Worker was made with; its 'message' listener runs in the Context that made it; an awaited reply resumes in the caller's", async () => {
    const client = requestId.run(
      "made-in",
      () => new Rpc(new Worker(fixture("rpc-worker.ts"), { execArgv: workerExecArgv })),
    );
    try {
      const seen: { job: string; afterAwait: string }[] = [];
      for (const i of [0, 1]) {
        seen.push(
          await requestId.run(`r-${i}`, async () => {
            const reply = (await client.call({ task: { i, delay: 0 } })) as JobReply;
            return { job: reply.requestId, afterAwait: requestId.get() };
          }),
        );
      }
      assert.deepEqual(seen, [
        { job: "made-in", afterAwait: "r-0" },
        { job: "dirty after 0", afterAwait: "r-1" },
      ]);
      assert.deepEqual(client.listenerSaw, ["made-in", "made-in"]);
    } finally {
      await client.worker.terminate();
    }
  });

  describe("through contextPool", () =>
    wrappedPoolChecks(
      () => pool,
      () => skipping,
    ));
});
