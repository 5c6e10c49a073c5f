/**
 * bindEmitter: listeners added after binding run in a fresh copy of the bound
 * Context, whoever calls emit; plus a real node:http request body read
 * through `req.on("data"/"end")`.
 */
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bindEmitter, type Context, ContextVar, copyContext, gather } from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

const v = new ContextVar<string>("v", { default: "unset" });

function contextWith(value: string): Context {
  return v.run(value, () => copyContext());
}

describe("bindEmitter", () => {
  itFromEveryState("listeners run in a fresh copy of the bound Context", async () => {
    const bound = contextWith("bound");
    const emitter = bindEmitter(new EventEmitter(), bound);
    const seen: string[] = [];
    emitter.on("tick", (who: string) => {
      seen.push(`${who}:${v.get()}`);
      v.set(`set by listener for ${who}`);
    });
    const emitFrom = async (name: string): Promise<string> => {
      v.set(name);
      emitter.emit("tick", name);
      await sleep(1);
      emitter.emit("tick", name);
      return v.get();
    };
    const after = await gather(
      () => emitFrom("a"),
      () => emitFrom("b"),
    );
    assert.deepEqual(seen, ["a:bound", "b:bound", "a:bound", "b:bound"]);
    assert.deepEqual(after, ["a", "b"], "the emit caller's Context is untouched");
    assert.equal(bound.get(v), "bound", "each call ran in a copy");
  });

  itFromEveryState("without a Context: a copy of the one current at bind time", () => {
    v.set("at bind");
    const emitter = bindEmitter(new EventEmitter());
    v.set("later");
    const seen: string[] = [];
    emitter.on("tick", () => seen.push(v.get()));
    v.run("emitter", () => emitter.emit("tick"));
    emitter.emit("tick");
    assert.deepEqual(seen, ["at bind", "at bind"]);
  });

  // Pinned: only listeners added after bindEmitter are bound; earlier ones
  // still run in the Context of the emit caller.
  itFromEveryState("listeners added before binding stay unbound", () => {
    const emitter = new EventEmitter();
    const seen: string[] = [];
    emitter.on("tick", () => seen.push(`before:${v.get()}`));
    bindEmitter(emitter, contextWith("bound"));
    emitter.on("tick", () => seen.push(`after:${v.get()}`));
    v.run("emitter", () => emitter.emit("tick"));
    assert.deepEqual(seen, ["before:emitter", "after:bound"]);
  });

  itFromEveryState("binding twice keeps the first Context", () => {
    const emitter = new EventEmitter();
    assert.equal(bindEmitter(emitter, contextWith("first")), emitter);
    assert.equal(bindEmitter(emitter, contextWith("second")), emitter);
    const seen: string[] = [];
    emitter.on("tick", () => seen.push(v.get()));
    emitter.emit("tick");
    assert.deepEqual(seen, ["first"]);
  });

  itFromEveryState("removeListener/off take the original listener", () => {
    const emitter = bindEmitter(new EventEmitter(), contextWith("bound"));
    let calls = 0;
    const listener = () => {
      calls++;
    };
    emitter.on("a", listener);
    emitter.addListener("b", listener);
    emitter.prependListener("c", listener);
    emitter.off("a", listener);
    emitter.removeListener("c", listener);
    assert.deepEqual(
      ["a", "b", "c"].map((e) => emitter.listenerCount(e)),
      [0, 1, 0],
    );
    emitter.emit("a");
    emitter.emit("b");
    emitter.emit("c");
    assert.equal(calls, 1);
  });

  itFromEveryState("prependListener fires every time, first, in the bound Context", () => {
    const emitter = bindEmitter(new EventEmitter(), contextWith("bound"));
    const seen: string[] = [];
    emitter.on("tick", () => seen.push(`on:${v.get()}`));
    emitter.prependListener("tick", () => seen.push(`prepend:${v.get()}`));
    v.run("emitter", () => emitter.emit("tick"));
    emitter.emit("tick");
    assert.deepEqual(seen, ["prepend:bound", "on:bound", "prepend:bound", "on:bound"]);
  });

  itFromEveryState("addListener is on: its listeners run in the bound Context too", () => {
    const emitter = bindEmitter(new EventEmitter(), contextWith("bound"));
    const seen: string[] = [];
    emitter.addListener("tick", () => seen.push(v.get()));
    v.run("emitter", () => emitter.emit("tick"));
    assert.deepEqual(seen, ["bound"]);
  });

  it("a listener that is not a function gets the emitter's own error, as from an unbound emitter", () => {
    const plain = (() => {
      try {
        new EventEmitter().on("tick", 42 as never);
      } catch (error) {
        return error as Error & { code?: string };
      }
      return undefined;
    })();
    assert.equal(plain?.code, "ERR_INVALID_ARG_TYPE");
    const emitter = bindEmitter(new EventEmitter());
    for (const add of [
      "on",
      "addListener",
      "once",
      "prependListener",
      "prependOnceListener",
    ] as const) {
      assert.throws(
        () => emitter[add]("tick", 42 as never),
        (e: unknown) =>
          e instanceof TypeError &&
          (e as { code?: string }).code === plain?.code &&
          e.message === plain?.message,
        add,
      );
    }
  });

  it("an emitter without prependListener is given none, and one without rawListeners keeps its removeAllListeners", () => {
    const listeners: unknown[] = [];
    const removeAllListeners = () => {
      listeners.length = 0;
    };
    const minimal = {
      on(_event: string, listener: unknown) {
        listeners.push(listener);
        return this;
      },
      removeListener() {
        return this;
      },
      listenerCount: () => 1,
      removeAllListeners,
    };
    bindEmitter(minimal as unknown as EventEmitter);
    assert.equal("prependListener" in minimal, false);
    assert.equal("prependOnceListener" in minimal, false);
    assert.equal(minimal.removeAllListeners, removeAllListeners);
    minimal.on("tick", () => {});
    assert.equal(listeners.length, 1);
  });

  itFromEveryState("once and prependOnceListener fire once, in the bound Context", async () => {
    const emitter = bindEmitter(new EventEmitter(), contextWith("bound"));
    const seen: string[] = [];
    emitter.once("tick", () => seen.push(`once:${v.get()}`));
    emitter.prependOnceListener("tick", () => seen.push(`prepend:${v.get()}`));
    const awaited = v.run("waiter", async () => {
      await once(emitter, "tick");
      return v.get();
    });
    v.run("emitter", () => {
      emitter.emit("tick");
      emitter.emit("tick");
    });
    assert.deepEqual(seen, ["prepend:bound", "once:bound"]);
    assert.equal(emitter.listenerCount("tick"), 0);
    assert.equal(await awaited, "waiter");
  });

  itFromEveryState("a once listener removed with the original listener never fires", () => {
    const emitter = bindEmitter(new EventEmitter(), contextWith("bound"));
    let calls = 0;
    const listener = () => {
      calls++;
    };
    emitter.once("a", listener);
    emitter.prependOnceListener("b", listener);
    emitter.off("a", listener);
    emitter.removeListener("b", listener);
    assert.deepEqual([emitter.listenerCount("a"), emitter.listenerCount("b")], [0, 0]);
    emitter.emit("a");
    emitter.emit("b");
    assert.equal(calls, 0);
  });

  itFromEveryState("emitters bound in sibling tasks, emitted interleaved", async () => {
    const source = new EventEmitter();
    const seen: string[] = [];
    const listen = async (name: string): Promise<string> => {
      v.set(name);
      const emitter = bindEmitter(new EventEmitter());
      emitter.on("tick", (n: number) => seen.push(`${name}${n}:${v.get()}`));
      source.on("tick", (n: number) => emitter.emit("tick", n));
      const done = once(emitter, "done");
      source.once("done", () => emitter.emit("done"));
      await done;
      return v.get();
    };
    const results = gather(
      () => listen("a"),
      () => listen("b"),
    );
    // Both tasks started eagerly and are now waiting for "done".
    v.run("emitter", () => {
      source.emit("tick", 1);
      source.emit("tick", 2);
      source.emit("done");
    });
    assert.deepEqual(await results, ["a", "b"]);
    assert.deepEqual(seen, ["a1:a", "b1:b", "a2:a", "b2:b"]);
  });
});

describe("bindEmitter: the emitter reports the listeners it was given, as a plain one does", () => {
  /** Runs the same calls on a plain and on a bound emitter; returns what each reports. */
  function onBoth(calls: (emitter: EventEmitter) => unknown): [unknown, unknown] {
    return [calls(new EventEmitter()), calls(bindEmitter(new EventEmitter(), contextWith("b")))];
  }
  const same = (results: [unknown, unknown]) => assert.deepEqual(results[1], results[0]);

  it("listeners(), listenerCount(event, fn), rawListeners()' originals, and a guarded re-add", () => {
    const onTick = () => {};
    const onDone = () => {};
    same(
      onBoth((e) => {
        e.on("tick", onTick);
        e.once("done", onDone);
        if (!e.listeners("tick").includes(onTick)) e.on("tick", onTick);
        return [
          e.listeners("tick").map((l) => l === onTick),
          e.listeners("done").map((l) => l === onDone),
          e.listenerCount("tick"),
          e.listenerCount("tick", onTick),
          e.rawListeners("done").map((l) => (l as { listener?: unknown }).listener === onDone),
        ];
      }),
    );
  });

  it("newListener and removeListener events receive the original listener", () => {
    const onTick = () => {};
    same(
      onBoth((e) => {
        const heard: unknown[] = [];
        e.on("newListener", (event: string, l: unknown) => {
          if (event === "tick") heard.push(["new", l === onTick]);
        });
        e.on("removeListener", (event: string, l: unknown) => {
          if (event === "tick") heard.push(["removed", l === onTick]);
        });
        e.on("tick", onTick);
        e.off("tick", onTick);
        e.once("tick", onTick);
        e.emit("tick");
        return heard;
      }),
    );
  });

  it("removeAllListeners, with and without an event, reports each listener as it was given", () => {
    const f = () => {};
    const g = () => {};
    const h = () => {};
    same(
      onBoth((e) => {
        const heard: unknown[] = [];
        e.on("removeListener", (event: string, l: unknown) => {
          heard.push([event, [f, g, h].indexOf(l as () => void)]);
        });
        // Two or more listeners of one event: Node reports each as the emitter holds it.
        e.on("tick", f);
        e.prependListener("tick", g);
        e.on("tick", f);
        e.removeAllListeners("tick");
        e.on("tock", h);
        e.on("tock", g);
        e.on("tick", f);
        e.removeAllListeners();
        return [heard, e.eventNames()];
      }),
    );
  });

  it("removeAllListeners reports a once listener among others as a plain emitter does: a wrapper whose listener is the original", () => {
    const f = () => {};
    const g = () => {};
    same(
      onBoth((e) => {
        const heard: unknown[] = [];
        e.on("removeListener", (event: string, l: unknown) => {
          const wrapped = (l as { listener?: unknown }).listener;
          heard.push([
            event,
            [f, g].indexOf(l as () => void),
            [f, g].indexOf(wrapped as () => void),
          ]);
        });
        e.on("tick", f);
        e.once("tick", g);
        e.prependOnceListener("tick", f);
        e.removeAllListeners("tick");
        e.once("tock", g);
        e.removeAllListeners("tock");
        return heard;
      }),
    );
  });

  it("each method returns the emitter, so calls chain", () => {
    same(
      onBoth((e) => {
        const f = () => {};
        const returned = [
          e.on("tick", f),
          e.addListener("tick", f),
          e.once("tick", f),
          e.prependListener("tick", f),
          e.prependOnceListener("tick", f),
          e.removeAllListeners("tick"),
        ];
        e.on("removeListener", f);
        e.on("tick", f);
        returned.push(e.removeAllListeners("tick"), e.removeAllListeners());
        return returned.map((r) => r === e);
      }),
    );
  });

  // With captureRejections, emit reads what a listener returns and turns a
  // rejected promise into an "error" event: a wrapper must return it.
  it("an async listener's rejection reaches 'error' under captureRejections, once listeners too", async () => {
    const plain = new EventEmitter({ captureRejections: true });
    const bound = bindEmitter(new EventEmitter({ captureRejections: true }), contextWith("b"));
    const heard = await Promise.all(
      [plain, bound].map(async (e) => {
        const errors: string[] = [];
        e.on("error", (error: Error) => errors.push(error.message));
        e.on("tick", async () => {
          throw new Error("on");
        });
        e.once("tick", async () => {
          throw new Error("once");
        });
        e.prependOnceListener("tick", async () => {
          throw new Error("prependOnce");
        });
        e.emit("tick");
        await sleep(5);
        return errors;
      }),
    );
    assert.deepEqual(heard[0], ["prependOnce", "on", "once"]);
    assert.deepEqual(heard[1], heard[0]);
  });

  it('a listener added twice is removed once at a time; 1 and "1" are the same event', () => {
    same(
      onBoth((e) => {
        const calls: string[] = [];
        const f = () => calls.push("f");
        e.on("tick", f);
        e.on("tick", f);
        e.removeListener("tick", f);
        e.emit("tick");
        e.on(1 as unknown as string, f);
        e.off("1", f);
        e.emit(1 as unknown as string);
        e.prependOnceListener("tick", f);
        e.off("tick", f);
        e.emit("tick");
        return [calls, e.listenerCount("tick"), e.eventNames()];
      }),
    );
  });
});

describe("bindEmitter on a node:http IncomingMessage", () => {
  itFromEveryState("req.on('data'/'end') see each request's own run", async () => {
    const chunksSeen = new Map<string, () => void>();
    const handlerSaw: string[] = [];
    const server = http.createServer((req, res) => {
      const id = String(req.headers["x-id"]);
      handlerSaw.push(v.get());
      v.run(id, () => {
        const unbound: string[] = [];
        req.on("data", (chunk: Buffer) => unbound.push(`${chunk.toString()}:${v.get()}`));
        bindEmitter(req);
        const seen: string[] = [];
        req.on("data", (chunk: Buffer) => {
          seen.push(`${chunk.toString()}:${v.get()}`);
          chunksSeen.get(id)?.();
        });
        req.on("end", () => {
          seen.push(`end:${v.get()}`);
          // The first chunk may be emitted from a nextTick the handler queued;
          // the second surely comes from a socket read.
          res.end(`${seen.join(",")} | unbound ${unbound.slice(1).join(",")}`);
        });
      });
    });
    // Pinned: the request listener and the socket's callbacks run in the
    // Context current where server.listen was called (not createServer).
    v.run("listen", () => server.listen(0, "127.0.0.1"));
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    try {
      const post = (id: string) => {
        const req = http.request({
          host: "127.0.0.1",
          port,
          method: "POST",
          headers: { "x-id": id },
        });
        const response = once(req, "response").then(async ([res]: http.IncomingMessage[]) => {
          let body = "";
          for await (const chunk of res as AsyncIterable<Buffer>) body += chunk.toString();
          return body;
        });
        return { req, response };
      };
      // Each request's next chunk is sent only once the server has read the
      // previous one, so the two bodies interleave on the server for sure.
      const chunkRead = (id: string) => new Promise<void>((resolve) => chunksSeen.set(id, resolve));
      const a = post("r1");
      const b = post("r2");
      let readA = chunkRead("r1");
      let readB = chunkRead("r2");
      a.req.write("a1");
      b.req.write("b1");
      await Promise.all([readA, readB]);
      readA = chunkRead("r1");
      readB = chunkRead("r2");
      b.req.write("b2");
      a.req.write("a2");
      await Promise.all([readA, readB]);
      a.req.end();
      b.req.end();
      // Pinned: a listener added without bindEmitter sees, for a chunk read
      // later from the socket, the Context where server.listen was called —
      // not the handler's run. That is how body parsers lose the context.
      assert.deepEqual(await Promise.all([a.response, b.response]), [
        "a1:r1,a2:r1,end:r1 | unbound a2:listen",
        "b1:r2,b2:r2,end:r2 | unbound b2:listen",
      ]);
      assert.deepEqual(handlerSaw, ["listen", "listen"]);
    } finally {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    }
  });
});

describe("bindEmitter: once under a re-entrant emit", () => {
  it("a once listener fires once when an earlier listener emits the same event", () => {
    const emitter = bindEmitter(new EventEmitter());
    let calls = 0;
    let depth = 0;
    emitter.on("x", () => {
      if (depth++ === 0) emitter.emit("x");
    });
    emitter.once("x", () => calls++);
    emitter.emit("x");
    assert.equal(calls, 1);
  });
});
