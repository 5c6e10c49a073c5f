/**
 * `npm run soak [-- --seconds N] [-- --concurrency C]`: a bounded soak of
 * real servers on 127.0.0.1 (loopback only; default 60 s; stops by itself).
 *
 * One app on each integration (contextvars/http, /express, /fastify, /hono,
 * /koa: test/helpers/apps.ts), all sharing one pino logger (contextvars/pino)
 * and one piscina pool (contextvars/worker). C clients send requests with
 * their own id and user to a random app and route:
 *
 *   tasks    gather() of three tasks and a TaskGroup of two, each setting a
 *            var of its own across awaits (siblings must not see each other)
 *   timers   setTimeout, setImmediate, nextTick, queueMicrotask, callLater
 *   worker   a job on a worker thread (scripts/soak-job.ts)
 *   body     a JSON body through the framework's parser
 *   fail     a handler that throws after an await (the error handler answers)
 *   abort    a body cut off mid-way by the client (nobody answers)
 *
 * Every value read on the server (at every await, in every task, timer and
 * job), every response and every log line is checked against the request's
 * own id and user; any difference is cross-talk. Each request's seed sets a
 * tracked session object: after the run, with every connection closed, all
 * must be garbage. The heap is measured after full collections once the
 * warm-up is done (traffic paused, connections closed) and again at the
 * end: it must return to that baseline within HEAP_BOUND. Exits 1 on any
 * cross-talk, unexpected error, leak, or a heap over the bound.
 */
import type { Agent } from "node:http";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { ContextVar, callLater, createTask, gather, TaskGroup } from "contextvars";
import { requestId } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import { contextPool } from "contextvars/worker";
import pino from "pino";
import { Piscina } from "piscina";
import { frameworkNames, type RunningApp, startApp } from "../test/helpers/apps.ts";
import { settledHeap, Watch } from "../test/helpers/gc.ts";
import { keepAliveAgent, send, staleSocketRetries } from "../test/helpers/http.ts";
import { workerExecArgv } from "../test/helpers/threads.ts";
import type { SoakJobReply } from "./soak-job.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    concurrency: { type: "string", default: "48" },
  },
});
const SECONDS = Number(args.seconds);
const CONCURRENCY = Number(args.concurrency);
const MB = 1024 * 1024;
const HEAP_BOUND = 8 * MB;
if (!(SECONDS > 0) || !(CONCURRENCY > 0))
  throw new TypeError("--seconds and --concurrency take positive numbers");

const user = new ContextVar<string>("soak.user");
const session = new ContextVar<{ id: string }>("soak.session");
const stage = new ContextVar<string>("soak.stage", { default: "none" });

const crossTalk: string[] = [];
const unexpected: string[] = [];
const counts = { served: 0, logLines: 0, workerJobs: 0, failed: 0, aborted: 0 };
const byFramework = new Map<string, number>();
const byRoute = new Map<string, number>();
const sessions = new Watch();

function report(list: string[], what: string): void {
  list.push(what);
  if (list.length <= 5) console.error(`  ! ${what}`);
}

// Every line is checked as it is written: the mixin's values against the request's own.
const logger = pino(
  { base: undefined, timestamp: false, mixin: contextMixin({ requestId, user }) },
  {
    write(text: string) {
      counts.logLines++;
      const line = JSON.parse(text) as Record<string, unknown>;
      if (line.requestId !== line.expectId || line.user !== line.expectUser) {
        report(crossTalk, `log line ${text.trim()}`);
      }
    },
  },
);

const pool = contextPool<number, SoakJobReply>(
  new Piscina({
    filename: new URL("./soak-job.ts", import.meta.url).href,
    execArgv: workerExecArgv,
    minThreads: 2,
    maxThreads: 2,
    concurrentTasksPerWorker: 8,
  }),
);

/** Server side: the request's own id and user must be what every read sees. */
async function handle(path: string, body: unknown): Promise<unknown> {
  const id = requestId.get();
  const who = user.get();
  const check = (where: string) => {
    const seen = `${requestId.get("<none>")}/${user.get("<none>")}`;
    if (seen !== `${id}/${who}`) report(crossTalk, `${id}/${who} read ${seen} at ${where}`);
  };
  const log = (msg: string) => logger.info({ expectId: id, expectUser: who }, msg);
  const pause = () => sleep(Math.floor(Math.random() * 3));
  log("start");
  const route = path.slice(1);
  if (route === "tasks") {
    const own = async (name: string) => {
      stage.set(name);
      await pause();
      check(`task ${name}`);
      if (stage.get() !== name) report(crossTalk, `${id}: task ${name} saw stage ${stage.get()}`);
    };
    await gather(...["a", "b", "c"].map((name) => () => own(name)));
    const group = new TaskGroup();
    for (const name of ["d", "e"]) group.createTask(() => own(name));
    await group.wait();
    await createTask(() => own("f"));
    if (stage.get() !== "none") report(crossTalk, `${id}: a task's set reached the handler`);
  } else if (route === "timers") {
    const after = (schedule: (done: () => void) => void, name: string) =>
      new Promise<void>((resolve) => schedule(() => resolve(check(name))));
    await Promise.all([
      after((done) => setTimeout(done, Math.random() * 3), "setTimeout"),
      after((done) => setImmediate(done), "setImmediate"),
      after((done) => process.nextTick(done), "nextTick"),
      after((done) => queueMicrotask(done), "queueMicrotask"),
      after((done) => callLater(1, done), "callLater"),
    ]);
  } else if (route === "worker") {
    const reply = await pool.run(Math.floor(Math.random() * 3));
    counts.workerJobs++;
    if (reply.id !== id || reply.user !== who || reply.leftOver !== "none") {
      report(crossTalk, `${id}/${who}: worker job saw ${JSON.stringify(reply)}`);
    }
  } else if (route === "body") {
    if ((body as { id?: unknown } | undefined)?.id !== id)
      report(unexpected, `${id}: body ${JSON.stringify(body)}`);
  } else if (route === "fail") {
    await pause();
    stage.set("failing");
    throw new Error("expected failure");
  }
  await pause();
  check("end");
  log("end");
  return { id, user: who, route };
}

function onError(error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  const id = requestId.get("<none>");
  // A body parser's error for a body the client cut off (the id names the route) is expected too.
  if (message !== "expected failure" && !id.includes("-abort-"))
    report(unexpected, `${id}: ${message}`);
  return { id: requestId.get("<none>"), user: user.get("<none>"), failed: true };
}

function seed(req: { headers: Record<string, string | string[] | undefined> }): void {
  user.set(String(req.headers["x-user"]));
  const id = requestId.get();
  session.set(sessions.track({ id }, id));
}

/** Client side: one request, checked. */
async function oneRequest(app: RunningApp, agent: Agent, n: number): Promise<void> {
  const roll = Math.random();
  const route =
    roll < 0.3
      ? "tasks"
      : roll < 0.55
        ? "timers"
        : roll < 0.7
          ? "worker"
          : roll < 0.85
            ? "body"
            : roll < 0.95
              ? "fail"
              : "abort";
  const id = `soak-${app.name}-${route}-${n}`;
  const who = `user-${n}`;
  if (route === "abort") {
    await abortMidBody(app.base, id, who);
    counts.aborted++;
  } else {
    const headers = { "x-request-id": id, "x-user": who, "content-type": "application/json" };
    const body = route === "body" ? JSON.stringify({ id, pad: "x".repeat(512) }) : undefined;
    const reply = await send(app.base, `/${route}`, { agent, headers, body }).catch(
      (error: unknown) => {
        throw new Error(`${id}: ${String(error)}`);
      },
    );
    const expected = route === "fail" ? { id, user: who, failed: true } : { id, user: who, route };
    if (reply.status !== (route === "fail" ? 500 : 200))
      report(unexpected, `${id}: status ${reply.status} ${reply.body}`);
    else if (reply.body !== JSON.stringify(expected) || reply.headers["x-request-id"] !== id) {
      report(crossTalk, `${id}/${who} got ${reply.headers["x-request-id"]} ${reply.body}`);
    }
    if (route === "fail") counts.failed++;
  }
  counts.served++;
  byFramework.set(app.name, (byFramework.get(app.name) ?? 0) + 1);
  byRoute.set(route, (byRoute.get(route) ?? 0) + 1);
}

async function abortMidBody(base: string, id: string, who: string): Promise<void> {
  const socket = connect(Number(new URL(base).port), "127.0.0.1");
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  const head = [
    "POST /body HTTP/1.1",
    "Host: 127.0.0.1",
    "Content-Type: application/json",
    "Content-Length: 4096",
    `X-Request-Id: ${id}`,
    `X-User: ${who}`,
  ];
  socket.write(`${head.join("\r\n")}\r\n\r\n{"id":"${id}","pad":"`);
  await sleep(2);
  socket.destroy();
}

/** Sends requests from `CONCURRENCY` clients until `until`; then closes every client socket. */
async function traffic(apps: RunningApp[], until: number, counter: { n: number }): Promise<void> {
  const agents = apps.map(() => keepAliveAgent(CONCURRENCY));
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < until) {
        const n = counter.n++;
        const k = n % apps.length;
        await oneRequest(apps[k] as RunningApp, agents[k] as Agent, n).catch((error: unknown) =>
          report(unexpected, `client: ${String(error)}`),
        );
      }
    }),
  );
  for (const agent of agents) agent.destroy();
  await sleep(1_100); // idle keep-alive sockets and Node's Date-header timer let go (docs/guarantees.md)
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

const apps = await Promise.all(
  frameworkNames.map((name) => startApp(name, { seed, handle, onError })),
);
const started = Date.now();
const warmUp = Math.max(2, Math.min(10, SECONDS * 0.1)) * 1000;
const counter = { n: 0 };
console.log(
  `soak: ${SECONDS} s, ${CONCURRENCY} clients, 127.0.0.1 only, ${frameworkNames.join(" ")}`,
);
await traffic(apps, started + warmUp, counter);
const heapBefore = await settledHeap();
await traffic(apps, started + SECONDS * 1000, counter);
await Promise.all(apps.map((app) => app.close()));
const heapAfter = await settledHeap();

// The one session still alive now may be held by the var's read cache (see
// test/leaks/var-cache.test.ts); a read from elsewhere moves the cache.
const aliveBeforeFlush = (await sessions.survivors(20)).length;
session.get(undefined);
const alive = (await sessions.survivors(20)).length;
await pool.destroy();

const list = (m: Map<string, number>) => [...m].map(([k, v]) => `${k} ${v}`).join(", ");
const growth = heapAfter - heapBefore;
const leaks = alive;
const ok = crossTalk.length === 0 && unexpected.length === 0 && leaks === 0 && growth <= HEAP_BOUND;
console.log(
  `requests served      ${counts.served} in ${((Date.now() - started) / 1000).toFixed(1)} s (${list(byFramework)})`,
);
console.log(`  by route           ${list(byRoute)}`);
console.log(
  `  failing handlers   ${counts.failed} (answered 500 by each framework's error handler)`,
);
console.log(`  aborted mid-body   ${counts.aborted}`);
console.log(`worker jobs          ${counts.workerJobs}`);
console.log(`log lines checked    ${counts.logLines}`);
console.log(`cross-talk found     ${crossTalk.length}`);
console.log(`unexpected errors    ${unexpected.length}`);
console.log(
  `stale sockets        ${staleSocketRetries.count} (keep-alive sockets the server closed as a request went out; sent again)`,
);
console.log(
  `leaks found          ${leaks} (sessions tracked ${sessions.tracked}; alive after gc ${aliveBeforeFlush} before the read-cache flush, ${alive} after)`,
);
console.log(`heap before          ${mb(heapBefore)} (after warm-up, connections closed, gc)`);
console.log(`heap after           ${mb(heapAfter)} (after the run, connections closed, gc)`);
console.log(
  `heap growth          ${growth >= 0 ? "+" : ""}${mb(growth)} (bound ${mb(HEAP_BOUND)})`,
);
console.log(`result               ${ok ? "PASS" : "FAIL"}`);
process.exitCode = ok ? 0 : 1;
