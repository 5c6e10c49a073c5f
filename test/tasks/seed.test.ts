// The seed program's async part (workers that set current_user, then sleep),
// the isolated() form of it, and the bug both exist to prevent.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ContextVar, gather, isolated, LookupError, run } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const currentUser = new ContextVar<string>("current_user");

/** The seed's worker, printing into `printed` instead of the console. */
function workerPrintingTo(printed: string[]) {
  return async (name: string): Promise<void> => {
    currentUser.set(name);
    await sleep(10);
    printed.push(currentUser.get());
  };
}

describe("seed: the async program", () => {
  itFromEveryState(
    "run(main) + gather(worker alice, worker bob) prints alice then bob",
    async () => {
      currentUser.set("caller");
      const printed: string[] = [];
      const worker = workerPrintingTo(printed);
      await run(async () => {
        await gather(
          () => worker("alice"),
          () => worker("bob"),
        );
      });
      assert.deepEqual(printed, ["alice", "bob"]);
      assert.equal(currentUser.get(), "caller");
    },
  );

  itFromEveryState("isolated(worker) + Promise.all prints alice then bob", async () => {
    currentUser.set("caller");
    const printed: string[] = [];
    const worker = isolated(workerPrintingTo(printed));
    await Promise.all([worker("alice"), worker("bob")]);
    assert.deepEqual(printed, ["alice", "bob"]);
    assert.equal(currentUser.get(), "caller");
  });

  itFromEveryState(
    "the bug: Promise.all([worker(a), worker(b)]) without isolation overwrites",
    async () => {
      // Both async functions start at once in the caller's one Context: b's set
      // replaces a's before a wakes, and leaks into the caller.
      currentUser.set("caller");
      const printed: string[] = [];
      const worker = workerPrintingTo(printed);
      await Promise.all([worker("a"), worker("b")]);
      assert.deepEqual(printed, ["b", "b"]);
      assert.equal(currentUser.get(), "b");
    },
  );

  itFromEveryState(
    "the bug, contained: inside run(), the overwrite stays in main's copy",
    async () => {
      currentUser.set("caller");
      const printed: string[] = [];
      const worker = workerPrintingTo(printed);
      await run(() => Promise.all([worker("a"), worker("b")]));
      assert.deepEqual(printed, ["b", "b"]);
      assert.equal(currentUser.get(), "caller");
    },
  );
});

describe("seed: the synchronous part", () => {
  it("set, get, reset, then LookupError", () => {
    const user = new ContextVar<string>("user");
    const token = user.set("alice");
    assert.equal(user.get(), "alice");
    user.reset(token);
    assert.throws(() => user.get(), LookupError);
  });
});

describe("seed: examples/seed.ts", () => {
  it("prints alice, bob, alice, Value reset, alice, bob", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", "examples/seed.ts"],
      { cwd: root },
    );
    assert.deepEqual(stdout.trim().split("\n"), [
      "alice",
      "bob",
      "alice",
      "Value reset",
      "alice",
      "bob",
    ]);
  });
});
