/**
 * contextPool and toThread on real piscina threads: each job runs in a copy
 * of its caller's Context, whatever thread it lands on and however jobs
 * interleave on one thread; sets in a job never come back or reach the next
 * job. Workers load the same source through tsx; see test/helpers/threads.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { EventEmitter, getEventListeners } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { inspect, promisify } from "node:util";
import { isProxy } from "node:util/types";
import { runInNewContext } from "node:vm";
import { Context, ContextVar, gather, taskGroup } from "contextvars";
import {
  type ContextPool,
  contextPool,
  TransferError,
  toThread,
  useThreadPool,
} from "contextvars/worker";
import { Piscina } from "piscina";
import { itFromEveryState } from "../helpers/starting-states.ts";
import { fixture, workerExecArgv } from "../helpers/threads.ts";
import type { JobReply } from "./fixtures/job.ts";
import type { NestedReply } from "./fixtures/nested-job.ts";

const requestId = new ContextVar<string>("requestId");
const user = new ContextVar<string>("user");
const secret = new ContextVar<string>("secret");

type Job = { i: number; delay: number };

/** Runs a fixture program in a child process, after a preload fixture; resolves with the JSON it prints. */
async function runProgram(preload: string, program: string): Promise<unknown> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      ...workerExecArgv,
      "--import",
      fileURLToPath(fixture(preload)),
      fileURLToPath(fixture(program)),
    ],
    { cwd: fileURLToPath(new URL("../..", import.meta.url)) },
  );
  return JSON.parse(stdout);
}
let pool: ContextPool<Job, JobReply>;

describe("contextPool", () => {
  before(() => {
    pool = contextPool(
      new Piscina({
        filename: fixture("job.ts").href,
        execArgv: workerExecArgv,
        minThreads: 4,
        maxThreads: 4,
        concurrentTasksPerWorker: 4,
      }),
    );
  });
  after(() => pool.destroy());

  it("50 concurrent jobs from 50 different Contexts each see their own values", async () => {
    const replies = await gather(
      ...Array.from({ length: 50 }, (_, i) => () => {
        requestId.set(`r-${i}`);
        user.set(`user-${i % 7}`);
        return pool.run({ i, delay: (i * 7) % 13 });
      }),
    );
    for (const [i, reply] of replies.entries()) {
      assert.deepEqual(
        { i: reply.i, requestId: reply.requestId, user: reply.user },
        { i, requestId: `r-${i}`, user: `user-${i % 7}` },
      );
    }
    // More than one thread ran them, and threads ran several jobs each.
    assert.ok(new Set(replies.map((r) => r.threadId)).size > 1);
  });

  itFromEveryState("the job sees the caller's Context; its sets stay in the job", async () => {
    requestId.set("caller");
    const first = await pool.run({ i: 1, delay: 0 });
    assert.equal(first.requestId, "caller");
    assert.equal(requestId.get(), "caller");
    // The job set requestId to "dirty after 1"; later jobs on any thread do not see it.
    const again = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => pool.run({ i, delay: 1 })));
    for (const reply of again) assert.equal(reply.requestId, "caller");
  });

  it("a job from a Context with no values sees none", async () => {
    const reply = await pool.run({ i: 0, delay: 0 });
    assert.equal(reply.user, "<unset>");
  });

  it("a job's sets never reach a later job on its thread, also one whose caller sends no value for that var", async () => {
    // From Contexts without requestId, so that no value a caller sends can hide a
    // leftover: each of the first jobs sets requestId to `dirty after <i>` in its thread.
    const batch = () =>
      new Context().run(() =>
        Promise.all(Array.from({ length: 8 }, (_, i) => pool.run({ i, delay: 0 }))),
      );
    const dirty = await batch();
    const later = await batch();
    const dirtied = new Set(dirty.map((reply) => reply.threadId));
    assert.ok(
      later.some((reply) => dirtied.has(reply.threadId)),
      "a later job ran on a thread where an earlier job had set",
    );
    assert.deepEqual(
      later.map((reply) => reply.requestId),
      later.map(() => "<unset>"),
    );
  });

  it("a job's Context is a copy of its thread's root Context: a value set there at load is seen, and the caller's value of that name wins", async () => {
    const region = new ContextVar<string>("region");
    const options = { name: "regionSeen" };
    assert.equal(await pool.run({ i: 0, delay: 0 }, options), "set at load");
    assert.equal(await region.run("eu", () => pool.run({ i: 0, delay: 0 }, options)), "eu");
  });

  it("a var created { transfer: false } in the worker never receives", async () => {
    const reply = await secret.run("s3cr3t", () => pool.run({ i: 0, delay: 0 }));
    assert.equal(reply.secret, "<unset>");
  });

  it("a var the job creates inside its function receives nothing; the module's var of that name does", async () => {
    const seen = await user.run("u-late", () =>
      pool.run({ i: 0, delay: 0 }, { name: "createdInside" }),
    );
    assert.deepEqual(seen, { inside: "<unset>", atTop: "u-late" });
  });

  it("every live var of the worker with the value's name gets it, however many", async () => {
    const seen = await user.run("u-all", () => pool.run({ i: 0, delay: 0 }, { name: "allUsers" }));
    assert.deepEqual(
      seen,
      Array.from({ length: 10 }, () => "u-all"),
    );
  });

  it("filename and name per run, as with piscina; a URL filename works", async () => {
    const reply = await requestId.run("r-named", () =>
      pool.run({ i: 0, delay: 0 }, { filename: fixture("job.ts"), name: "default" }),
    );
    assert.equal(reply.requestId, "r-named");
    // null, as piscina takes it: the pool's own filename and name.
    const defaults = await requestId.run("r-null", () =>
      pool.run({ i: 0, delay: 0 }, { filename: null, name: null }),
    );
    assert.equal(defaults.requestId, "r-null");
    await assert.rejects(
      pool.run({ i: 0, delay: 0 }, { filename: "relative/job.ts" }),
      new TypeError(
        'Expected `options.filename` to be a file: URL or an absolute path, got `"relative/job.ts"` (string)',
      ),
    );
    // A URL of another scheme was passed on, and its import failed in the thread.
    await assert.rejects(
      pool.run({ i: 0, delay: 0 }, { filename: new URL("https://example.com/job.js") }),
      new TypeError(
        "Expected `options.filename` to be a file: URL or an absolute path, not a URL with scheme https:, got `[object URL]` (object)",
      ),
    );
    // Named, and told where the name comes from: the run's options.
    await assert.rejects(pool.run({ i: 0, delay: 0 }, { name: "missing" }), (error: Error) =>
      error.message.endsWith(
        "job.ts has no function export named `missing`; pass the name of a function it exports, pool.run(task, { name }), or export one named `missing`",
      ),
    );
  });

  it("toThread calls an export with arguments, in a copy of the caller's Context", async () => {
    useThreadPool(pool);
    try {
      const results = await gather(
        ...[1, 2, 3].map((n) => () => {
          requestId.set(`t-${n}`);
          return toThread<{ sum: number; requestId: string }>(fixture("job.ts"), "add", n, 10);
        }),
      );
      assert.deepEqual(results, [
        { sum: 11, requestId: "t-1" },
        { sum: 12, requestId: "t-2" },
        { sum: 13, requestId: "t-3" },
      ]);
      await assert.rejects(
        toThread(new URL("data:text/javascript,export const add = () => 0;"), "add"),
        new TypeError(
          "Expected `moduleUrl` to be a file: URL or an absolute path, not a URL with scheme data:, got `[object URL]` (object)",
        ),
      );
      // toThread's own argument is the name to fix.
      await assert.rejects(toThread(fixture("job.ts"), "sub", 1), {
        name: "TypeError",
        message: `${fixture("job.ts").href} has no function export named \`sub\`; pass toThread the name of a function it exports, toThread(moduleUrl, exportName), or export one named \`sub\``,
      });
      await assert.rejects(
        toThread("job.ts", "add"),
        new TypeError(
          'Expected `moduleUrl` to be a file: URL or an absolute path, got `"job.ts"` (string)',
        ),
      );
    } finally {
      useThreadPool(undefined);
    }
  });

  // What a command-line tool meets on Ctrl-C (docs/recipes.md, "Command-line
  // tools and batch jobs"): asyncio's to_thread leaves the thread running
  // but a cancelled task stops waiting for it; here the child's function
  // awaits the call, and a TaskGroup waits for its children's functions.
  it("toThread takes no signal: a cancelled TaskGroup child awaiting it holds the group until the call returns; pool.run given the child's signal does not", async () => {
    useThreadPool(pool);
    try {
      const outer = new AbortController();
      const order: string[] = [];
      const group = taskGroup(
        async (g) => {
          g.createTask(async () => {
            await toThread(fixture("job.ts"), "default", { i: 1, delay: 1_000 });
            order.push("toThread returned");
          });
          g.createTask(async (signal) => {
            try {
              await pool.run({ i: 2, delay: 60_000 }, { signal });
            } finally {
              order.push("pool.run settled");
            }
          });
        },
        { signal: outer.signal },
      );
      outer.abort(new Error("interrupted"));
      await assert.rejects(group, { message: "interrupted" });
      assert.deepEqual(order, ["pool.run settled", "toThread returned"]);
    } finally {
      useThreadPool(undefined);
    }
  });

  it('toThread honours the pool\'s onUncloneable: "skip" leaves the value behind', async () => {
    const handle = new ContextVar<unknown>("handle");
    const skipping = contextPool(
      new Piscina({ filename: fixture("job.ts").href, execArgv: workerExecArgv, maxThreads: 1 }),
      { onUncloneable: "skip" },
    );
    try {
      await requestId.run("kept", () =>
        handle.run(
          () => "a function cannot cross",
          async () => {
            useThreadPool(pool);
            await assert.rejects(
              toThread(fixture("job.ts"), "add", 1, 2),
              // The advice names where the option goes: toThread itself takes none.
              (e) =>
                e instanceof TransferError &&
                /ContextVar\("handle"\)/.test(e.message) &&
                /pass onUncloneable: "skip" to new Worker or contextPool \(for toThread, the pool given to useThreadPool\)$/.test(
                  e.message,
                ),
            );
            useThreadPool(skipping);
            assert.deepEqual(await toThread(fixture("job.ts"), "add", 1, 2), {
              sum: 3,
              requestId: "kept",
            });
            // Also a value only the post finds uncloneable (a Proxy looks plain to the check).
            const proxied = new ContextVar<object>("proxied");
            assert.deepEqual(
              await proxied.run(new Proxy({}, {}), () => toThread(fixture("job.ts"), "add", 2, 2)),
              { sum: 4, requestId: "kept" },
            );
          },
        ),
      );
    } finally {
      useThreadPool(undefined);
      await skipping.destroy();
    }
  });

  it("toThread takes the caller's values when called: a set right after the call is not seen", async () => {
    useThreadPool(pool);
    try {
      const reply = await requestId.run("at the call", () => {
        const pending = toThread<{ sum: number; requestId: string }>(
          fixture("job.ts"),
          "add",
          1,
          1,
        );
        requestId.set("after the call");
        return pending;
      });
      assert.equal(reply.requestId, "at the call");
    } finally {
      useThreadPool(undefined);
    }
  });

  it("toThread with no pool given: one default pool, made at the first call and kept; useThreadPool while it is made wins; the Context is taken at the call", async () => {
    // In a child process: the default pool's workers must load TypeScript
    // (workers inherit the process's execArgv), and it is never closed.
    assert.deepEqual(await runProgram("piscina-counted.mjs", "default-pool.ts"), {
      first: { sum: 2, requestId: "<unset>" },
      second: { sum: 4, requestId: "<unset>" },
      defaultPool: [
        { sum: 2, requestId: "default" },
        { sum: 3, requestId: "default" },
      ],
      atCall: { sum: 0, requestId: "at the call" },
      ranOnMine: 1,
      // The pool made for `first` is the one used after useThreadPool(undefined).
      defaultPoolsMade: 1,
    });
  });

  it("a default pool that failed to be made is made at the next toThread", async () => {
    // The preload makes the first import of piscina fail, as if not installed yet.
    const { first, second } = (await runProgram(
      "piscina-missing-once.mjs",
      "default-pool-retry.ts",
    )) as {
      first: string;
      second: string;
    };
    assert.match(first, /needs the optional peer dependency piscina/);
    assert.equal(second, "4");
  });

  it("`await using` closes the pool at scope exit, once its queued jobs are done", async () => {
    const piscina = new Piscina({
      filename: fixture("job.ts").href,
      execArgv: workerExecArgv,
      maxThreads: 1,
      // close() terminates the jobs still running after this long: under load
      // (a loaded 2-core machine), 1 s was not enough. piscina 4's close() leaves
      // a timer of this length running, which keeps the process alive after the
      // tests (piscina 5 unrefs it), so not longer.
      closeTimeout: 5000,
    });
    // The thread is started before the scope, so close() waits for the jobs only.
    await piscina.run({ i: 0, delay: 0 });
    let closed = false;
    piscina.once("close", () => {
      closed = true;
    });
    let replies: Promise<JobReply[]>;
    {
      await using scoped = contextPool<Job, JobReply>(piscina);
      replies = requestId.run("scoped", () =>
        Promise.all([1, 2, 3].map((i) => scoped.run({ i, delay: 5 }))),
      );
    }
    // close(), not destroy(): the jobs queued before the scope ended all ran.
    assert.deepEqual(
      (await replies).map((r) => r.requestId),
      ["scoped", "scoped", "scoped"],
    );
    assert.equal(closed, true, "closed before the scope's exit returned");
    assert.equal(piscina.threads.length, 0);
  });

  it("options.onUncloneable is read once: the value checked is the value kept", () => {
    let reads = 0;
    const options = {
      get onUncloneable() {
        return reads++ === 0 ? "skip" : "neither";
      },
    };
    const piscina = { run: async () => undefined, options: { filename: null, name: "default" } };
    contextPool(piscina as unknown as Piscina, options as { onUncloneable?: "skip" });
    assert.equal(reads, 1);
  });

  it("a clone failure thrown from another realm (jest's vm contexts) is still the post's: a TransferError, or with \"skip\" a run without the value", async () => {
    // Under jest this package runs in a vm context, while postMessage throws
    // its DataCloneError (or, nested too deep, RangeError) from Node's own realm.
    const foreign = runInNewContext(`({
      dataClone: () => Object.assign(new Error("#<Object> could not be cloned."), { name: "DataCloneError" }),
      range: () => new RangeError("Maximum call stack size exceeded"),
    })`) as { dataClone: () => Error; range: () => Error };
    for (const make of [foreign.dataClone, foreign.range]) {
      const sent: string[][] = [];
      const piscina = {
        run: async (message: { values: [string, unknown][] }) => {
          sent.push(message.values.map(([name]) => name));
          if (message.values.some(([, value]) => isProxy(value))) throw make();
          return "done";
        },
        options: { filename: "/jobs/job.js", name: "default" },
      };
      const proxied = new ContextVar<object>("proxied");
      await proxied.run(new Proxy({}, {}), async () => {
        await assert.rejects(
          contextPool(piscina as unknown as Piscina).run(1),
          (e) => e instanceof TransferError && /ContextVar\("proxied"\)/.test(e.message),
        );
        const skipping = contextPool(piscina as unknown as Piscina, { onUncloneable: "skip" });
        assert.equal(await skipping.run(2), "done");
      });
      // Offered the first time, left behind the second.
      assert.deepEqual(
        sent.map((names) => names.includes("proxied")),
        [true, true, false],
      );
    }
  });

  it("a run with no filename, on a Piscina made without one, names the Piscina's option", async () => {
    const piscina = { run: async () => "done", options: { filename: null, name: "default" } };
    await assert.rejects(
      contextPool(piscina as unknown as Piscina).run(1),
      new TypeError(
        "Expected `piscina.options.filename` to be a file: URL or an absolute path, got `null` (null)",
      ),
    );
  });

  it("a Windows drive path is an absolute path; a pool whose options name no export runs `default`", async () => {
    const sent: unknown[] = [];
    const piscina = {
      run: async (payload: { filename: string; name: string }) => {
        sent.push([payload.filename, payload.name]);
        return "done";
      },
      options: { filename: "C:\\jobs\\job.js", name: undefined },
    };
    const pool = contextPool(piscina as unknown as Piscina);
    assert.equal(await pool.run(1), "done");
    assert.equal(await pool.run(2, { filename: "D:/jobs/other.mjs", name: "fib" }), "done");
    assert.deepEqual(sent, [
      ["C:\\jobs\\job.js", "default"],
      ["D:/jobs/other.mjs", "fib"],
    ]);
    // Relative to a drive's current folder: not absolute.
    await assert.rejects(
      pool.run(3, { filename: "C:job.js" }),
      new TypeError(
        'Expected `options.filename` to be a file: URL or an absolute path, got `"C:job.js"` (string)',
      ),
    );
  });

  it("rejects what is not a pool", () => {
    assert.throws(
      () => contextPool({} as Piscina),
      new TypeError("Expected `piscina` to be a Piscina pool, got `[object Object]` (object)"),
    );
    // A ContextPool, or a pool-like with run() but no options: each job failed with
    // "Cannot read properties of undefined (reading 'name')".
    assert.throws(
      () => contextPool(pool as unknown as Piscina),
      new TypeError(
        "Expected `piscina` to be a Piscina pool, not one already wrapped (use the ContextPool as it is, or wrap its .piscina), got `[object ContextPool]` (object)",
      ),
    );
    assert.throws(
      () => contextPool({ run: async () => undefined } as unknown as Piscina),
      new TypeError("Expected `piscina` to be a Piscina pool, got `[object Object]` (object)"),
    );
    // Options but no run(): each job failed with "piscina.run is not a function".
    assert.throws(
      () => contextPool({ options: { filename: null, name: "default" } } as unknown as Piscina),
      new TypeError("Expected `piscina` to be a Piscina pool, got `[object Object]` (object)"),
    );
    // An option of contextPool is named as one, as createTask's and new Worker's are.
    assert.throws(
      () => contextPool(pool.piscina, { onUncloneable: "drop" as "skip" }),
      new TypeError(
        'Expected `options.onUncloneable` to be "throw" or "skip", got `"drop"` (string)',
      ),
    );
    assert.throws(
      () => useThreadPool({} as ContextPool),
      new TypeError(
        "Expected `pool` to be a ContextPool (from contextPool(piscina)), got `[object Object]` (object)",
      ),
    );
    assert.match(String(pool), /^<ContextPool filename=".*fixtures\/job\.ts">$/);
    assert.equal(inspect(pool), String(pool));
    assert.equal(Object.prototype.toString.call(pool), "[object ContextPool]");
  });
});

describe("contextPool: piscina's options pass through", () => {
  let plain: ContextPool<unknown, unknown>;
  before(() => {
    plain = contextPool(
      new Piscina({ filename: fixture("job.ts").href, execArgv: workerExecArgv, maxThreads: 1 }),
    );
  });
  after(() => plain.destroy());

  it("an aborted signal rejects the run with an AbortError", async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(plain.run(1, { name: "double", signal: controller.signal }), {
      name: "AbortError",
    });
  });

  it("an EventEmitter signal, which piscina also takes, is passed on: an aborted one rejects the run with an AbortError", async () => {
    const emitter = Object.assign(new EventEmitter(), { aborted: true });
    await assert.rejects(
      plain.run(1, { name: "double", signal: emitter as unknown as AbortSignal }),
      { name: "AbortError" },
    );
  });

  it("a transferList transfers the buffer: the caller's copy is detached", async () => {
    const buffer = new ArrayBuffer(8);
    assert.equal(await plain.run(buffer, { name: "byteLength", transferList: [buffer] }), 8);
    assert.equal(buffer.byteLength, 0);
  });

  it("Piscina.move(buffer) reaches the job as the buffer, transferred", async () => {
    const buffer = new ArrayBuffer(8);
    assert.equal(await plain.run(Piscina.move(buffer), { name: "byteLength" }), 8);
    assert.equal(buffer.byteLength, 0);
  });

  it("Piscina.move(buffer) with a transferList transfers both, as piscina does", async () => {
    const moved = new ArrayBuffer(8);
    const listed = new ArrayBuffer(4);
    assert.equal(
      await plain.run(Piscina.move(moved), { name: "byteLength", transferList: [listed] }),
      8,
    );
    assert.deepEqual([moved.byteLength, listed.byteLength], [0, 0]);
  });

  it("Piscina.move of a Transferable whose transferable is a list transfers every item, as piscina does", async () => {
    // piscina's Transferable interface: the transferable is one object or a list of them.
    const head = new Uint8Array(5);
    const tail = new Uint8Array(10);
    const both = {
      get [Piscina.transferableSymbol]() {
        return [head.buffer, tail.buffer];
      },
      get [Piscina.valueSymbol]() {
        return head.buffer;
      },
    };
    // piscina's types know only its own unique symbols, which its static getters do not give.
    const moved = Piscina.move(both as unknown as Parameters<typeof Piscina.move>[0]);
    assert.equal(await plain.run(moved, { name: "byteLength" }), 5);
    assert.deepEqual([head.byteLength, tail.byteLength], [0, 0]);
  });

  it("a Transferable not given to Piscina.move is cloned whole, as piscina does: the caller keeps its buffer", async () => {
    const bytes = new Uint8Array(4);
    const image = {
      bytes,
      // A flag of its own under a symbol is not the mark Piscina.move leaves.
      [Symbol("decoded")]: true,
      get [Piscina.transferableSymbol]() {
        return bytes.buffer;
      },
      get [Piscina.valueSymbol]() {
        return bytes.buffer;
      },
    };
    const filename = fixture("job.ts").href;
    assert.deepEqual(await plain.piscina.run(image, { filename, name: "keysOf" }), ["bytes"]);
    assert.deepEqual(await plain.run(image, { name: "keysOf" }), ["bytes"]);
    assert.equal(bytes.byteLength, 4);
  });

  it("the pool's own name option picks the export", async () => {
    const named = contextPool(
      new Piscina({
        filename: fixture("job.ts").href,
        name: "double",
        execArgv: workerExecArgv,
        maxThreads: 1,
      }),
    );
    try {
      assert.equal(await named.run(21), 42);
    } finally {
      await named.destroy();
    }
  });

  it("a module that failed to import is imported again on the next run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "contextvars-"));
    const file = join(dir, "late.mjs");
    try {
      await assert.rejects(plain.run(1, { filename: file, name: "next" }));
      writeFileSync(file, "export function next(n) { return n + 1; }\n");
      assert.equal(await plain.run(1, { filename: file, name: "next" }), 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an absolute path is a path, # and % in it included", async () => {
    const dir = mkdtempSync(join(tmpdir(), "contextvars-"));
    const file = join(dir, "job #1 at 100%.mjs");
    try {
      writeFileSync(file, "export function next(n) { return n + 1; }\n");
      assert.equal(await plain.run(1, { filename: file, name: "next" }), 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a CommonJS module whose exports arrive only as default is called by name", async () => {
    assert.equal(
      await plain.run(5, { filename: fixture("exports-as-default.cjs"), name: "triple" }),
      15,
    );
  });

  it("a CommonJS module's exports: a user's prototype methods count, Object's and Function's built-ins do not", async () => {
    const refused = async (file: URL, name: string) =>
      assert.rejects(plain.run(5, { filename: file, name }), {
        name: "TypeError",
        message: `${file.href} has no function export named \`${name}\`; pass the name of a function it exports, pool.run(task, { name }), or export one named \`${name}\``,
      });
    const literal = fixture("exports-as-default.cjs");
    for (const name of ["constructor", "toString", "hasOwnProperty"]) await refused(literal, name);
    const instance = fixture("exports-object.cjs");
    assert.equal(await plain.run(5, { filename: instance, name: "double" }), 10);
    for (const name of ["toString", "valueOf"]) await refused(instance, name);
    const fn = fixture("exports-function.cjs");
    assert.equal(await plain.run(5, { filename: fn, name: "default" }), 6);
    assert.equal(await plain.run(5, { filename: fn, name: "half" }), 2.5);
    for (const name of ["call", "bind", "constructor"]) await refused(fn, name);
  });
});

describe("contextPool: jobs that fail", () => {
  let failing: ContextPool<unknown, unknown>;
  const newPool = (options: { resourceLimits?: { maxOldGenerationSizeMb: number } } = {}) =>
    contextPool(
      new Piscina({
        filename: fixture("failing.ts").href,
        execArgv: workerExecArgv,
        maxThreads: 1,
        ...options,
      }),
    );
  before(() => {
    failing = newPool();
  });
  after(() => failing.destroy());

  it("a job that throws rejects with its error; it ran in the caller's Context, which is unchanged", async () => {
    await requestId.run("r-throws", async () => {
      await assert.rejects(failing.run(undefined, { name: "fail" }), {
        name: "TypeError",
        message: "failed in r-throws",
      });
      assert.equal(requestId.get(), "r-throws");
      useThreadPool(failing);
      try {
        await assert.rejects(toThread(fixture("failing.ts"), "fail"), {
          name: "TypeError",
          message: "failed in r-throws",
        });
      } finally {
        useThreadPool(undefined);
      }
      assert.equal(await failing.run(undefined, { name: "seen" }), "r-throws");
    });
  });

  it("a job that throws a RangeError after a var's buffer went elsewhere while it ran rejects with that error, and runs once", async () => {
    // The values were cloned when the job was posted; a clone of them fails
    // only later, so the failure is the job's own, with "skip" too.
    const body = new ContextVar<ArrayBuffer>("body");
    const skipping = contextPool(failing.piscina, { onUncloneable: "skip" });
    for (const pool of [failing, skipping]) {
      const bytes = new ArrayBuffer(8);
      const shared = new SharedArrayBuffer(8);
      const state = new Int32Array(shared);
      await requestId.run("r-elsewhere", async () => {
        const job = body.run(bytes, () => pool.run(shared, { name: "failWhenTold" }));
        while (Atomics.load(state, 0) !== 1) await new Promise((resolve) => setImmediate(resolve));
        structuredClone(bytes, { transfer: [bytes] }); // sent to another thread meanwhile
        Atomics.store(state, 0, 2);
        Atomics.notify(state, 0);
        await assert.rejects(job, { name: "RangeError", message: "told to fail in r-elsewhere" });
      });
      assert.equal(Atomics.load(state, 1), 1);
    }
  });

  it("a job that throws a RangeError after a var's buffer went with it in the transferList rejects with that error, and runs once", async () => {
    // The var's buffer is detached once the job is posted: a clone of it fails
    // now, but the job got its values, so the failure is the job's own.
    const body = new ContextVar<ArrayBuffer>("body");
    const skipping = contextPool(failing.piscina, { onUncloneable: "skip" });
    for (const pool of [failing, skipping]) {
      const bytes = new ArrayBuffer(8);
      await requestId.run("r-range", () =>
        body.run(bytes, () =>
          assert.rejects(pool.run(bytes, { name: "rejectBytes", transferList: [bytes] }), {
            name: "RangeError",
            // Run once: a second run would have been given the detached buffer.
            message: "rejected 8 bytes in r-range",
          }),
        ),
      );
    }
  });

  it("a job's error comes back as a clone: a class of the user's arrives as an Error with its message, stack and cause, without its name or own fields; an AggregateError without its errors", async () => {
    await requestId.run("r-class", async () => {
      const error = await failing.run(undefined, { name: "failValidation" }).then(
        () => assert.fail("the job resolved"),
        (rejection: unknown) => rejection,
      );
      assert.ok(error instanceof Error);
      assert.equal(error.constructor, Error);
      assert.equal(error.name, "Error");
      assert.equal(error.message, "invalid in r-class");
      assert.match(error.stack ?? "", /^ValidationError: invalid in r-class\n/);
      assert.equal((error as { code?: unknown }).code, undefined);
      // Bun's clone drops an Error's cause altogether.
      if (error.cause !== undefined) {
        assert.ok(error.cause instanceof RangeError);
        assert.equal(error.cause.message, "row 3");
      }
      const aggregate = await failing.run(undefined, { name: "failAggregate" }).then(
        () => assert.fail("the job resolved"),
        (rejection: unknown) => rejection,
      );
      assert.equal((aggregate as Error).constructor, Error);
      assert.equal((aggregate as Error).message, "two failed");
      assert.equal((aggregate as { errors?: unknown }).errors, undefined);
    });
  });

  it("a job that throws null, or rejects with it, rejects with a TypeError naming the export, where piscina reads a null error as a result", async () => {
    const file = fileURLToPath(fixture("failing.ts"));
    await requestId.run("r-null", async () => {
      // rejectNull's promise, and a thenable that is no Promise, which piscina awaits alike.
      for (const name of ["throwNull", "rejectNull", "thenableNull"]) {
        await assert.rejects(
          failing.run(undefined, { name }),
          new TypeError(
            `\`${name}\` of ${file} threw null, which piscina would resolve the job with; throw an Error instead`,
          ),
        );
        assert.equal(requestId.get(), "r-null");
      }
      useThreadPool(failing);
      try {
        await assert.rejects(toThread(fixture("failing.ts"), "rejectNull"), TypeError);
      } finally {
        useThreadPool(undefined);
      }
      assert.equal(await failing.run(undefined, { name: "seen" }), "r-null");
    });
  });

  it("a job that ends its thread (process.exit) rejects, and the next job's new thread receives values", async () => {
    await requestId.run("r-exits", async () => {
      await assert.rejects(failing.run(undefined, { name: "exit" }), {
        message: "worker exited with code: 3",
      });
      assert.equal(requestId.get(), "r-exits");
      assert.equal(await failing.run(undefined, { name: "seen" }), "r-exits");
    });
  });

  it("a job over piscina's resourceLimits rejects with ERR_WORKER_OUT_OF_MEMORY, and the next job's new thread receives values", async () => {
    const limited = newPool({ resourceLimits: { maxOldGenerationSizeMb: 16 } });
    try {
      await requestId.run("r-heap", async () => {
        await assert.rejects(limited.run(undefined, { name: "exhaust" }), {
          code: "ERR_WORKER_OUT_OF_MEMORY",
        });
        assert.equal(requestId.get(), "r-heap");
        assert.equal(await limited.run(undefined, { name: "seen" }), "r-heap");
      });
    } finally {
      await limited.destroy();
    }
  });

  it("a signal aborted during the job rejects it with an AbortError; one aborted after has no effect", async () => {
    await requestId.run("r-aborts", async () => {
      const controller = new AbortController();
      const running = failing.run(10_000, { name: "wait", signal: controller.signal });
      // Aborted once the job has surely started (its thread is busy with it).
      setTimeout(() => controller.abort(), 200);
      await assert.rejects(running, { name: "AbortError" });
      assert.equal(requestId.get(), "r-aborts");
      const late = new AbortController();
      assert.equal(await failing.run(0, { name: "wait", signal: late.signal }), "r-aborts");
      late.abort();
      assert.equal(await failing.run(undefined, { name: "seen" }), "r-aborts");
    });
  });

  it("a job aborted while it runs is given no signal: its thread is ended, and the next job runs on a new one", async () => {
    const before = await failing.run(undefined, { name: "thread" });
    const shared = new SharedArrayBuffer(8);
    const state = new Int32Array(shared);
    const controller = new AbortController();
    const running = failing.run(shared, { name: "failWhenTold", signal: controller.signal });
    while (Atomics.load(state, 0) !== 1) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    await assert.rejects(running, { name: "AbortError" });
    assert.notEqual(await failing.run(undefined, { name: "thread" }), before);
    assert.equal(Atomics.load(state, 1), 1);
  });

  it("one signal handed to many jobs gets one abort listener (no MaxListenersExceededWarning); aborted, it rejects each with piscina's AbortError, caused by its reason", async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    try {
      await requestId.run("r-fan-out", async () => {
        const finished = new AbortController();
        const quick = Array.from({ length: 12 }, () =>
          failing.run(0, { name: "wait", signal: finished.signal }),
        );
        assert.equal(getEventListeners(finished.signal, "abort").length, 1);
        assert.deepEqual(await Promise.all(quick), Array(12).fill("r-fan-out"));
        assert.equal(getEventListeners(finished.signal, "abort").length, 0);

        const controller = new AbortController();
        const jobs = Array.from({ length: 12 }, () =>
          failing.run(10_000, { name: "wait", signal: controller.signal }),
        );
        assert.equal(getEventListeners(controller.signal, "abort").length, 1);
        const reason = new Error("client went away");
        controller.abort(reason);
        for (const job of jobs) {
          await assert.rejects(job, (e: Error) => e.name === "AbortError" && e.cause === reason);
        }
        assert.equal(requestId.get(), "r-fan-out");
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings, []);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("destroy() rejects the running and the queued jobs; a later run starts a thread again", async () => {
    const doomed = newPool();
    try {
      await requestId.run("r-destroyed", async () => {
        const pending = [1, 2, 3].map((i) => doomed.run(10_000 + i, { name: "wait" }));
        const destroyed = doomed.destroy();
        for (const outcome of await Promise.allSettled(pending)) {
          assert.equal(outcome.status, "rejected");
        }
        await destroyed;
        assert.equal(requestId.get(), "r-destroyed");
        // As with piscina, a destroyed pool is not spent: it starts threads for new jobs.
        assert.equal(await doomed.run(undefined, { name: "seen" }), "r-destroyed");
      });
    } finally {
      await doomed.destroy();
    }
  });

  it("close({ force: true }) goes to piscina: the queued jobs reject with an AbortError, the running one finishes", async () => {
    const closing = newPool();
    try {
      await requestId.run("r-forced", async () => {
        // The thread is started first, so the next job runs at once and the one after it queues.
        assert.equal(await closing.run(undefined, { name: "seen" }), "r-forced");
        const running = closing.run(300, { name: "wait" });
        const queued = assert.rejects(closing.run(0, { name: "wait" }), { name: "AbortError" });
        await closing.close({ force: true });
        assert.equal(await running, "r-forced");
        await queued;
        assert.equal(requestId.get(), "r-forced");
      });
    } finally {
      await closing.destroy();
    }
  });
});

describe("contextPool: a job that starts more threads", () => {
  it("toThread from a job carries the job's Context, sets included; values for vars its thread never created do not pass", async () => {
    const trace = new ContextVar<string>("trace");
    const nested = contextPool<undefined, NestedReply>(
      new Piscina({
        filename: fixture("nested-job.ts").href,
        execArgv: workerExecArgv,
        maxThreads: 1,
      }),
    );
    try {
      const reply = await requestId.run("r-outer", () =>
        trace.run("t-outer", () => nested.run(undefined)),
      );
      assert.deepEqual(reply, {
        here: "r-outer",
        inner: { requestId: "r-outer, set in the job", trace: "<unset>" },
      });
    } finally {
      // Also ends the job thread's default pool, whose threads are its children.
      await nested.destroy();
    }
  });
});
