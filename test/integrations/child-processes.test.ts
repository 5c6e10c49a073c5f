/**
 * Context across a process boundary, with real processes: a child forked
 * with an IPC channel and shared by concurrent requests of a node:http
 * service, and a `cluster` whose workers serve requests. Nothing of a
 * Context crosses by itself; what docs/recipes.md ("Across processes") says
 * to do, and what happens without it:
 *
 * - Values put in the job message, and a child that runs each message in a
 *   fresh Context seeded from them (`bind(job, new Context())`): every job
 *   sees its own request's values, none sees another's, and the reply's
 *   `await` resumes in the request that sent the job. `contextPropagation`'s
 *   `inject({})`, sent as the message's headers, and `extractInto` in the
 *   child carry the vars and the trace the same way.
 * - A child whose handler sets the vars plainly sets them in its root
 *   Context: the next job starts with the last one's values.
 * - The parent's `message` listener (and `cluster.on("message")` in a
 *   primary) runs in the Context `fork()` was called in, whichever request
 *   the reply is for: a child forked lazily inside a request shows every
 *   later reply that request's values.
 * - A request served by a cluster worker under `withContext` has a Context of
 *   its own, as in one process.
 */
import assert from "node:assert/strict";
import { type ChildProcess, fork } from "node:child_process";
import cluster, { type Worker } from "node:cluster";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { context } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { ContextVarsContextManager, contextPropagation } from "contextvars/otel";
import { close, listen } from "../helpers/http.ts";
import { runtime } from "../runtimes/runtime.ts";
import type { Job, JobReply } from "./fixtures/child-jobs.ts";

const onNode = { skip: runtime === "node" ? false : "fork's execArgv and cluster are Node's" };
const execArgv = ["--conditions=contextvars-source", "--import", "tsx"];
const root = fileURLToPath(new URL("../..", import.meta.url));
const childJobs = fileURLToPath(new URL("fixtures/child-jobs.ts", import.meta.url));
const clusterWorker = fileURLToPath(new URL("fixtures/cluster-worker.ts", import.meta.url));

context.setGlobalContextManager(new ContextVarsContextManager().enable());
const tracer = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(new InMemorySpanExporter())],
}).getTracer("child-processes");

const user = new ContextVar<string>("user", { default: "anonymous" });
const tag = new ContextVar<string>("tag", { default: "-" });
const carry = contextPropagation({ "user.id": user, "request.id": requestId });

const FRESH = { requestId: "-", user: "anonymous", note: "none", traceId: "none" };

/** One child shared by every caller, replies matched to jobs by id, as the recipe does. */
function jobRunner(child: ChildProcess) {
  const pending = new Map<number, (reply: JobReply) => void>();
  const listenerSaw: string[] = [];
  let lastId = 0;
  child.on("message", (reply: JobReply) => {
    listenerSaw.push(requestId.get("-"));
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  });
  return {
    listenerSaw,
    run(job: Omit<Job, "id">): Promise<JobReply> {
      const id = ++lastId;
      const replied = new Promise<JobReply>((resolve) => pending.set(id, resolve));
      child.send({ ...job, id } satisfies Job);
      return replied;
    },
  };
}

function forkChild(): ChildProcess {
  return fork(childJobs, [], { cwd: root, execArgv });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill();
  await exited;
}

describe("a forked child with IPC, shared by concurrent requests", onNode, () => {
  let child: ChildProcess;
  let runner: ReturnType<typeof jobRunner>;
  before(() => {
    child = forkChild(); // outside any request, as the recipe says
    runner = jobRunner(child);
  });
  after(() => stop(child));

  /** A service whose handler hands one job to the child and answers with what both sides saw. */
  async function service(job: (id: number) => Omit<Job, "id">) {
    let n = 0;
    const server = createServer(
      withContext(
        async (_req, res) => {
          const reply = await runner.run(job(n++));
          res.end(JSON.stringify({ ...reply, afterAwait: requestId.get(), user: user.get() }));
        },
        { seed: (req) => user.set(String(req.headers["x-user"])) },
      ),
    );
    return { server, base: await listen(server) };
  }

  it("40 requests at once: each job sees its own request's values, and the reply resumes in its request", async () => {
    const { server, base } = await service((n) => ({
      mode: "seeded",
      delay: (n * 7) % 30, // replies come back in another order than the jobs went
      vars: { requestId: requestId.get(), user: user.get() },
    }));
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `req-${i}`);
      const replies = await Promise.all(
        ids.map(async (id, i) => {
          const response = await fetch(base, {
            headers: { "x-request-id": id, "x-user": `user-${i}` },
          });
          return (await response.json()) as JobReply & { afterAwait: string; user: string };
        }),
      );
      replies.forEach((reply, i) => {
        const own = { requestId: ids[i], user: `user-${i}` };
        assert.deepEqual(reply.before, FRESH, "each job starts in a fresh Context");
        assert.deepEqual(reply.after, {
          ...own,
          note: `set by the job of ${ids[i]}`,
          traceId: "none",
        });
        assert.equal(reply.afterAwait, ids[i]);
        assert.equal(reply.user, `user-${i}`);
      });
      // The listener ran in the Context fork() was called in: no request's.
      assert.deepEqual(new Set(runner.listenerSaw), new Set(["-"]));
    } finally {
      await close(server);
    }
  });

  it("contextPropagation's inject({}) in the message, extractInto in the child: vars and trace arrive", async () => {
    const traceIds: string[] = []; // of the parent's spans, one per request
    const { server, base } = await service(() =>
      tracer.startActiveSpan("hand over", (span): Omit<Job, "id"> => {
        try {
          traceIds.push(span.spanContext().traceId);
          const headers = carry.inject({}) as Record<string, string>;
          return { mode: "seeded", delay: 5, headers };
        } finally {
          span.end();
        }
      }),
    );
    try {
      const replies = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const response = await fetch(base, {
            headers: { "x-request-id": `traced-${i}`, "x-user": `traced-user-${i}` },
          });
          return (await response.json()) as JobReply;
        }),
      );
      assert.equal(new Set(traceIds).size, 10);
      for (const [i, reply] of replies.entries()) {
        assert.deepEqual(reply.before, FRESH);
        assert.equal(reply.after.requestId, `traced-${i}`);
        assert.equal(reply.after.user, `traced-user-${i}`);
        assert.ok(traceIds.includes(reply.after.traceId), "the child continues the parent's trace");
      }
      assert.equal(new Set(replies.map((r) => r.after.traceId)).size, 10);
    } finally {
      await close(server);
    }
  });

  it("a child whose handler sets the vars plainly starts each job with the last job's values", async () => {
    const first = await requestId.run("plain-1", () =>
      runner.run({ mode: "plain", delay: 0, vars: { requestId: "plain-1", user: "dave" } }),
    );
    const second = await requestId.run("plain-2", () =>
      runner.run({ mode: "plain", delay: 0, vars: { requestId: "plain-2", user: "erin" } }),
    );
    assert.equal(first.after.requestId, "plain-1");
    assert.deepEqual(second.before, {
      ...FRESH,
      requestId: "plain-1",
      user: "dave",
      note: "set by the job of plain-1",
    });
  });
});

describe("where the parent's IPC listeners run", onNode, () => {
  it("in the Context fork() was called in: a child forked inside a request shows later replies that request", async () => {
    let lazy: ChildProcess | undefined;
    let runner: ReturnType<typeof jobRunner> | undefined;
    const server = createServer(
      withContext(async (_req, res) => {
        if (runner === undefined) {
          lazy = forkChild(); // on first use, inside the first request
          runner = jobRunner(lazy);
        }
        const reply = await runner.run({
          mode: "seeded",
          delay: 0,
          vars: { requestId: requestId.get(), user: "anyone" },
        });
        res.end(`${reply.after.requestId} ${requestId.get()}`);
      }),
    );
    const base = await listen(server);
    try {
      for (const id of ["first", "second", "third"]) {
        const response = await fetch(base, { headers: { "x-request-id": id } });
        assert.equal(await response.text(), `${id} ${id}`, "the job and the awaiting request");
      }
      assert.deepEqual(runner?.listenerSaw, ["first", "first", "first"]);
    } finally {
      await close(server);
      if (lazy !== undefined) await stop(lazy);
    }
  });
});

describe("cluster", onNode, () => {
  it("a request a worker serves under withContext has its own Context; the primary's listeners run where fork() was called", async () => {
    cluster.setupPrimary({ exec: clusterWorker, execArgv, cwd: root } as never);
    const primarySaw: string[] = [];
    const workerListenerSaw: string[] = [];
    const handled: string[] = [];
    const onMessage = (_worker: Worker, message: { kind: string; requestId?: string }) => {
      if (message.kind !== "handled") return;
      primarySaw.push(tag.get());
      handled.push(message.requestId ?? "");
    };
    cluster.on("message", onMessage);
    const workers = [1, 2].map((n) => tag.run(`forked by ${n}`, () => cluster.fork()));
    try {
      for (const worker of workers) {
        worker.on("message", (message: { kind: string }) => {
          if (message.kind === "handled") workerListenerSaw.push(tag.get());
        });
      }
      const ports = await Promise.all(
        workers.map(
          (worker) =>
            new Promise<number>((resolve) => {
              worker.on("message", (message: { kind: string; port?: number }) => {
                if (message.kind === "listening") resolve(message.port ?? 0);
              });
            }),
        ),
      );
      assert.equal(ports[0], ports[1], "the workers share one port");
      const ids = Array.from({ length: 40 }, (_, i) => `cluster-${i}`);
      const answers = await Promise.all(
        ids.map(async (id, i) => {
          const response = await fetch(`http://127.0.0.1:${ports[0]}/`, {
            headers: { "x-request-id": id, "x-user": `user-${i}`, "x-delay": String(i % 5) },
          });
          return (await response.json()) as {
            worker: number;
            requestId: string;
            user: string;
            noteBefore: string;
            noteAfter: string;
          };
        }),
      );
      answers.forEach((answer, i) => {
        assert.equal(answer.requestId, ids[i]);
        assert.equal(answer.user, `user-${i}`);
        assert.equal(answer.noteBefore, "none", "no request sees another's set");
        assert.equal(answer.noteAfter, `set by ${ids[i]}`);
      });
      assert.equal(new Set(answers.map((answer) => answer.worker)).size, 2, "both workers served");
      // Bounded: a lost message fails the assertion below rather than hanging the run.
      const deadline = Date.now() + 20_000;
      while (handled.length < ids.length && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual(new Set(handled), new Set(ids));
      assert.deepEqual(new Set(primarySaw), new Set(["forked by 1", "forked by 2"]));
      assert.deepEqual(new Set(workerListenerSaw), new Set(["forked by 1", "forked by 2"]));
    } finally {
      cluster.off("message", onMessage);
      await Promise.all(
        workers.map((worker) =>
          worker.isDead()
            ? undefined
            : new Promise((resolve) => {
                worker.once("exit", resolve);
                worker.kill();
              }),
        ),
      );
    }
  });
});
