/**
 * Async functions and generators: one run shares one Context across all its
 * awaits (contract section 1), so a direct call shares the caller's Context;
 * createTask, gather and isolated give a copy.
 */
import assert from "node:assert/strict";
import { describe } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Context,
  ContextVar,
  createTask,
  gather,
  isolated,
  type Token,
  TokenMismatchError,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });

describe("async generators", () => {
  // Pinned: a generator's body runs in the Context of the code that calls
  // next() (for await included), not where the generator was created; after
  // an await inside the body it goes on in that same Context.
  itFromEveryState("the body sees the Context of whoever calls next()", async () => {
    async function* steps(): AsyncGenerator<string> {
      yield v.get();
      await sleep(1);
      yield v.get();
    }
    const gen = v.run("created", () => steps());
    assert.deepEqual(await v.run("B", () => gen.next()), { value: "B", done: false });
    assert.deepEqual(await v.run("C", () => gen.next()), { value: "C", done: false });
  });

  itFromEveryState("for await in interleaved siblings: each sees its own values", async () => {
    async function* counter(): AsyncGenerator<string> {
      for (let i = 0; i < 3; i++) {
        await sleep(1);
        v.set(`${v.get().split("#")[0]}#${i}`);
        yield v.get();
      }
    }
    const consume = async (name: string): Promise<string[]> => {
      v.set(name);
      const seen: string[] = [];
      for await (const value of counter()) {
        assert.equal(v.get(), value, "the generator's sets land in the iterating Context");
        seen.push(value);
        await null;
      }
      return seen;
    };
    assert.deepEqual(
      await gather(
        () => consume("a"),
        () => consume("b"),
      ),
      [
        ["a#0", "a#1", "a#2"],
        ["b#0", "b#1", "b#2"],
      ],
    );
  });
});

describe("await chains", () => {
  itFromEveryState("100 sequential awaits keep the value, beside a sibling", async () => {
    const chain = async (name: string): Promise<number> => {
      v.set(name);
      let kept = 0;
      for (let i = 0; i < 100; i++) {
        await (i % 10 === 0 ? sleep(0) : null);
        if (v.get() === name) kept++;
      }
      return kept;
    };
    assert.deepEqual(
      await gather(
        () => chain("a"),
        () => chain("b"),
      ),
      [100, 100],
    );
  });

  itFromEveryState("try/catch/finally after an await stay in the run", async () => {
    const attempt = async (name: string): Promise<string[]> => {
      const seen: string[] = [];
      v.set(name);
      try {
        await sleep(1);
        v.set(`${name} in try`);
        throw new Error(name);
      } catch {
        seen.push(v.get());
        await sleep(1);
      } finally {
        seen.push(v.get());
        await null;
        v.set(`${name} in finally`);
      }
      seen.push(v.get());
      return seen;
    };
    assert.deepEqual(
      await gather(
        () => attempt("a"),
        () => attempt("b"),
      ),
      ["a", "b"].map((n) => [`${n} in try`, `${n} in try`, `${n} in finally`]),
    );
  });

  itFromEveryState("a set after an await in a callee is seen after `await callee()`", async () => {
    const callee = async (value: string): Promise<void> => {
      await sleep(1);
      v.set(value);
    };
    const caller = async (name: string): Promise<string> => {
      v.set("before");
      await callee(name);
      return v.get();
    };
    assert.deepEqual(
      await gather(
        () => caller("a"),
        () => caller("b"),
      ),
      ["a", "b"],
    );
  });

  // Pinned (contract section 3): async functions called directly share the
  // caller's one Context, so Promise.all over direct calls lets their sets
  // overwrite each other. gather/isolated are the fix.
  itFromEveryState("direct calls under Promise.all share one Context", async () => {
    const worker = async (name: string, delay: number): Promise<string> => {
      v.set(name);
      await sleep(delay);
      return v.get();
    };
    assert.deepEqual(await Promise.all([worker("a", 2), worker("b", 1)]), ["b", "b"]);
    const own = isolated(worker);
    assert.deepEqual(await Promise.all([own("a", 2), own("b", 1)]), ["a", "b"]);
  });
});

describe("tokens across awaits", () => {
  itFromEveryState("a token resets after awaits and timers of the same run", async () => {
    v.set("outer");
    const ctx = new Context();
    const results = await Promise.all([
      ctx.run(async () => {
        const token = v.set("in run");
        await sleep(1);
        v.reset(token);
        return v.get("none");
      }),
      v.run("timer run", () => {
        const token = v.set("set");
        return new Promise<string>((resolve) =>
          setTimeout(() => {
            v.reset(token);
            resolve(v.get());
          }, 1),
        );
      }),
    ]);
    assert.deepEqual(results, ["none", "timer run"]);
    assert.equal(v.get(), "outer");
  });

  itFromEveryState("reset in a sibling's Context: ERR_TOKEN_CONTEXT_MISMATCH", async () => {
    let token: Token<string> | undefined;
    const made = createTask(async () => {
      token = v.set("a");
      await sleep(2);
      return v.get();
    });
    const misuse = createTask(async () => {
      await sleep(1);
      assert.ok(token !== undefined);
      v.reset(token);
    });
    await assert.rejects(
      misuse,
      (e) => e instanceof TokenMismatchError && e.code === "ERR_TOKEN_CONTEXT_MISMATCH",
    );
    assert.equal(await made, "a", "the failed reset changed nothing");
    assert.equal(token?.used, false);
  });
});

describe("`using _ = v.set(x)` in an async function", () => {
  async function scoped(value: string, delay: number, seen: string[]): Promise<void> {
    using _ = v.set(value);
    seen.push(v.get());
    await sleep(delay);
    seen.push(v.get());
  }

  // Pinned: a directly called async function runs in its caller's Context
  // (no copy is made; an async function is not a task), so its `using` set is
  // what the caller sees until the callee returns and disposes the token.
  itFromEveryState(
    "called directly, it changes the caller's Context until it returns",
    async () => {
      v.set("outer");
      const seen: string[] = [];
      const pending = scoped("inside", 1, seen);
      assert.equal(v.get(), "inside");
      await pending;
      assert.equal(v.get(), "outer");
      assert.deepEqual(seen, ["inside", "inside"]);
    },
  );

  // Pinned: interleaved direct calls dispose out of order, and reset restores
  // each token's old value, so the caller is left with a's value (Python's
  // reset does the same). Another reason to give each call its own Context.
  itFromEveryState("interleaved direct calls leave the caller with a stale value", async () => {
    v.set("outer");
    const seen: string[] = [];
    await Promise.all([scoped("a", 1, seen), scoped("b", 3, seen)]);
    assert.equal(v.get(), "a");
  });

  itFromEveryState("createTask, gather and isolated keep it inside", async () => {
    v.set("outer");
    const seen: string[] = [];
    const isolatedScoped = isolated(scoped);
    const pending = Promise.all([
      createTask(() => scoped("task", 2, seen)),
      gather(
        () => scoped("gather a", 1, seen),
        () => scoped("gather b", 2, seen),
      ),
      isolatedScoped("isolated", 1, seen),
    ]);
    assert.equal(v.get(), "outer");
    await pending;
    assert.equal(v.get(), "outer");
    for (const name of ["task", "gather a", "gather b", "isolated"]) {
      assert.equal(seen.filter((s) => s === name).length, 2, name);
    }
  });
});
