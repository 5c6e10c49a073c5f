/**
 * Fake timers, as tests use them: node:test's `mock.timers` (sinon's
 * `useFakeTimers()` and jest's `useFakeTimers()` behave the same way). A
 * fake `setTimeout` keeps its callback in a list and calls it from `tick()`,
 * so a plain callback runs in the Context of the code that ticks, not of the
 * code that scheduled it: that is the fake's doing, and a raw
 * AsyncLocalStorage loses its store the same way. `callLater` and `timeout`
 * run on the same faked `setTimeout` and keep their own Contexts, because
 * they take the Context when called and enter it themselves.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import {
  ContextVar,
  callLater,
  copyContext,
  createTask,
  type TaskGroup,
  TimeoutError,
  taskGroup,
  timeout,
} from "contextvars";

const user = new ContextVar<string>("user", { default: "-" });

/** Runs fn in a copy of the current Context with user set to name. */
function as<R>(name: string, fn: () => R): R {
  return copyContext().run(() => {
    user.set(name);
    return fn();
  });
}

/** Lets the promise callbacks the timers settled run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe("under node:test's mock.timers", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("callLater callbacks of concurrent Contexts each run in their own copy, whoever ticks", () => {
    const seen: string[] = [];
    for (const name of ["alice", "bob"]) {
      as(name, () =>
        callLater(100, () => {
          seen.push(`${name}: ${user.get()}`);
          user.set("set in the callback");
        }),
      );
    }
    as("ticker", () => {
      mock.timers.tick(100);
      assert.equal(user.get(), "ticker"); // the callbacks' sets stayed inside
    });
    assert.deepEqual(seen, ["alice: alice", "bob: bob"]);
  });

  it("a plain setTimeout callback runs in the Context that ticks (pinned: the fake's doing, as for AsyncLocalStorage)", () => {
    const storage = new AsyncLocalStorage<string>();
    const seen: string[] = [];
    for (const name of ["alice", "bob"]) {
      as(name, () =>
        storage.run(name, () =>
          setTimeout(() => {
            seen.push(`${name}: ${user.get()} ${storage.getStore()}`);
            user.set(`set by ${name}'s callback`);
          }, 100),
        ),
      );
    }
    as("ticker", () => {
      mock.timers.tick(100);
      // The callbacks' sets landed in the ticker's Context.
      assert.equal(user.get(), "set by bob's callback");
    });
    // They share it: bob's callback reads what alice's set.
    assert.deepEqual(seen, ["alice: ticker undefined", "bob: set by alice's callback undefined"]);
  });

  it("an await of a faked timer resumes in the awaiting Context", async () => {
    const done = ["alice", "bob"].map((name) =>
      as(name, () =>
        createTask(async () => {
          await new Promise((resolve) => setTimeout(resolve, 100));
          return user.get();
        }),
      ),
    );
    as("ticker", () => mock.timers.tick(100));
    assert.deepEqual(await Promise.all(done), ["alice", "bob"]);
  });

  it("timeout(ms, fn) fires on tick: each task is cancelled in its own Context, each caller sees its own", async () => {
    const seen: string[] = [];
    const outcomes = ["alice", "bob"].map((name) =>
      as(name, () =>
        timeout(
          50,
          (signal) => {
            signal.addEventListener("abort", () =>
              seen.push(`${name}'s abort listener: ${user.get()}`),
            );
            return new Promise<never>(() => {});
          },
          { name },
        ).catch((error: unknown) => {
          assert.ok(error instanceof TimeoutError);
          return `${name} caught ${error.message}: ${user.get()}`;
        }),
      ),
    );
    as("ticker", () => mock.timers.tick(49));
    await settle();
    assert.deepEqual(seen, []);
    as("ticker", () => mock.timers.tick(1));
    assert.deepEqual(await Promise.all(outcomes), [
      'alice caught Task("alice") timed out after 50 ms: alice',
      'bob caught Task("bob") timed out after 50 ms: bob',
    ]);
    assert.deepEqual(seen, ["alice's abort listener: alice", "bob's abort listener: bob"]);
  });

  it("a TaskGroup given timeout's signal is cancelled on tick, each child in its own Context", async () => {
    const seen: string[] = [];
    const outcomes = ["alice", "bob"].map((name) =>
      as(name, () =>
        timeout(100, (signal) =>
          taskGroup(
            async (group: TaskGroup) => {
              for (const child of ["1", "2"]) {
                group.createTask(
                  (childSignal) =>
                    new Promise<never>((_resolve, reject) => {
                      user.set(`${name}-${child}`);
                      childSignal.addEventListener("abort", () => {
                        seen.push(`child ${user.get()}`);
                        reject(childSignal.reason);
                      });
                    }),
                );
              }
            },
            { signal },
          ),
        ).catch((error: unknown) => `${name}: ${(error as Error).name}, ${user.get()}`),
      ),
    );
    as("ticker", () => mock.timers.tick(100));
    assert.deepEqual(await Promise.all(outcomes), [
      "alice: TimeoutError, alice",
      "bob: TimeoutError, bob",
    ]);
    assert.deepEqual(seen.sort(), ["child alice-1", "child alice-2", "child bob-1", "child bob-2"]);
  });
});
