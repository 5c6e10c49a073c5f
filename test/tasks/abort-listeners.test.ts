// onAbort/offAbort: one "abort" listener per signal for every task and group
// that waits on it (Node warns past 10 listeners on one EventTarget).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { offAbort, onAbort } from "../../src/tasks/abort-listeners.ts";

describe("onAbort / offAbort", () => {
  it("calls each callback once, in the order added, through one listener", () => {
    const controller = new AbortController();
    const log: number[] = [];
    for (let i = 0; i < 20; i++) onAbort(controller.signal, () => log.push(i));
    assert.equal(getEventListeners(controller.signal, "abort").length, 1);
    controller.abort();
    controller.signal.dispatchEvent(new Event("abort"));
    assert.deepEqual(
      log,
      Array.from({ length: 20 }, (_, i) => i),
    );
    assert.equal(getEventListeners(controller.signal, "abort").length, 0);
  });

  it("a callback removed by an earlier one during the abort is not called", () => {
    const controller = new AbortController();
    const log: string[] = [];
    const second = () => log.push("second");
    onAbort(controller.signal, () => {
      log.push("first");
      offAbort(controller.signal, second);
    });
    onAbort(controller.signal, second);
    onAbort(controller.signal, () => log.push("third"));
    controller.abort();
    assert.deepEqual(log, ["first", "third"]);
  });

  it("a callback that throws is reported as uncaught, and the rest still run", async () => {
    // In a child process: an uncaught exception would fail the test runner's own.
    const script = `import { onAbort } from "./src/tasks/abort-listeners.ts";
const log = [];
process.on("uncaughtException", (e) => log.push("reported " + e.message));
const controller = new AbortController();
onAbort(controller.signal, () => { throw new Error("boom"); });
onAbort(controller.signal, () => log.push("after"));
controller.abort();
setImmediate(() => console.log(JSON.stringify(log)));`;
    const args = ["--conditions=contextvars-source", "--import", "tsx", "--input-type=module"];
    const { stdout } = await promisify(execFile)(process.execPath, [...args, "-e", script], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
    });
    assert.deepEqual(JSON.parse(stdout.trim()), ["after", "reported boom"]);
  });

  it("the listener goes with the last callback; offAbort of an unknown one is a no-op", () => {
    const controller = new AbortController();
    const a = () => {};
    const b = () => {};
    offAbort(controller.signal, a);
    onAbort(controller.signal, a);
    onAbort(controller.signal, b);
    offAbort(controller.signal, a);
    assert.equal(getEventListeners(controller.signal, "abort").length, 1);
    offAbort(controller.signal, b);
    assert.equal(getEventListeners(controller.signal, "abort").length, 0);
  });
});
