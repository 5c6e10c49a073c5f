/**
 * "The current Context is exactly what it was", checked through the public
 * API alone. `pinContext()` records the current Context's values and sets a
 * private probe var, whose Token remembers the Context cell it was set in;
 * `check()` then asserts that
 *
 *   - every var has the value it had (nothing set, nothing lost), and
 *   - the probe's token resets without ERR_TOKEN_CONTEXT_MISMATCH, which
 *     proves the current cell is the very same object, not an equal copy,
 *   - currentTask() is the task it was.
 *
 * `check()` removes the probe, so the Context is left as it was found.
 */
import assert from "node:assert/strict";
import { ContextVar, copyContext, currentTask } from "contextvars";

const probe = new ContextVar<object>("test.pin-context.probe");

/** The current Context's entries as [var name, value], probe left out. */
export function contextValues(): [string, unknown][] {
  return [...copyContext()]
    .filter(([v]) => v !== probe)
    .map(([v, value]): [string, unknown] => [v.name, value]);
}

export interface Pin {
  /** Asserts the current Context is the pinned one, unchanged; then removes the probe. */
  check(where?: string): void;
}

/** Pins the current Context (see the file's comment). */
export function pinContext(): Pin {
  const values = contextValues();
  const task = currentTask();
  const marker = {};
  const token = probe.set(marker);
  return {
    check(where = "after the fault") {
      assert.equal(probe.get(undefined), marker, `${where}: the probe's value is gone`);
      const now = contextValues();
      assert.deepEqual(
        now.map(([name]) => name),
        values.map(([name]) => name),
        `${where}: a var was set or lost`,
      );
      now.forEach(([name, value], i) => {
        assert.ok(Object.is(value, values[i]?.[1]), `${where}: ${name} changed`);
      });
      assert.equal(currentTask(), task, `${where}: currentTask() changed`);
      probe.reset(token); // throws ERR_TOKEN_CONTEXT_MISMATCH if this is another cell
    },
  };
}
