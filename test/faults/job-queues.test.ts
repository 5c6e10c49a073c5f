/**
 * In-process job queues, concurrency limiters and schedulers under a
 * node:http service: 120 requests at once, each adding one job. Which
 * Context does a job run in, and where do its sets go?
 *
 * - p-limit and p-queue call a job from a promise callback made, or a scope
 *   bound, at the add: the job runs in the adding request's Context itself,
 *   not a copy, so its sets land in the request.
 * - fastq, async.queue, bottleneck, an EventEmitter queue and a setInterval
 *   worker call a queued job from whatever code freed the slot, the previous
 *   job's continuation: a job that waited runs in the Context of the request
 *   whose job started that chain, and sees what earlier jobs set there.
 * - The fix at the add, for every queue: `bind(job)` or
 *   `copyContext().run`. `isolated(job)` copies the Context of whoever calls
 *   the job, so it keeps a job's sets in but still gives the wrong request
 *   where the queue calls from elsewhere.
 * - A scheduler (croner, node-cron, toad-scheduler, setInterval) started in
 *   a request runs every tick in that request's Context, for as long as it
 *   runs, and each tick sees what the previous one set.
 *
 * A raw AsyncLocalStorage entered with `run` in each request sees the same
 * request as the ContextVar in every job: Node decides, not this library.
 * docs/recipes.md, "Queues, limiters and schedulers", tells the user what to do.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import async from "async";
import Bottleneck from "bottleneck";
import {
  bind,
  Context,
  ContextVar,
  copyContext,
  currentTask,
  isolated,
  timeout,
} from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { Cron } from "croner";
import fastq from "fastq";
import cron from "node-cron";
import pLimit from "p-limit";
import PQueue from "p-queue";
import { AsyncTask, SimpleIntervalJob, ToadScheduler } from "toad-scheduler";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

const REQUESTS = 120;
const CONCURRENCY = 2;

type Job = () => Promise<void>;
type Enqueue = (job: Job) => Promise<void>;

/** A queue of jobs handed over as an event: the worker listener runs where `emit` is called. */
function emitterQueue(): Enqueue {
  const events = new EventEmitter();
  const waiting: Array<{ job: Job; done: () => void }> = [];
  let running = 0;
  events.on("job", async () => {
    const next = running < CONCURRENCY ? waiting.shift() : undefined;
    if (next === undefined) return;
    running++;
    await next.job();
    running--;
    next.done();
    events.emit("job");
  });
  return (job) =>
    new Promise((done) => {
      waiting.push({ job, done });
      events.emit("job");
    });
}

/** A worker loop on setInterval, started by the first add. */
function intervalWorker(): Enqueue & { stop(): void } {
  const waiting: Array<{ job: Job; done: () => void }> = [];
  let loop: NodeJS.Timeout | undefined;
  let busy = false;
  const enqueue = (job: Job) =>
    new Promise<void>((done) => {
      waiting.push({ job, done });
      loop ??= setInterval(async () => {
        if (busy) return;
        busy = true;
        for (const item of waiting.splice(0, CONCURRENCY)) {
          await item.job();
          item.done();
        }
        busy = false;
      }, 1);
    });
  return Object.assign(enqueue, { stop: () => clearInterval(loop) });
}

const queues: Record<string, () => Enqueue & { stop?(): void }> = {
  "p-limit": () => {
    const limit = pLimit(CONCURRENCY);
    return (job) => limit(job);
  },
  "p-queue": () => {
    const queue = new PQueue({ concurrency: CONCURRENCY });
    return (job) => queue.add(job);
  },
  "fastq.promise": () => {
    const queue = fastq.promise((job: Job) => job(), CONCURRENCY);
    return (job) => queue.push(job);
  },
  "async.queue": () => {
    const queue = async.queue((job: Job, callback: (error?: Error) => void) => {
      job().then(() => callback(), callback);
    }, CONCURRENCY);
    return (job) => queue.pushAsync(job);
  },
  bottleneck: () => {
    const limiter = new Bottleneck({ maxConcurrent: CONCURRENCY });
    return (job) => limiter.schedule(job);
  },
  "an EventEmitter queue": emitterQueue,
  "a setInterval worker": intervalWorker,
};

/** Queues that call the job in the Context of the add. */
const callsAtTheAdd = new Set(["p-limit", "p-queue"]);

/** How the request hands its job to the queue. */
const wrappers: Record<string, (job: Job) => Job> = {
  plain: (job) => job,
  bind: (job) => bind(job),
  "copyContext().run": (job) => {
    const context = copyContext();
    return () => context.run(job);
  },
  isolated: (job) => isolated(job),
};

/** What one request's job saw. */
interface Seen {
  own: string;
  /** requestId in the job, at its start and after its await. */
  job: string;
  afterAwait: string;
  /** The raw AsyncLocalStorage's store in the job. */
  storage: string;
  /** The job found another job's set of `touched` before making its own. */
  inherited: boolean;
  /** The request found its job's set after awaiting the job. */
  leakedBack: boolean;
}

const touched = new ContextVar<string>("touched");
const storage = new AsyncLocalStorage<string>();

/**
 * 120 requests at once through a real server; each adds one job to the same
 * queue and awaits it. Every job first waits until all 120 are added, so the
 * queue is full however slowly the requests arrive.
 */
async function through(queue: string, wrapper: string): Promise<Seen[]> {
  const enqueue = queues[queue]?.() ?? assert.fail(queue);
  const wrap = wrappers[wrapper] ?? assert.fail(wrapper);
  let added = 0;
  let addedAll = () => {};
  const allAdded = new Promise<void>((resolve) => {
    addedAll = resolve;
  });
  const server = createServer(
    withContext(async (_req, res) => {
      const own = requestId.get();
      const seen = await storage.run(own, async () => {
        await randomDelay();
        const result = { own } as Seen;
        const job: Job = async () => {
          await allAdded;
          result.job = requestId.get("<none>");
          result.storage = storage.getStore() ?? "<none>";
          result.inherited = touched.get(undefined) !== undefined;
          touched.set(`set by the job of ${own}`);
          await randomDelay(2);
          result.afterAwait = requestId.get("<none>");
        };
        const done = enqueue(wrap(job));
        if (++added === REQUESTS) addedAll();
        await done;
        result.leakedBack = touched.get(undefined) !== undefined;
        return result;
      });
      res.end(JSON.stringify(seen));
    }),
  );
  const base = await listen(server);
  const agent = keepAliveAgent();
  try {
    const replies = await Promise.all(
      Array.from({ length: REQUESTS }, (_, i) =>
        send(base, "/", { agent, headers: { "x-request-id": `${queue}-${wrapper}-${i}` } }),
      ),
    );
    return replies.map((reply) => JSON.parse(reply.body) as Seen);
  } finally {
    enqueue.stop?.();
    agent.destroy();
    await close(server);
  }
}

const wrong = (seen: Seen[]) => seen.filter((s) => s.job !== s.own);

describe("a job added to an in-process queue in a request", () => {
  for (const queue of Object.keys(queues)) {
    describe(queue, () => {
      it("plain: the job runs in the Context raw AsyncLocalStorage gives it", async () => {
        const seen = await through(queue, "plain");
        for (const s of seen) {
          assert.equal(s.storage, s.job, "the var and the storage see one request");
          assert.equal(s.afterAwait, s.job);
        }
        if (callsAtTheAdd.has(queue)) {
          // The request's own Context, not a copy: the job's set reaches the request.
          assert.deepEqual(wrong(seen), []);
          assert.equal(seen.filter((s) => s.leakedBack).length, REQUESTS);
          assert.equal(seen.filter((s) => s.inherited).length, 0);
        } else {
          // Jobs that waited run where the slot was freed: in the Context of a request
          // whose job started a chain, sharing it, and each sees what the one before set.
          const others = wrong(seen);
          assert.ok(others.length >= REQUESTS - 6, `${others.length} jobs saw another request`);
          const hosts = new Set(others.map((s) => s.job));
          assert.ok(hosts.size <= 3, `${[...hosts]} hosted the waiting jobs`);
          for (const host of hosts) assert.ok(seen.some((s) => s.own === host && s.job === host));
          assert.ok(seen.filter((s) => s.inherited).length >= REQUESTS - 6);
        }
      });

      for (const wrapper of ["bind", "copyContext().run"]) {
        it(`${wrapper} at the add: every job sees its own request, nothing else and nothing back`, async () => {
          const seen = await through(queue, wrapper);
          assert.deepEqual(wrong(seen), []);
          assert.deepEqual(
            seen.filter((s) => s.afterAwait !== s.own || s.inherited || s.leakedBack),
            [],
          );
        });
      }

      it("isolated: a copy of whoever calls the job, which is the request only where the queue calls at the add", async () => {
        const seen = await through(queue, "isolated");
        assert.deepEqual(
          seen.filter((s) => s.inherited || s.leakedBack),
          [],
        );
        if (callsAtTheAdd.has(queue)) assert.deepEqual(wrong(seen), []);
        else assert.ok(wrong(seen).length >= REQUESTS - 6);
      });
    });
  }
});

it("a fastq job added inside timeout() runs under the task whose job freed its slot, with its signal; bind(job) under its own", async () => {
  const queue = fastq.promise((job: () => Promise<[string, AbortSignal | undefined]>) => job(), 1);
  const deadline = (
    name: string,
    wrap: (job: () => Promise<[string, AbortSignal | undefined]>) => typeof job,
  ) => {
    const job = async (): Promise<[string, AbortSignal | undefined]> => {
      await sleep(1);
      return [currentTask()?.name ?? "<none>", currentTask()?.signal];
    };
    return timeout(
      5_000,
      async () => [name, currentTask()?.signal, await queue.push(wrap(job))] as const,
      { name },
    );
  };
  const plain = await Promise.all(
    Array.from({ length: 20 }, (_, i) => deadline(`plain-${i}`, (job) => job)),
  );
  assert.deepEqual(new Set(plain.map(([, , [task]]) => task)), new Set(["plain-0"]));
  assert.equal(plain.filter(([, own, [, signal]]) => signal !== own).length, 19);
  const bound = await Promise.all(
    Array.from({ length: 20 }, (_, i) => deadline(`bound-${i}`, bind)),
  );
  for (const [name, own, [task, signal]] of bound) {
    assert.equal(task, name);
    assert.equal(signal, own);
  }
});

it("async.mapLimit and async.queue call bind(asyncFn) and isolated(asyncFn) as the async functions they are, each in its own Context", async () => {
  const user = new ContextVar<string>("user");
  const worker = async (n: number) => {
    await randomDelay(2);
    return `${user.get("<unset>")}-${n}`;
  };
  const within = <T>(ms: number, work: Promise<T>) =>
    Promise.race([work, sleep(ms).then(() => assert.fail(`still waiting after ${ms} ms`))]);
  const requests = Array.from({ length: 20 }, (_, i) =>
    user.run(`user${i}`, async () => {
      const queue = async.queue(bind(worker), 2);
      return [
        await within(2_000, async.mapLimit([1, 2, 3], 2, bind(worker))),
        await within(2_000, async.mapLimit([1, 2, 3], 2, isolated(worker))),
        await within(2_000, Promise.all([queue.pushAsync<string>(1), queue.pushAsync<string>(2)])),
      ];
    }),
  );
  for (const [i, results] of (await Promise.all(requests)).entries()) {
    assert.deepEqual(results, [
      [`user${i}-1`, `user${i}-2`, `user${i}-3`],
      [`user${i}-1`, `user${i}-2`, `user${i}-3`],
      [`user${i}-1`, `user${i}-2`],
    ]);
  }
});

describe("a scheduler started in a request", () => {
  type Stop = () => void;
  const schedulers: Record<string, (tick: () => void) => Stop> = {
    croner: (tick) => {
      const job = new Cron("* * * * * *", tick);
      return () => job.stop();
    },
    "node-cron": (tick) => {
      const task = cron.schedule("* * * * * *", tick);
      return () => void task.destroy();
    },
    "toad-scheduler": (tick) => {
      const scheduler = new ToadScheduler();
      scheduler.addSimpleIntervalJob(
        new SimpleIntervalJob({ milliseconds: 100 }, new AsyncTask("tick", async () => tick())),
      );
      return () => scheduler.stop();
    },
    setInterval: (tick) => {
      const loop = setInterval(tick, 100);
      return () => clearInterval(loop);
    },
  };
  /** Where the request starts it. */
  const starts: Record<string, (start: () => Stop, tick: () => void) => Stop> = {
    "started plainly": (start) => start(),
    "started in new Context().run": (start) => new Context().run(start),
  };

  interface Ticks {
    ids: string[];
    counts: number[];
  }

  /**
   * Every scheduler, started by the first of 100 concurrent requests (the lazy
   * "start it on first use" pattern), then ticking while 20 more requests
   * arrive every 50 ms, for 2.2 s: two cron ticks at least.
   */
  async function tickAll(how: string, tickWith: (tick: () => void) => () => void) {
    const seen = new Map<string, Ticks>();
    const stops: Stop[] = [];
    let started = false;
    const server = createServer(
      withContext((_req, res) => {
        if (!started) {
          started = true;
          for (const [name, start] of Object.entries(schedulers)) {
            const record: Ticks = { ids: [], counts: [] };
            seen.set(name, record);
            const ticks = new ContextVar<number>(`${name} ticks`, { default: 0 });
            const tick = tickWith(() => {
              record.ids.push(requestId.get("<none>"));
              record.counts.push(ticks.get());
              ticks.set(ticks.get() + 1);
            });
            stops.push(starts[how]?.(() => start(tick), tick) ?? assert.fail(how));
          }
        }
        res.end(requestId.get());
      }),
    );
    const base = await listen(server);
    const agent = keepAliveAgent();
    let sent = 0;
    const burst = (n: number) =>
      Promise.all(
        Array.from({ length: n }, () =>
          send(base, "/", { agent, headers: { "x-request-id": `req-${sent++}` } }),
        ),
      );
    try {
      await burst(100);
      const until = Date.now() + 2_200;
      while (Date.now() < until) {
        await burst(20);
        await sleep(50);
      }
    } finally {
      for (const stop of stops) stop();
      agent.destroy();
      await close(server);
    }
    return seen;
  }

  it("plainly: every tick runs in that request's Context while later requests come and go, and sees the previous tick's set", async () => {
    const seen = await tickAll("started plainly", (tick) => tick);
    for (const [name, { ids, counts }] of seen) {
      assert.ok(ids.length >= 2, `${name} ticked ${ids.length} times`);
      assert.deepEqual(new Set(ids), new Set(["req-0"]), name);
      assert.deepEqual(
        counts,
        counts.map((_, i) => i),
        name,
      );
    }
  });

  it("in new Context().run: no request's values, but the ticks share that one Context; bind(tick, new Context()) gives each tick an empty one", async () => {
    const shared = await tickAll("started in new Context().run", (tick) => tick);
    const fresh = await tickAll("started plainly", (tick) => bind(tick, new Context()));
    for (const [name, { ids, counts }] of shared) {
      assert.ok(ids.length >= 2, name);
      assert.deepEqual(new Set(ids), new Set(["<none>"]), name);
      assert.deepEqual(
        counts,
        counts.map((_, i) => i),
        name,
      );
    }
    for (const [name, { ids, counts }] of fresh) {
      assert.ok(ids.length >= 2, name);
      assert.deepEqual(new Set(ids), new Set(["<none>"]), name);
      assert.deepEqual(new Set(counts), new Set([0]), name);
    }
  });
});
