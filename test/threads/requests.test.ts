/**
 * contextvars/worker inside real requests: Express 5's contextMiddleware and
 * Fastify 5's contextPlugin on real servers on 127.0.0.1, real clients, real
 * threads (a 2-thread contextPool, also under toThread, and Workers). Each
 * app has the same routes, written in its own idiom; every handler sets
 * `user` (from the `x-user` header, when sent) after an await, then:
 *
 *   GET /jobs         pool.run, then toThread (request-job.ts); answers what
 *                     each job saw and what the handler sees after each
 *   GET /worker       starts a Worker (echo-vars.ts); answers what it saw
 *   GET /fail/pool    a pool job that throws (failing.ts)
 *   GET /fail/thread  the same through toThread
 *   GET /hang         a pool job that waits until the request's signal
 *                     aborts it (Fastify's request.signal; for Express an
 *                     AbortController aborted on res "close")
 *   POST /hang        the same for a request with a body, with a signal
 *                     aborted on the response's "close" in both apps
 *   POST /seen        a pool job given that signal, which answers the
 *                     requestId it saw
 *   POST /hang/request-signal   (Fastify) /hang with request.signal
 *   GET /log?key=     a pool job that logs through pino (logging-job.ts)
 *
 * The error handler answers 500 with what it sees and records it, as /hang
 * records a job that was not aborted.
 */
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, request as httpRequest, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ContextVar } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import { requestId } from "contextvars/http";
import { type ContextPool, contextPool, toThread, useThreadPool, Worker } from "contextvars/worker";
import express, { type NextFunction, type Request, type Response } from "express";
import Fastify, { type FastifyRequest } from "fastify";
import { Piscina } from "piscina";
import { close, keepAliveAgent, listen, randomDelay, send, sendJson } from "../helpers/http.ts";
import { firstMessage, fixture, workerExecArgv } from "../helpers/threads.ts";
import type { EchoReply } from "./fixtures/echo-vars.ts";
import type { JobSeen, Seen } from "./fixtures/request-job.ts";

const user = new ContextVar<string>("user");
/** Never set in this thread: only the jobs set it (request-job.ts). */
const mark = new ContextVar<string>("mark");

const requestJob = fixture("request-job.ts");
const failing = fixture("failing.ts");
const loggingJob = fixture("logging-job.ts");
const echoVars = fixture("echo-vars.ts");

const unset: Seen = { requestId: "<unset>", user: "<unset>", mark: "<unset>" };

function seen(): Seen {
  return {
    requestId: requestId.get("<unset>"),
    user: user.get("<unset>"),
    mark: mark.get("<unset>"),
  };
}

let pool: ContextPool<unknown, unknown>;
const logDir = mkdtempSync(join(tmpdir(), "contextvars-requests-"));

/** What a handler saw after its job failed (or, for /hang, completed): `outcome` names which. */
interface Outcome extends Seen {
  outcome: string;
}

/**
 * Emits "outcome" with each Outcome, "hanging" once /hang's job is started,
 * and "worker" each time /worker has constructed its Worker.
 */
const recorded = new EventEmitter();

function record(outcome: string): Outcome {
  const out = { ...seen(), outcome };
  recorded.emit("outcome", out);
  return out;
}

/** What the error handlers do. */
function failed(error: unknown): Outcome {
  return record(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}

const jobDelay = () => Math.floor(Math.random() * 5);

async function enter(userHeader: string | undefined): Promise<void> {
  await randomDelay();
  if (userHeader !== undefined) user.set(userHeader);
}

interface JobsReply {
  pooled: JobSeen;
  afterPooled: Seen;
  threaded: JobSeen;
  afterThreaded: Seen;
}

async function jobs(userHeader: string | undefined): Promise<JobsReply> {
  await enter(userHeader);
  const pooled = (await pool.run(jobDelay())) as JobSeen;
  const afterPooled = seen();
  const threaded = await toThread<JobSeen>(requestJob, "default", jobDelay());
  await randomDelay();
  return { pooled, afterPooled, threaded, afterThreaded: seen() };
}

async function startWorker(userHeader: string | undefined): Promise<EchoReply["seen"]> {
  await enter(userHeader);
  const worker = new Worker(echoVars, {
    workerData: { names: ["requestId", "user", "mark"] },
    execArgv: workerExecArgv,
  });
  recorded.emit("worker");
  return (await firstMessage<EchoReply>(worker)).seen;
}

async function fail(where: string, userHeader: string | undefined): Promise<never> {
  await enter(userHeader);
  if (where === "pool") await pool.run(undefined, { filename: failing, name: "fail" });
  else await toThread(failing, "fail");
  throw new Error(`/fail/${where}: the job did not throw`);
}

async function hang(userHeader: string | undefined, signal: AbortSignal): Promise<Outcome> {
  await enter(userHeader);
  const job = pool.run(10_000, { filename: failing, name: "wait", signal });
  recorded.emit("hanging");
  await job;
  return record("completed");
}

/** A signal aborted when the response closes: finished, or its client gone. */
function closeSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  return controller.signal;
}

async function seenBySignalledJob(
  userHeader: string | undefined,
  signal: AbortSignal,
): Promise<{ requestId: string }> {
  await enter(userHeader);
  const seenByJob = await pool.run(undefined, { filename: failing, name: "seen", signal });
  return { requestId: seenByJob as string };
}

async function log(key: string, userHeader: string | undefined): Promise<Seen> {
  await enter(userHeader);
  await pool.run(key, { filename: loggingJob });
  return seen();
}

interface Served {
  base: string;
  close(): Promise<void>;
}

async function expressServer(): Promise<Served> {
  const app = express();
  app.use(contextMiddleware());
  const userOf = (req: Request) => req.get("x-user");
  app.get("/jobs", async (req, res) => {
    res.json(await jobs(userOf(req)));
  });
  app.get("/worker", async (req, res) => {
    res.json(await startWorker(userOf(req)));
  });
  app.get("/fail/:where", async (req, res) => {
    res.json(await fail(req.params.where as string, userOf(req)));
  });
  app.get("/hang", async (req, res) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    res.json(await hang(userOf(req), controller.signal));
  });
  app.post("/hang", express.json(), async (req, res) => {
    res.json(await hang(userOf(req), closeSignal(res)));
  });
  app.post("/seen", express.json(), async (req, res) => {
    res.json(await seenBySignalledJob(userOf(req), closeSignal(res)));
  });
  app.get("/log", async (req, res) => {
    res.json(await log(String(req.query.key), userOf(req)));
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json(failed(error));
  });
  const server = createServer(app);
  const base = await listen(server);
  return { base, close: () => close(server) };
}

async function fastifyServer(): Promise<Served> {
  const app = Fastify();
  await app.register(contextPlugin);
  const userOf = (request: FastifyRequest) => {
    const header = request.headers["x-user"];
    return typeof header === "string" ? header : undefined;
  };
  app.setErrorHandler((error, _request, reply) => {
    void reply.code(500).send(failed(error));
  });
  app.get("/jobs", (request) => jobs(userOf(request)));
  app.get("/worker", (request) => startWorker(userOf(request)));
  app.get("/fail/:where", (request) =>
    fail((request.params as { where: string }).where, userOf(request)),
  );
  app.get("/hang", (request) => hang(userOf(request), request.signal));
  // request.signal aborts once a body is read (fastify/fastify#6725): the response's close instead.
  app.post("/hang", (request, reply) => hang(userOf(request), closeSignal(reply.raw)));
  app.post("/seen", (request, reply) =>
    seenBySignalledJob(userOf(request), closeSignal(reply.raw)),
  );
  app.post("/hang/request-signal", (request) => hang(userOf(request), request.signal));
  app.get("/log", (request) => log((request.query as { key: string }).key, userOf(request)));
  const base = await app.listen({ port: 0, host: "127.0.0.1", backlog: 2048 });
  return { base, close: () => app.close() };
}

/** The user request `i` sends: none for every fourth, whose handler and jobs must then see none. */
const userFor = (i: number) => (i % 4 === 3 ? undefined : `user-${i}`);

function headersFor(id: string, userName: string | undefined): Record<string, string> {
  return userName === undefined
    ? { "x-request-id": id }
    : { "x-request-id": id, "x-user": userName };
}

before(() => {
  pool = contextPool(
    new Piscina({
      filename: requestJob.href,
      execArgv: workerExecArgv,
      minThreads: 2,
      maxThreads: 2,
      // Several jobs at once on each thread, interleaving at their awaits.
      concurrentTasksPerWorker: 4,
      workerData: { logDir },
    }),
  );
  useThreadPool(pool);
});

after(async () => {
  useThreadPool(undefined);
  await pool.destroy();
  rmSync(logDir, { recursive: true, force: true });
});

for (const [name, serve] of [
  ["Express 5 contextMiddleware", expressServer],
  ["Fastify 5 contextPlugin", fastifyServer],
] as const) {
  describe(`${name}: threads started in requests`, () => {
    let served: Served;
    before(async () => {
      served = await serve();
    });
    after(() => served.close());

    it("200 concurrent requests: each pool job and toThread call sees its own request's requestId and user; what a job sets reaches neither the handler nor a later job; nothing is left at the root", {
      timeout: 60_000,
    }, async () => {
      const agent = keepAliveAgent(50);
      const replies = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          send(served.base, "/jobs", { agent, headers: headersFor(`req-${i}`, userFor(i)) }),
        ),
      ).finally(() => agent.destroy());
      const threads = new Set<number>();
      replies.forEach((reply, i) => {
        assert.equal(reply.status, 200, reply.body);
        assert.equal(reply.headers["x-request-id"], `req-${i}`);
        const own: Seen = { requestId: `req-${i}`, user: userFor(i) ?? "<unset>", mark: "<unset>" };
        const { pooled, afterPooled, threaded, afterThreaded } = JSON.parse(
          reply.body,
        ) as JobsReply;
        const { threadId, ...pooledSeen } = pooled;
        const { threadId: threadedId, ...threadedSeen } = threaded;
        assert.deepEqual(
          { pooledSeen, afterPooled, threadedSeen, afterThreaded },
          { pooledSeen: own, afterPooled: own, threadedSeen: own, afterThreaded: own },
          `request ${i}`,
        );
        threads.add(threadId).add(threadedId);
      });
      // Both threads ran jobs, each after others whose sets it must not keep.
      assert.equal(threads.size, 2);
      assert.deepEqual(seen(), unset, "nothing reached the test's own Context");
      // Jobs from outside any request, on both threads, find nothing either.
      const fromRoot = await Promise.all([
        ...Array.from({ length: 8 }, () => pool.run(0) as Promise<JobSeen>),
        ...Array.from({ length: 8 }, () => toThread<JobSeen>(requestJob, "default", 0)),
      ]);
      for (const { threadId: _, ...rootSeen } of fromRoot) assert.deepEqual(rootSeen, unset);
    });

    // 20, not more: each Worker loads tsx, about 0.1 s of CPU apiece, and the
    // file runs on several runtime targets in CI.
    it("a Worker started in a handler starts with that request's values, under 20 concurrent requests; one started outside any request meanwhile, with none", {
      timeout: 120_000,
    }, async () => {
      const agent = keepAliveAgent(20);
      const started = once(recorded, "worker");
      const requests = Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          sendJson<EchoReply["seen"]>(served.base, "/worker", {
            agent,
            headers: headersFor(`w-${i}`, userFor(i)),
          }),
        ),
      ).finally(() => agent.destroy());
      // Once a handler has started a Worker with its values: they were not left behind.
      await Promise.race([started, requests]);
      const outside = firstMessage<EchoReply>(
        new Worker(echoVars, {
          workerData: { names: ["requestId", "user", "mark"] },
          execArgv: workerExecArgv,
        }),
      );
      const [replies, { seen: outsideSeen }] = await Promise.all([requests, outside]);
      replies.forEach((reply, i) => {
        assert.deepEqual(
          reply,
          { requestId: `w-${i}`, user: userFor(i) ?? "<unset>", mark: "<unset>" },
          `request ${i}`,
        );
      });
      assert.deepEqual(outsideSeen, unset);
    });

    it("a job that throws, in the pool or through toThread, rejects in the request's Context: the error handler sees its values; the next request on the socket is clean", {
      timeout: 60_000,
    }, async () => {
      const agent = keepAliveAgent(1);
      try {
        for (const where of ["pool", "thread"]) {
          const id = `fail-${where}`;
          const reply = await send(served.base, `/fail/${where}`, {
            agent,
            headers: headersFor(id, `user-${id}`),
          });
          assert.equal(reply.status, 500, reply.body);
          assert.equal(reply.headers["x-request-id"], id);
          assert.deepEqual(JSON.parse(reply.body), {
            requestId: id,
            user: `user-${id}`,
            mark: "<unset>",
            // The job saw the request's id too.
            outcome: `TypeError: failed in ${id}`,
          });
          const next = await sendJson<JobsReply>(served.base, "/jobs", {
            agent,
            headers: headersFor(`after-${id}`, undefined),
          });
          const clean: Seen = { requestId: `after-${id}`, user: "<unset>", mark: "<unset>" };
          const { threadId: _, ...pooled } = next.pooled;
          assert.deepEqual(
            { pooled, afterPooled: next.afterPooled },
            {
              pooled: clean,
              afterPooled: clean,
            },
          );
        }
      } finally {
        agent.destroy();
      }
      assert.deepEqual(seen(), unset);
    });

    for (const method of ["GET", "POST"]) {
      it(`${method}: a job aborted through the request's signal when the client goes away rejects in the request's Context; the next request's jobs see only its own values`, {
        timeout: 60_000,
      }, async () => {
        const hanging = once(recorded, "hanging");
        const outcome = once(recorded, "outcome") as Promise<[Outcome]>;
        const req = httpRequest(`${served.base}/hang`, {
          method,
          headers: {
            ...headersFor("hang-1", "hanger"),
            ...(method === "POST" ? { "content-type": "application/json" } : {}),
          },
        });
        req.on("error", () => {});
        req.end(method === "POST" ? JSON.stringify({ rows: [1, 2, 3] }) : undefined);
        await hanging;
        req.destroy();
        const [seenByErrorHandler] = await outcome;
        assert.deepEqual(seenByErrorHandler, {
          requestId: "hang-1",
          user: "hanger",
          mark: "<unset>",
          outcome: "AbortError: The task has been aborted",
        });
        const next = await sendJson<JobsReply>(served.base, "/jobs", {
          headers: headersFor("after-hang", undefined),
        });
        const clean: Seen = { requestId: "after-hang", user: "<unset>", mark: "<unset>" };
        const { threadId: _, ...pooled } = next.pooled;
        const { threadId: __, ...threaded } = next.threaded;
        assert.deepEqual(
          { pooled, threaded, afterThreaded: next.afterThreaded },
          { pooled: clean, threaded: clean, afterThreaded: clean },
        );
        assert.deepEqual(seen(), unset);
      });
    }

    it("a POST with a body: a job given a signal aborted on the response's close runs, and sees the request's values", {
      timeout: 60_000,
    }, async () => {
      const ids = Array.from({ length: 20 }, (_, i) => `post-${i}`);
      const answers = await Promise.all(
        ids.map((id) =>
          sendJson<{ requestId: string }>(served.base, "/seen", {
            headers: { ...headersFor(id, undefined), "content-type": "application/json" },
            body: JSON.stringify({ rows: [1, 2, 3] }),
          }),
        ),
      );
      assert.deepEqual(
        answers.map((answer) => answer.requestId),
        ids,
      );
    });

    if (name.startsWith("Fastify")) {
      it("Fastify's request.signal aborts the job of a POST with a body once the body is read, while the client waits (fastify/fastify#6725)", {
        timeout: 60_000,
      }, async () => {
        const outcome = once(recorded, "outcome") as Promise<[Outcome]>;
        const reply = await send(served.base, "/hang/request-signal", {
          headers: { ...headersFor("early-1", "poster"), "content-type": "application/json" },
          body: JSON.stringify({ rows: [1, 2, 3] }),
        });
        assert.equal(reply.status, 500);
        assert.deepEqual((await outcome)[0], {
          requestId: "early-1",
          user: "poster",
          mark: "<unset>",
          outcome: "AbortError: The task has been aborted",
        });
      });
    }

    it("pino with contextMixin in a pool job puts each of 50 concurrent requests' id and user on that job's lines", {
      timeout: 60_000,
    }, async () => {
      const prefix = name.split(" ")[0]?.toLowerCase() ?? name;
      const keys = Array.from({ length: 50 }, (_, i) => `${prefix}-${i}`);
      const agent = keepAliveAgent(25);
      const replies = await Promise.all(
        keys.map((key) =>
          sendJson<Seen>(served.base, `/log?key=${key}`, {
            agent,
            headers: headersFor(`log-${key}`, `user-${key}`),
          }),
        ),
      ).finally(() => agent.destroy());
      assert.deepEqual(
        replies.map((reply) => reply.requestId),
        keys.map((key) => `log-${key}`),
      );
      // The logger writes synchronously: every line is in its thread's file when the job returns.
      const lines = readdirSync(logDir)
        .flatMap((file) => readFileSync(join(logDir, file), "utf8").split("\n"))
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((line) => String(line.key).startsWith(`${prefix}-`));
      const byKey = new Map<string, string[]>();
      for (const line of lines) {
        const key = String(line.key);
        assert.equal(line.requestId, `log-${key}`, `${String(line.msg)} for ${key}`);
        assert.equal(line.user, `user-${key}`, `${String(line.msg)} for ${key}`);
        byKey.set(key, [...(byKey.get(key) ?? []), String(line.msg)]);
      }
      assert.deepEqual([...byKey.keys()].sort(), [...keys].sort());
      for (const msgs of byKey.values()) {
        assert.deepEqual(msgs.sort(), ["after await", "in child", "in task", "start"]);
      }
    });
  });
}
