/**
 * A fault inside a request is logged with that request's fields: by
 * winston's own exception and rejection handlers (`handleExceptions`,
 * `handleRejections`), through both contextFormat and contextMeta, and by a
 * pino logger with contextMixin called from `process.on` handlers. Which
 * Context those handlers run in is pinned in
 * test/faults/process-handlers.test.ts; this checks that the log lines
 * follow it. The faults run in a child process
 * (fixtures/logging-faults.ts): an uncaught exception would otherwise end
 * the test runner's own process.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { runFixture as runTsFixture } from "../helpers/fixture-process.ts";

interface Printed {
  logger: string;
  text: string;
  requestId?: string;
  user?: string;
  exception?: boolean;
}

const fixture = fileURLToPath(new URL("./fixtures/logging-faults.ts", import.meta.url));

async function runFixture(): Promise<{ lines: Printed[]; done: unknown }> {
  const parsed = (await runTsFixture(fixture))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as unknown);
  return { lines: parsed.slice(0, -1) as Printed[], done: parsed.at(-1) };
}

const faults = [
  {
    fault: "a timer's throw",
    winston: "uncaughtException: thrown by a timer",
    pino: "uncaught: thrown by a timer",
    requestId: "req-timer",
    user: "alice",
  },
  {
    fault: "an unawaited task's rejection",
    winston: "unhandledRejection: a task failed",
    pino: "unhandled: a task failed",
    requestId: "req-task",
    user: "bob",
  },
  {
    fault: "the handler's rejection",
    winston: "unhandledRejection: the handler rejected",
    pino: "unhandled: the handler rejected",
    requestId: "req-reject",
    user: "carol",
  },
] as const;

describe("log lines of faults inside requests (child process)", () => {
  // Tests are declared before the fixture runs: Deno's node:test does not wait for an async describe().
  let lines: Printed[] = [];
  let done: unknown;
  before(async () => {
    ({ lines, done } = await runFixture());
  });
  const find = (logger: string, text: string) =>
    lines.filter((line) => line.logger === logger && line.text === text);

  for (const { fault, winston, pino, requestId, user } of faults) {
    for (const logger of ["winston format", "winston defaultMeta"]) {
      it(`${logger}: ${fault} is logged once by winston's handler, with the request's fields`, () => {
        const found = find(logger, winston);
        assert.equal(found.length, 1, JSON.stringify(lines));
        assert.equal(found[0]?.requestId, requestId);
        assert.equal(found[0]?.user, user);
      });
    }
    it(`pino from process.on: ${fault} is logged with the request's fields`, () => {
      const found = find("pino", pino);
      assert.equal(found.length, 1, JSON.stringify(lines));
      assert.equal(found[0]?.requestId, requestId);
      assert.equal(found[0]?.user, user);
    });
  }

  it("nothing else was logged, and the root Context has no request's value afterwards", () => {
    assert.equal(lines.length, faults.length * 3, JSON.stringify(lines));
    assert.deepEqual(done, { done: true, outside: "unset" });
  });
});
