import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { bindEmitter, Context, ContextVar, copyContext } from "contextvars";
import {
  bindEarlierListeners,
  bindPrototype,
  bindToRequest,
} from "../../src/integrations/request-emitters.ts";

const v = new ContextVar<string>("v");

function requestContext(value: string): Context {
  const context = new Context();
  context.run(() => v.set(value));
  return context;
}

type Strategy = "bindToRequest" | "bindPrototype";

// As Express does to req and res: each native prototype gets an app's child of it.
const appPrototypes = new Map<object, object>();
function asApp<E extends EventEmitter>(strategy: Strategy, emitter: E): E {
  if (strategy === "bindToRequest") return emitter;
  const native = Object.getPrototypeOf(emitter) as object;
  let app = appPrototypes.get(native);
  if (app === undefined) {
    app = Object.create(native) as object;
    appPrototypes.set(native, app);
  }
  return Object.setPrototypeOf(emitter, app) as E;
}

// bindPrototype's lookup: first filed wins, as in request-scope.ts.
const contexts = new WeakMap<object, Context>();
const lookup = (self: object) => contexts.get(self);

function bindWith(strategy: Strategy, emitter: EventEmitter, context: Context): void {
  if (strategy === "bindToRequest") {
    bindToRequest(emitter, context);
    return;
  }
  if (!contexts.has(emitter)) contexts.set(emitter, context);
  bindPrototype(Object.getPrototypeOf(emitter) as object, lookup);
}

// As cls-hooked's bindEmitter does (through shimmer): listener methods of the
// object's own, which call the ones it found there.
function bindByAnotherLibrary(emitter: EventEmitter): void {
  const methods = emitter as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of ["on", "addListener", "prependListener", "once", "prependOnceListener"]) {
    const found = methods[name] as (...args: unknown[]) => unknown;
    methods[name] = function (this: unknown, ...args: unknown[]) {
      return Reflect.apply(found, this, args);
    };
  }
}

for (const strategy of ["bindToRequest", "bindPrototype"] as const) {
  describe(strategy, () => {
    const emitterFor = (_strategy: Strategy) => asApp(strategy, new EventEmitter());
    const bindTo = (emitter: EventEmitter, context: Context) =>
      bindWith(strategy, emitter, context);
    it("listeners run in the request's Context itself, whoever emits", () => {
      const context = requestContext("request");
      const emitter = emitterFor(strategy);
      bindTo(emitter, context);
      const seen: string[] = [];
      emitter.on("x", () => {
        seen.push(v.get());
        v.set("set by a listener"); // lands in the request's Context, as any continuation's would
      });
      new Context().run(() => v.run("emitter", () => emitter.emit("x")));
      assert.deepEqual(seen, ["request"]);
      assert.equal(context.get(v), "set by a listener");
    });

    it("`this` and the arguments pass through; every adder is bound", () => {
      const context = requestContext("r");
      const emitter = emitterFor(strategy);
      bindTo(emitter, context);
      const calls: string[] = [];
      function listener(this: unknown, a: unknown, b: unknown): void {
        assert.equal(this, emitter);
        calls.push(`${v.get()} ${String(a)} ${String(b)}`);
      }
      emitter.on("e", listener);
      emitter.addListener("e", listener);
      emitter.prependListener("e", listener);
      emitter.once("e", listener);
      emitter.prependOnceListener("e", listener);
      emitter.emit("e", 1, 2);
      emitter.emit("e", 3, 4);
      assert.deepEqual(calls, [...Array(5).fill("r 1 2"), ...Array(3).fill("r 3 4")]);
    });

    it("removeListener and off take the original listener; listeners() shows originals", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("r"));
      let count = 0;
      const listener = () => count++;
      emitter.on("e", listener);
      emitter.once("f", listener);
      emitter.prependOnceListener("g", listener);
      assert.deepEqual(emitter.listeners("e"), [listener]);
      assert.deepEqual(emitter.listeners("f"), [listener]);
      assert.deepEqual(emitter.listeners("g"), [listener]);
      emitter.off("e", listener);
      emitter.removeListener("f", listener);
      emitter.removeListener("g", listener);
      emitter.emit("e");
      emitter.emit("f");
      emitter.emit("g");
      assert.equal(count, 0);
      assert.equal(
        emitter.listenerCount("e") + emitter.listenerCount("f") + emitter.listenerCount("g"),
        0,
      );
    });

    it("a once listener runs once and removes itself", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("r"));
      let count = 0;
      emitter.once("e", () => count++);
      emitter.emit("e");
      emitter.emit("e");
      assert.equal(count, 1);
      assert.equal(emitter.listenerCount("e"), 0);
    });

    it("a once listener runs once when an earlier listener re-emits the event", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("r"));
      let depth = 0;
      let count = 0;
      emitter.on("e", () => {
        if (depth++ === 0) emitter.emit("e");
      });
      emitter.once("e", () => count++);
      emitter.emit("e");
      assert.equal(count, 1);
    });

    it("prependListener and prependOnceListener put their listener first", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("r"));
      const order: string[] = [];
      emitter.on("e", () => order.push("on"));
      emitter.prependListener("e", () => order.push("prepended"));
      emitter.prependOnceListener("e", () => order.push("prepended once"));
      emitter.emit("e");
      assert.deepEqual(order, ["prepended once", "prepended", "on"]);
    });

    it("events.once() and stream internals work on a bound stream", async () => {
      const context = requestContext("streamed");
      const stream = asApp(strategy, new PassThrough());
      bindTo(stream, context);
      const chunks: string[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(`${v.get()}:${chunk.toString()}`));
      const ended = once(stream, "end");
      setTimeout(() => stream.end("a"), 1);
      await ended;
      assert.deepEqual(chunks, ["streamed:a"]);
    });

    it("binding twice keeps the first Context; non-function listeners throw Node's TypeError", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("first"));
      bindTo(emitter, requestContext("second"));
      let seen = "";
      emitter.on("e", () => {
        seen = v.get();
      });
      emitter.emit("e");
      assert.equal(seen, "first");
      assert.throws(() => emitter.on("e", 42 as never), { code: "ERR_INVALID_ARG_TYPE" });
      assert.equal(copyContext().has(v), false);
    });

    it("the emitter stays what it was: instanceof, prototype methods, unbound siblings", () => {
      const emitter = emitterFor(strategy);
      const sibling = emitterFor(strategy);
      bindTo(emitter, requestContext("r"));
      assert.ok(emitter instanceof EventEmitter);
      if (strategy === "bindPrototype") {
        const before = Object.getPrototypeOf(emitter) as object;
        const other = emitterFor(strategy);
        bindTo(other, requestContext("s"));
        assert.equal(Object.getPrototypeOf(other), before, "the prototype is patched, not swapped");
        assert.ok(Object.hasOwn(before, "on") && !Object.hasOwn(emitter, "on"));
      } else {
        assert.ok(Object.hasOwn(emitter, "on"));
      }
      let seen = "";
      sibling.on("e", () => {
        seen = v.get("unset");
      });
      sibling.emit("e");
      assert.equal(seen, "unset", "an emitter that was not bound is untouched");
      v.run("emitter", () => sibling.emit("e"));
      assert.equal(seen, "emitter", "its listener runs where it is emitted");
      // A bound adder borrowed for another emitter adds there as EventEmitter's own does.
      const stranger = new EventEmitter();
      let heard = "";
      emitter.on.call(stranger, "e", () => {
        heard = v.get("unset");
      });
      assert.equal(stranger.listenerCount("e"), 1);
      stranger.emit("e");
      assert.equal(heard, "unset");
      v.run("emitter", () => stranger.emit("e"));
      assert.equal(heard, "emitter");
    });

    it("a listener's return value reaches the emitter, once or not: with captureRejections, a rejection is its 'error'", async () => {
      const emitter = asApp(strategy, new EventEmitter({ captureRejections: true }));
      bindTo(emitter, requestContext("r"));
      const boom = new Error("boom");
      emitter.on("e", async () => {
        throw boom;
      });
      const failed = once(emitter, "error");
      emitter.emit("e");
      assert.deepEqual(await failed, [boom]);
      const onceBoom = new Error("once boom");
      emitter.once("f", async () => {
        throw onceBoom;
      });
      const onceFailed = once(emitter, "error");
      emitter.emit("f");
      assert.deepEqual(await onceFailed, [onceBoom]);
    });

    // bindEmitter on an emitter bound to the Context named "request": it
    // comes back as it is, its listeners run there, and their originals
    // remove them. Returns what the listeners saw.
    function expectBoundToRequestAlready(emitter: EventEmitter): string[] {
      const seen: string[] = [];
      const removed = () => seen.push("removed listener called");
      assert.equal(
        v.run("elsewhere", () => bindEmitter(emitter, requestContext("other"))),
        emitter,
      );
      emitter.on("x", removed);
      assert.deepEqual(emitter.listeners("x"), [removed]);
      emitter.removeListener("x", removed);
      assert.equal(emitter.listenerCount("x"), 0);
      emitter.once("x", () => seen.push(`once: ${v.get()}`));
      emitter.on("x", () => seen.push(`on: ${v.get()}`));
      v.run("emitter", () => emitter.emit("x"));
      v.run("emitter", () => emitter.emit("x"));
      assert.deepEqual(seen, ["once: request", "on: request", "on: request"]);
      return seen;
    }

    it("bindEmitter on an emitter bound to a request returns it as it is: listeners run in the request's Context, and their originals remove them", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("request"));
      const seen = expectBoundToRequestAlready(emitter);
      // An emitter with the same methods but no request of its own is bound as any other.
      const unbound = emitterFor(strategy);
      const bound = v.run("caller", () => bindEmitter(unbound));
      bound.on("y", () => seen.push(`unbound: ${v.get()}`));
      v.run("emitter", () => unbound.emit("y"));
      assert.equal(seen.at(-1), "unbound: caller");
    });

    it("bindEmitter on an emitter bound to a request, then by another library whose methods call ours (cls-hooked's bindEmitter): returns it as it is, and a listener's original removes it", () => {
      const emitter = emitterFor(strategy);
      bindTo(emitter, requestContext("request"));
      bindByAnotherLibrary(emitter);
      expectBoundToRequestAlready(emitter);
    });
  });
}

describe("bindPrototype on a prototype chained to a patched one", () => {
  it("leaves it as it is: a listener is wrapped once, runs once, and its original removes it", () => {
    // As an Express sub-app mounted with app.use: its prototype's parent is the app's.
    const parent = Object.create(PassThrough.prototype) as object;
    const child = Object.create(parent) as object;
    const stream = Object.setPrototypeOf(new PassThrough(), child) as PassThrough;
    contexts.set(stream, requestContext("request"));
    bindPrototype(parent, lookup);
    bindPrototype(child, lookup);
    assert.equal(Object.hasOwn(child, "on"), false, "the parent's methods are inherited");
    const seen: string[] = [];
    const listener = () => seen.push(v.get("unset"));
    stream.on("x", listener);
    assert.equal(
      (stream.rawListeners("x")[0] as { listener?: unknown }).listener,
      listener,
      "one wrapper, carrying the original",
    );
    stream.emit("x");
    stream.removeListener("x", listener);
    stream.emit("x");
    assert.deepEqual(seen, ["request"]);
    // A pipe undone: its data listener goes with it.
    const sink = new PassThrough();
    stream.pipe(sink);
    stream.unpipe(sink);
    assert.equal(stream.listenerCount("data"), 0);
  });
});

describe("bindEarlierListeners", () => {
  it("listeners added before the binding run in the request's Context too, in their order", () => {
    const context = requestContext("request");
    const emitter = new EventEmitter();
    const seen: string[] = [];
    const first = (a: unknown) => seen.push(`first ${v.get("none")} ${String(a)}`);
    emitter.on("e", first);
    emitter.once("e", () => seen.push(`once ${v.get("none")}`));
    emitter.on("other", () => seen.push(`other ${v.get("none")}`));
    bindToRequest(emitter, context);
    bindEarlierListeners(emitter, "e");
    emitter.on("e", () => seen.push(`later ${v.get("none")}`));
    new Context().run(() => v.run("emitter", () => emitter.emit("e", 1)));
    emitter.emit("e", 2);
    emitter.emit("other");
    assert.deepEqual(seen, [
      "first request 1",
      "once request",
      "later request",
      "first request 2",
      "later request",
      "other none",
    ]);
    assert.deepEqual(emitter.listeners("e").slice(0, 1), [first], "listeners() shows the original");
    emitter.removeListener("e", first);
    assert.equal(emitter.listenerCount("e"), 1);
  });

  it("a once listener is still removed by its original before it fires; no listeners: nothing", () => {
    const emitter = new EventEmitter();
    let count = 0;
    const listener = () => count++;
    emitter.once("e", listener);
    bindToRequest(emitter, requestContext("r"));
    bindEarlierListeners(emitter, "e");
    bindEarlierListeners(emitter, "none");
    emitter.removeListener("e", listener);
    emitter.emit("e");
    assert.equal(count, 0);
    assert.equal(emitter.listenerCount("e") + emitter.listenerCount("none"), 0);
  });
});
