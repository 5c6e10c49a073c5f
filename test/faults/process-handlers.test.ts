/**
 * Which Context `process.on("uncaughtException")` and
 * `process.on("unhandledRejection")` handlers see, pinned for Node 20, and
 * that the root Context is the same cell, unchanged, after all of them.
 * The faults run in a child process (fixtures/process-handlers.ts): an
 * uncaught exception would otherwise end the test runner's own process.
 *
 * The rules behind the table (docs/guarantees.md):
 *   - a throw from a timer, immediate or nextTick callback: the handler runs
 *     in the Context that callback ran in (the scheduling cell, so it sees
 *     the callback's own sets); callSoon/callLater: the Context that
 *     scheduled them (their callback ran in a copy, whose sets it does not see);
 *   - a throw from a queueMicrotask callback: the root Context;
 *   - an unhandled rejection: the Context the rejected promise was created
 *     in, as it is when the handler runs (so an async function's later sets
 *     are seen). A task's promise is created by its creator: an unawaited
 *     failing task is reported in the creator's Context, not the task's;
 *   - a request listener (or seed) that throws synchronously: the Context
 *     where server.listen was called (where Node runs the listener), not the
 *     request's; one that rejects: the request's.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { runFixture as runTsFixture } from "../helpers/fixture-process.ts";

interface Seen {
  fault: string;
  event: string;
  sees: string;
}

const fixture = fileURLToPath(new URL("./fixtures/process-handlers.ts", import.meta.url));

async function runFixture(): Promise<{ seen: Map<string, Seen>; reports: number; done: unknown }> {
  const lines = (await runTsFixture(fixture))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as unknown);
  const seen = new Map<string, Seen>();
  for (const line of lines.slice(0, -1)) seen.set((line as Seen).fault, line as Seen);
  return { seen, reports: lines.length - 1, done: lines.at(-1) };
}

const expected: ReadonlyArray<readonly [fault: string, event: string, sees: string]> = [
  ["setTimeout", "uncaughtException", "setTimeout: set by the callback"],
  ["setImmediate", "uncaughtException", "setImmediate: set by the callback"],
  ["nextTick", "uncaughtException", "nextTick: set by the callback"],
  ["queueMicrotask", "uncaughtException", "root"],
  ["queueMicrotask, from a timer", "uncaughtException", "root"],
  ["callSoon", "uncaughtException", "callSoon"],
  ["callLater", "uncaughtException", "callLater"],
  ["abort listener", "uncaughtException", "abort listener: the task's Context"],
  ["Promise.reject", "unhandledRejection", "Promise.reject"],
  ["async function", "unhandledRejection", "async function: set after an await"],
  ["unawaited task", "unhandledRejection", "task creator"],
  ["unawaited gather", "unhandledRejection", "gather caller"],
  ["unawaited task, thenable", "unhandledRejection", "task creator"],
  ["unawaited run, thenable", "unhandledRejection", "run caller"],
  ["unawaited gather, thenable", "unhandledRejection", "gather caller"],
  ["listener /throw", "uncaughtException", "server.listen"],
  ["listener /reject", "unhandledRejection", "listener /reject: the request's Context"],
  ["seed /seed", "uncaughtException", "server.listen"],
];

describe("process-level handlers (child process, Node 20)", async () => {
  const { seen, reports, done } = await runFixture();

  for (const [fault, event, sees] of expected) {
    it(`${fault}: "${event}" handler sees ${sees === "root" ? "the root Context" : `"${sees}"`}`, () => {
      assert.deepEqual(seen.get(fault), { fault, event, sees });
    });
  }

  it("every fault was reported exactly once", () => {
    assert.deepEqual([...seen.keys()].sort(), expected.map(([fault]) => fault).sort());
    assert.equal(reports, expected.length);
  });

  it("afterwards the root Context is the same cell, unchanged", () => {
    assert.deepEqual(done, { done: "root", sameCell: true });
  });
});
