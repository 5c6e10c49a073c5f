/**
 * How the current Context travels: across awaits between sibling runs and
 * tasks, into MessagePort listeners, AbortSignal listeners and plain
 * EventEmitter listeners, and back out of `ctx.run` when fn throws or rejects.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { MessageChannel } from "node:worker_threads";
import { Context, ContextEnteredError, ContextVar, createTask, gather } from "contextvars";
import { pinContext } from "../helpers/pin-context.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });

describe("awaits between siblings", () => {
  itFromEveryState(
    "Context.run, var.run and createTask siblings never see each other",
    async () => {
      v.set("parent");
      const worker = async (name: string): Promise<string[]> => {
        const seen = [v.get()];
        await sleep(2);
        v.set(`${name}-2`);
        await null;
        seen.push(v.get());
        await sleep(2);
        seen.push(v.get());
        return seen;
      };
      const results = await Promise.all([
        new Context().run(() => worker("ctx")),
        v.run("run", () => worker("run")),
        createTask(() => worker("task")),
      ]);
      assert.deepEqual(results, [
        ["unset", "ctx-2", "ctx-2"],
        ["run", "run-2", "run-2"],
        ["parent", "task-2", "task-2"],
      ]);
      assert.equal(v.get(), "parent");
    },
  );
});

describe("MessagePort listeners", () => {
  // Pinned on Node 20: a port's listener runs in the Context that was current
  // when the MessageChannel was *created* (the port is an async resource made
  // then) — neither where onmessage/on("message") was registered nor where
  // postMessage was called. Sets in the listener land in that creating Context.
  itFromEveryState("onmessage sees the Context that created the channel", async () => {
    const creating = new Context();
    const channel = creating.run(() => {
      v.set("created");
      return new globalThis.MessageChannel();
    });
    const seen = new Promise<string>((resolve) => {
      v.run("registered", () => {
        channel.port2.onmessage = () => {
          resolve(v.get());
          v.set("set by listener");
        };
      });
    });
    v.run("posted", () => channel.port1.postMessage("x"));
    assert.equal(await seen, "created");
    channel.port1.close();
    assert.equal(creating.get(v), "set by listener");
  });

  itFromEveryState("on('message') of sibling channels: each sees its creator", async () => {
    const listen = (name: string) =>
      v.run(name, () => {
        const channel = new MessageChannel();
        const got: string[] = [];
        const done = new Promise<string[]>((resolve) => {
          v.run("registered", () =>
            channel.port2.on("message", () => {
              got.push(v.get());
              if (got.length === 2) resolve(got);
            }),
          );
        });
        return { channel, done };
      });
    const a = listen("a");
    const b = listen("b");
    v.run("posted", () => {
      a.channel.port1.postMessage(1);
      b.channel.port1.postMessage(1);
      b.channel.port1.postMessage(2);
      a.channel.port1.postMessage(2);
    });
    assert.deepEqual(await Promise.all([a.done, b.done]), [
      ["a", "a"],
      ["b", "b"],
    ]);
    a.channel.port1.close();
    b.channel.port1.close();
  });
});

describe("AbortSignal listeners", () => {
  // Pinned: an abort listener runs synchronously inside abort(), so it sees
  // the Context of the code calling abort(), not the one that added it.
  itFromEveryState("a listener sees the Context of the code calling abort()", async () => {
    const controllers = [new AbortController(), new AbortController()];
    const seen: string[] = [];
    v.run("registered", () => {
      for (const c of controllers) {
        c.signal.addEventListener("abort", () => seen.push(`listener:${v.get()}`));
        c.signal.onabort = () => seen.push(`onabort:${v.get()}`);
      }
    });
    await gather(
      async () => {
        v.set("first");
        await sleep(2);
        controllers[0]?.abort();
      },
      async () => {
        v.set("second");
        await sleep(2);
        controllers[1]?.abort();
      },
    );
    assert.deepEqual(seen, [
      "listener:first",
      "onabort:first",
      "listener:second",
      "onabort:second",
    ]);
  });
});

describe("plain EventEmitter listeners", () => {
  // A plain emitter calls listeners inside emit(): they run in the Context of
  // the code calling emit (use bindEmitter to run them where they were bound).
  itFromEveryState("a listener runs in the Context of the emit caller", async () => {
    const emitter = new EventEmitter();
    const seen: string[] = [];
    v.run("registered", () =>
      emitter.on("tick", (who: string) => {
        seen.push(`${who}:${v.get()}`);
        v.set("set by listener");
      }),
    );
    const emitTwice = async (name: string): Promise<string> => {
      v.set(name);
      emitter.emit("tick", name);
      await sleep(1);
      v.set(name);
      emitter.emit("tick", name);
      return v.get();
    };
    const after = await gather(
      () => emitTwice("a"),
      () => emitTwice("b"),
    );
    assert.deepEqual(seen.sort(), ["a:a", "a:a", "b:b", "b:b"]);
    assert.deepEqual(after, ["set by listener", "set by listener"]);
  });
});

describe("ctx.run restores the outer Context", () => {
  itFromEveryState("when fn throws synchronously", () => {
    v.set("outer");
    const ctx = new Context();
    const boom = new Error("boom");
    assert.throws(
      () =>
        ctx.run(() => {
          v.set("inner");
          throw boom;
        }),
      (e) => e === boom,
    );
    assert.equal(v.get(), "outer");
    assert.equal(ctx.get(v), "inner");
  });

  itFromEveryState("when the async fn rejects, with a sibling run interleaved", async () => {
    v.set("outer");
    const reject = (name: string) => {
      const ctx = new Context();
      const promise = ctx.run(async () => {
        v.set(`${name}-before`);
        await sleep(2);
        v.set(`${name}-after`);
        throw new Error(name);
      });
      assert.equal(v.get(), "outer", "restored as soon as fn returns its promise");
      return { ctx, promise };
    };
    const a = reject("a");
    const b = reject("b");
    await assert.rejects(a.promise, /a/);
    await assert.rejects(b.promise, /b/);
    assert.equal(v.get(), "outer");
    assert.deepEqual([a.ctx.get(v), b.ctx.get(v)], ["a-after", "b-after"]);
  });
});

describe("entering a Context that is already running", () => {
  itFromEveryState("ctx.run inside ctx.run throws ContextEnteredError; a copy runs", () => {
    const ctx = new Context();
    ctx.run(() => {
      v.set("in ctx");
      assert.throws(
        () => ctx.run(() => 0),
        (e) => e instanceof ContextEnteredError && e.code === "ERR_CONTEXT_ENTERED",
      );
      assert.equal(
        ctx.copy().run(() => v.get()),
        "in ctx",
      );
    });
  });

  itFromEveryState(
    "ctx.run reached again through other runs (another Context's, a var's, a copy's, a task's start) throws ContextEnteredError",
    async () => {
      const ctx = new Context();
      const other = new Context();
      const reenter = () => ctx.run(() => 0);
      const { seen, task } = ctx.run(() => ({
        seen: [
          () => other.run(reenter),
          () => v.run("inner", reenter),
          () => ctx.copy().run(reenter),
        ].map((path) => captureError(path)),
        // A task's function runs at once; its throw rejects the task.
        task: createTask(reenter),
      }));
      assert.equal(seen.length, 3);
      for (const error of seen) assert.ok(error instanceof ContextEnteredError);
      await assert.rejects(task, ContextEnteredError);
    },
  );

  itFromEveryState(
    "ctx.run from an async continuation of ctx runs in ctx; from inside that run it throws",
    async () => {
      const ctx = new Context();
      const fromTimer = new Promise<{ seen: string; nested: unknown; pinned: boolean }>(
        (resolve) => {
          ctx.run(() => {
            v.set("timer");
            setTimeout(() => {
              const pin = pinContext();
              const result = ctx.run(() => ({
                seen: v.get(),
                nested: captureError(() => ctx.run(() => 0)),
              }));
              pin.check("after the timer's run");
              resolve({ ...result, pinned: true });
            }, 1);
          });
        },
      );
      const fromAwait = ctx.run(async () => {
        await sleep(1);
        const pin = pinContext();
        const seen = ctx.run(() => {
          const before = v.get();
          v.set("set by the run");
          return before;
        });
        // The run's set landed in ctx, the Context this continuation runs in.
        const after = v.get();
        v.set("timer");
        pin.check("after the continuation's run");
        return { seen, after };
      });
      // Between steps nothing runs in ctx, so entering it from outside runs too.
      assert.equal(
        ctx.run(() => "outside"),
        "outside",
      );
      const [timer, awaited] = await Promise.all([fromTimer, fromAwait]);
      assert.equal(timer.seen, "timer");
      assert.ok(timer.nested instanceof ContextEnteredError);
      assert.ok(timer.pinned);
      assert.deepEqual(awaited, { seen: "timer", after: "set by the run" });
    },
  );
});

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}
