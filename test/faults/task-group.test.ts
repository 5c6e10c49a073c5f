/**
 * A TaskGroup failure cancels and cleans up, each child in its own Context:
 * the siblings' signals abort, their abort listeners and `finally` blocks
 * run with their own values, every resource they hold is released before
 * `wait()` settles, the group refuses new children, and the caller's
 * Context is exactly what it was.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, TaskGroup, TaskGroupClosedError, taskGroup } from "contextvars";
import { pinContext } from "../helpers/pin-context.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

const child = new ContextVar<string>("child", { default: "none" });

/** A resource that records who released it, and in which Context. */
class Resources {
  readonly held = new Set<string>();
  readonly log: string[] = [];
  acquire(name: string): { release(): void } {
    this.held.add(name);
    return {
      release: () => {
        this.held.delete(name);
        this.log.push(`${name} released in ${child.get()}`);
      },
    };
  }
}

/** A child that holds a resource until its signal aborts (or `ms` pass). */
function sibling(resources: Resources, name: string, ms = 10_000) {
  return async (signal: AbortSignal): Promise<string> => {
    child.set(name);
    const resource = resources.acquire(name);
    signal.addEventListener("abort", () => resources.log.push(`${name} aborted in ${child.get()}`));
    try {
      await sleep(ms, undefined, { signal });
      return name;
    } finally {
      resource.release();
    }
  };
}

async function failing(): Promise<never> {
  child.set("failing");
  await sleep(2);
  throw new Error("child failed");
}

describe("a TaskGroup failure cancels and cleans up", () => {
  itFromEveryState(
    "siblings abort and release in their own Contexts; the caller is unchanged",
    async () => {
      const pin = pinContext();
      const resources = new Resources();
      const group = new TaskGroup();
      const tasks = ["a", "b", "c"].map((name) => group.createTask(sibling(resources, name)));
      group.createTask(failing);
      const failure = await group.wait().then(
        () => assert.fail("wait() should reject"),
        (error: unknown) => error,
      );
      assert.ok(failure instanceof AggregateError);
      assert.deepEqual(
        failure.errors.map((e: Error) => e.message),
        ["child failed"],
        "only the failure, not the cancellations it caused",
      );
      assert.deepEqual([...resources.held], [], "every resource released before wait() settled");
      for (const name of ["a", "b", "c"]) {
        assert.ok(resources.log.includes(`${name} aborted in ${name}`), resources.log.join("; "));
        assert.ok(resources.log.includes(`${name} released in ${name}`), resources.log.join("; "));
      }
      assert.ok(tasks.every((task) => task.cancelled && task.signal.aborted));
      assert.throws(() => group.createTask(async () => {}), TaskGroupClosedError);
      pin.check();
    },
  );

  itFromEveryState(
    "a child refused while the group shuts down (TaskGroupClosedError) leaves the caller unchanged",
    async () => {
      const group = new TaskGroup();
      // Once the child has failed, the group has begun shutting down.
      await group.createTask(failing).then(undefined, () => undefined);
      const pin = pinContext();
      assert.throws(
        () =>
          group.createTask(() => {
            throw new Error("never started");
          }),
        { name: "TaskGroupClosedError", message: /is shutting down/ },
      );
      pin.check();
      await assert.rejects(group.wait(), AggregateError);
    },
  );

  it("group.signal is aborted once the group shuts down, also when first read afterwards", async () => {
    // Read before the failure, the signal aborts; read only after it, it must
    // not come back fresh and un-aborted (a body that checks it would go on).
    const readEarly = new TaskGroup();
    const early = readEarly.signal;
    readEarly.createTask(failing);
    await assert.rejects(readEarly.wait(), AggregateError);
    assert.equal(early.aborted, true);

    const readLate = new TaskGroup();
    readLate.createTask(failing);
    await assert.rejects(readLate.wait(), AggregateError);
    assert.equal(readLate.signal.aborted, true, "group.signal first read after the failure");

    const outer = new AbortController();
    outer.abort(new Error("already aborted"));
    assert.equal(new TaskGroup({ signal: outer.signal }).signal.aborted, true);
  });

  /** A child that holds a resource for 30 ms and never looks at its signal. */
  const stubborn = (resources: Resources) => async () => {
    child.set("stubborn");
    const resource = resources.acquire("stubborn");
    await sleep(30);
    resource.release();
  };

  it("a child that ignores its signal keeps wait() pending until it finishes", async () => {
    const resources = new Resources();
    const group = new TaskGroup();
    group.createTask(stubborn(resources));
    group.createTask(failing);
    await assert.rejects(group.wait(), AggregateError);
    assert.deepEqual(resources.log, ["stubborn released in stubborn"]);
  });

  it("the group refuses new children from the failure on, while a cancelled one still runs", async () => {
    const resources = new Resources();
    const group = new TaskGroup();
    group.createTask(stubborn(resources));
    group.createTask(failing);
    const waited = assert.rejects(group.wait(), AggregateError);
    await sleep(10);
    assert.equal(group.signal.aborted, true, "the failure has happened");
    assert.deepEqual([...resources.held], ["stubborn"], "wait() has not settled");
    assert.throws(
      () => group.createTask(sibling(resources, "late")),
      (e: unknown) => e instanceof TaskGroupClosedError && /is shutting down/.test(e.message),
    );
    await waited;
    assert.ok(!resources.log.some((line) => line.startsWith("late")), resources.log.join("; "));
  });

  itFromEveryState("taskGroup(): a throw from the body cancels the children", async () => {
    const pin = pinContext();
    const resources = new Resources();
    await assert.rejects(
      taskGroup(async (tg) => {
        for (const name of ["x", "y"]) tg.createTask(sibling(resources, name));
        await sleep(1);
        throw new Error("body failed");
      }),
      (error: AggregateError) => error.errors.length === 1,
    );
    assert.deepEqual([...resources.held], []);

    pin.check();
  });

  it("an outer signal (a request aborted) cancels every child; nothing failed, so wait() rejects with the signal's reason", async () => {
    const resources = new Resources();
    const request = new AbortController();
    const group = new TaskGroup({ signal: request.signal });
    for (const name of ["p", "q"]) group.createTask(sibling(resources, name));
    const reason = new Error("client went away");
    setTimeout(() => request.abort(reason), 2);
    await assert.rejects(group.wait(), (e) => e === reason);
    assert.deepEqual([...resources.held], []);
    assert.deepEqual(resources.log.sort(), [
      "p aborted in p",
      "p released in p",
      "q aborted in q",
      "q released in q",
    ]);
  });

  it("a nested group's failure reaches the outer group, which cancels its other children", async () => {
    const resources = new Resources();
    const outer = new TaskGroup();
    outer.createTask(sibling(resources, "outer sibling"));
    outer.createTask(async () => {
      const inner = new TaskGroup();
      inner.createTask(sibling(resources, "inner sibling"));
      inner.createTask(failing);
      await inner.wait();
    });
    const failure = await outer.wait().catch((error: unknown) => error);
    assert.ok(failure instanceof AggregateError && failure.errors[0] instanceof AggregateError);
    assert.deepEqual([...resources.held], []);
    assert.ok(resources.log.includes("outer sibling released in outer sibling"));
    assert.ok(resources.log.includes("inner sibling released in inner sibling"));
  });
});
