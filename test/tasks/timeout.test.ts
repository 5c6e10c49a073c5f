// timeout(ms, fn): asyncio.timeout around a task. The task is cancelled with a
// TimeoutError (ERR_TASK_TIMEOUT) naming it; the timer goes when it settles first.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { setTimeout as sleep, setImmediate as turn } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  ContextError,
  ContextVar,
  copyContext,
  currentTask,
  TaskGroup,
  TimeoutError,
  timeout,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** Runs an ESM script in a child process; resolves with the messages of its unhandled rejections. */
async function unhandledRejectionsOf(script: string): Promise<string[]> {
  const prelude = `const seen = []; process.on("unhandledRejection", (r) => seen.push(String(r?.message ?? r)));
process.on("exit", () => console.log(JSON.stringify(seen)));\n`;
  const args = ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module"];
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [...args, "-e", prelude + script],
    {
      cwd: root,
    },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "[]") as string[];
}

/** How many timers keep the event loop alive. */
const liveTimers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("timeout: running out of time", () => {
  itFromEveryState(
    "rejects with TimeoutError ERR_TASK_TIMEOUT naming the task; aborts its signal",
    async () => {
      let signal: AbortSignal | undefined;
      const task = timeout(
        5,
        async (s) => {
          signal = s;
          await new Promise((resolve) => s.addEventListener("abort", resolve));
        },
        { name: "fetch-profile" },
      );
      const error = await task.then(
        () => assert.fail("expected a timeout"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TimeoutError);
      assert.ok(error instanceof ContextError);
      assert.equal(error.code, "ERR_TASK_TIMEOUT");
      assert.equal(error.message, 'Task("fetch-profile") timed out after 5 ms');
      assert.equal(signal?.aborted, true);
      assert.equal(signal?.reason, error);
      assert.equal(task.cancelled, true);
      assert.equal(task.done, true);
    },
  );

  itFromEveryState(
    "equal deadlines: each times out in its own Context, the caller untouched",
    async () => {
      const v = new ContextVar<string>("v");
      v.set("caller");
      const seen: string[] = [];
      const tasks = ["a", "b", "c"].map((name) =>
        timeout(3, async (signal) => {
          v.set(name);
          await new Promise((resolve) => signal.addEventListener("abort", resolve));
          seen.push(`${name}:${v.get()}`);
        }),
      );
      const results = await Promise.allSettled(tasks);
      assert.ok(results.every((r) => r.status === "rejected" && r.reason instanceof TimeoutError));
      assert.deepEqual(seen, ["a:a", "b:b", "c:c"]);
      assert.equal(v.get(), "caller");
    },
  );
});

describe("timeout: around a TaskGroup given its signal", () => {
  itFromEveryState(
    "running out of time cancels the children, each in its own Context; what follows the group's wait never runs; the TimeoutError names the task",
    async () => {
      const v = new ContextVar<string>("v");
      const seen: string[] = [];
      let after = false;
      let bodyEnded: () => void = () => {};
      const ended = new Promise<void>((resolve) => {
        bodyEnded = resolve;
      });
      const task = timeout(
        5,
        async (signal) => {
          v.set("body");
          using _ = { [Symbol.dispose]: bodyEnded };
          await using tg = new TaskGroup({ signal });
          for (const name of ["a", "b"]) {
            tg.createTask(async (s) => {
              v.set(name);
              await new Promise((resolve) => s.addEventListener("abort", resolve));
              seen.push(`${name} cancelled in ${v.get()}`);
            });
          }
          await tg.wait();
          after = true;
        },
        { name: "fan-out" },
      );
      const error = await task.then(
        () => assert.fail("expected a timeout"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TimeoutError);
      assert.equal(error.message, 'Task("fan-out") timed out after 5 ms');
      await ended;
      assert.deepEqual(seen.sort(), ["a cancelled in a", "b cancelled in b"]);
      assert.equal(after, false);
      assert.equal(v.get("<unset>"), "<unset>");
    },
  );
});

describe("timeout: finishing first", () => {
  itFromEveryState("resolves with fn's value, and the timer is cleared", async () => {
    const before = liveTimers();
    const task = timeout(1_000_000, async () => {
      await sleep(1);
      return [currentTask()];
    });
    const [self] = await task;
    assert.equal(self, task);
    await turn();
    assert.equal(liveTimers(), before);
    assert.equal(task.signal.aborted, false);
  });

  it("rejects with fn's own error, and the timer is cleared", async () => {
    const before = liveTimers();
    const boom = new Error("boom");
    const task = timeout(1_000_000, async () => {
      await sleep(1);
      throw boom;
    });
    await assert.rejects(task, (e) => e === boom);
    await turn();
    assert.equal(liveTimers(), before);
    assert.equal(task.cancelled, false);
  });

  it("a synchronous fn settles at once and leaves no timer", async () => {
    const before = liveTimers();
    const task = timeout(1_000_000, () => 3);
    assert.equal(task.done, true);
    assert.equal(liveTimers(), before, "no timer is made for a task that is done already");
    assert.equal(await task, 3);
    await turn();
    assert.equal(liveTimers(), before);
  });

  it("honours the context option and an already-aborted signal", async () => {
    const v = new ContextVar<number>("v");
    const context = copyContext();
    await timeout(1000, () => v.set(1), { context });
    assert.equal(context.get(v), 1);
    const before = liveTimers();
    const reason = new Error("gave up");
    let ran = false;
    const task = timeout(1000, () => (ran = true), { signal: AbortSignal.abort(reason) });
    await assert.rejects(task, (e) => e === reason);
    assert.equal(ran, false);
    assert.equal(liveTimers(), before);
  });
});

describe("timeout: unhandled rejections", () => {
  it("a timed-out task nobody awaits is not reported; one that failed on its own is", async () => {
    const seen = await unhandledRejectionsOf(`import { timeout } from "contextvars";
timeout(1, (signal) => new Promise((resolve) => signal.addEventListener("abort", resolve)));
timeout(1000, async () => { throw new Error("failed on its own"); });
await new Promise((resolve) => setTimeout(resolve, 20));`);
    assert.deepEqual(seen, ["failed on its own"]);
  });
});

describe("timeout: bad input", () => {
  for (const ms of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, "10", undefined]) {
    it(`timeout(${String(ms)}, fn): TypeError naming ms, fn never runs`, () => {
      let ran = false;
      assert.throws(
        () => timeout(ms as never, () => (ran = true)),
        (e: unknown) => e instanceof TypeError && /`ms`/.test(e.message),
      );
      assert.equal(ran, false);
    });
  }

  it("the bounds are accepted: 0 ms times out on the next timer turn, 2**31-1 ms is a timer", async () => {
    const never = (signal: AbortSignal) =>
      new Promise((resolve) => signal.addEventListener("abort", resolve));
    const now = timeout(0, never, { name: "now" });
    await assert.rejects(now, (e: unknown) => e instanceof TimeoutError);
    const longest = timeout(2 ** 31 - 1, never);
    assert.equal(longest.done, false);
    longest.cancel();
    await longest.catch(() => {});
  });

  it("fn not a function, or a context that is not a Context: TypeError naming it", () => {
    assert.throws(
      () => timeout(10, "fn" as never),
      (e: unknown) => e instanceof TypeError && /`fn`/.test(e.message),
    );
    assert.throws(
      () => timeout(10, () => {}, { context: new Map() as never }),
      (e: unknown) => e instanceof TypeError && /`options\.context`/.test(e.message),
    );
  });

  it("options.name is read once: a getter cannot hand the timer a name that was never checked", async () => {
    let reads = 0;
    const unprintable = {
      toJSON() {
        throw new Error("toJSON");
      },
    };
    const task = timeout(1, () => new Promise(() => {}), {
      get name() {
        return reads++ === 0 ? "checked" : (unprintable as never);
      },
    });
    const outcome = await Promise.race([
      task.then(
        () => "fulfilled",
        (e: unknown) => e,
      ),
      sleep(200).then(() => "still pending"),
    ]);
    assert.ok(outcome instanceof TimeoutError, `got ${String(outcome)}`);
    assert.match(outcome.message, /^Task\("checked"\) timed out after 1 ms/);
    assert.equal(reads, 1);
  });
});

describe("timeout: its timer", () => {
  it("a task cancelled by hand stops its timer, even if its function never settles", () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const task = timeout(60_000, () => new Promise<never>(() => {}));
    assert.equal(timers(), before + 1);
    task.cancel();
    task.catch(() => {});
    assert.equal(timers(), before);
  });
});

describe("timeout: its delay", () => {
  it("has timed out by the time a setTimeout with the same delay, made after it, runs", async () => {
    const task = timeout(
      20,
      (signal) => new Promise((resolve) => signal.addEventListener("abort", resolve)),
    );
    const doneThen = await new Promise<boolean>((resolve) =>
      setTimeout(() => resolve(task.done), 20),
    );
    await assert.rejects(task, (e: unknown) => e instanceof TimeoutError);
    assert.equal(doneThen, true);
  });
});
