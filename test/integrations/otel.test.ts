/**
 * OpenTelemetry JS's own suite for its context managers
 * (packages/opentelemetry-context-async-hooks/test/AsyncHooksContextManager.test.ts),
 * ported to node:test and run, as there, over every manager: ours and
 * `AsyncLocalStorageContextManager`, so any difference between the two shows
 * up as a failure of one of them. Tests keep their original names. The
 * `attach()` tests are in otel-attach.test.ts.
 * Scopes that the original writes as `'1' as any` are real contexts here.
 */
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import { createServer } from "node:http";
import { afterEach, beforeEach, describe, it } from "node:test";
import {
  type ContextManager,
  createContextKey,
  type Context as OtelContext,
  ROOT_CONTEXT,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { bindEmitter, ContextVar, copyContext } from "contextvars";
import { contextMiddleware } from "contextvars/express";
import { withContext } from "contextvars/http";
import { ContextVarsContextManager } from "contextvars/otel";
import express from "express";
import { close, listen, sendJson } from "../helpers/http.ts";

type Done = (result?: unknown) => void;

const managers: { name: string; make: () => ContextManager }[] = [
  { name: "ContextVarsContextManager", make: () => new ContextVarsContextManager() },
  { name: "AsyncLocalStorageContextManager", make: () => new AsyncLocalStorageContextManager() },
];

const key1 = createContextKey("test key 1");
const scope = (name: string): OtelContext => ROOT_CONTEXT.setValue(key1, name);

for (const { name, make } of managers) {
  describe(name, () => {
    let contextManager: ContextManager;
    let otherContextManager: ContextManager | undefined;

    beforeEach(() => {
      contextManager = make();
      contextManager.enable();
    });

    afterEach(() => {
      contextManager.disable();
      otherContextManager?.disable();
    });

    describe(".enable()", () => {
      it("should work", () => {
        contextManager = make();
        assert.ok(contextManager.enable() === contextManager, "should return this");
      });
    });

    describe(".disable()", () => {
      it("should work", () => {
        assert.ok(contextManager.disable() === contextManager, "should return this");
        contextManager.enable();
      });

      // Not in the original: what disable() does to contexts already entered.
      it("forgets the contexts it holds, and with() works again after it", () => {
        const ctx = scope("ctx");
        contextManager.with(ctx, () => {
          contextManager.disable();
          assert.equal(contextManager.active(), ROOT_CONTEXT);
          contextManager.with(ctx, () => assert.equal(contextManager.active(), ctx));
        });
      });
    });

    describe(".with()", () => {
      it("should run the callback (null as target)", (_t, done: Done) => {
        contextManager.with(ROOT_CONTEXT, done);
      });

      it("should run the callback (object as target)", (_t, done: Done) => {
        const test = ROOT_CONTEXT.setValue(key1, 1);
        contextManager.with(test, () => {
          assert.strictEqual(contextManager.active(), test, "should have context");
          return done();
        });
      });

      it("should run the callback (when disabled)", (_t, done: Done) => {
        contextManager.disable();
        contextManager.with(ROOT_CONTEXT, () => {
          contextManager.enable();
          return done();
        });
      });

      it("should rethrow errors", () => {
        assert.throws(() => {
          contextManager.with(ROOT_CONTEXT, () => {
            throw new Error("This should be rethrown");
          });
        });
      });

      it("should forward this, arguments and return value", () => {
        function fnWithThis(this: string, a: string, b: number): string {
          assert.strictEqual(this, "that");
          // biome-ignore lint/complexity/noArguments: the original checks how many arguments arrive
          assert.strictEqual(arguments.length, 2);
          assert.strictEqual(a, "one");
          assert.strictEqual(b, 2);
          return "done";
        }
        const res = contextManager.with(ROOT_CONTEXT, fnWithThis, "that", "one", 2);
        assert.strictEqual(res, "done");
        assert.strictEqual(
          contextManager.with(ROOT_CONTEXT, () => 3.14),
          3.14,
        );
      });

      it("should finally restore an old context", (_t, done: Done) => {
        const ctx1 = ROOT_CONTEXT.setValue(key1, "ctx1");
        const ctx2 = ROOT_CONTEXT.setValue(key1, "ctx2");
        contextManager.with(ctx1, () => {
          assert.strictEqual(contextManager.active(), ctx1);
          contextManager.with(ctx2, () => {
            assert.strictEqual(contextManager.active(), ctx2);
          });
          assert.strictEqual(contextManager.active(), ctx1);
          return done();
        });
      });

      it("should finally restore an old context", (_t, done: Done) => {
        const ctx1 = ROOT_CONTEXT.setValue(key1, "ctx1");
        contextManager.with(ctx1, () => {
          assert.strictEqual(contextManager.active(), ctx1);
          setTimeout(() => {
            assert.strictEqual(contextManager.active(), ctx1);
            return done();
          });
        });
      });

      it('async function called from nested "with" sync function should return nested context', (_t, done: Done) => {
        const scope1 = scope("1");
        const scope2 = scope("2");
        const asyncFuncCalledDownstreamFromSync = async () => {
          await (async () => {})();
          assert.strictEqual(contextManager.active(), scope2);
          return done();
        };
        contextManager.with(scope1, () => {
          assert.strictEqual(contextManager.active(), scope1);
          contextManager.with(scope2, () => asyncFuncCalledDownstreamFromSync());
          assert.strictEqual(contextManager.active(), scope1);
        });
        assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      });

      it("should not loose the context", (_t, done: Done) => {
        const scope1 = scope("1");
        contextManager.with(scope1, async () => {
          assert.strictEqual(contextManager.active(), scope1);
          await new Promise((resolve) => setTimeout(resolve, 100));
          assert.strictEqual(contextManager.active(), scope1);
          return done();
        });
        assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      });

      it("should correctly restore context using async/await", async () => {
        const [scope1, scope2, scope3, scope4] = ["1", "2", "3", "4"].map(scope) as [
          OtelContext,
          OtelContext,
          OtelContext,
          OtelContext,
        ];
        await contextManager.with(scope1, async () => {
          assert.strictEqual(contextManager.active(), scope1);
          await contextManager.with(scope2, async () => {
            assert.strictEqual(contextManager.active(), scope2);
            await contextManager.with(scope3, async () => {
              assert.strictEqual(contextManager.active(), scope3);
              await contextManager.with(scope4, async () => {
                assert.strictEqual(contextManager.active(), scope4);
              });
              assert.strictEqual(contextManager.active(), scope3);
            });
            assert.strictEqual(contextManager.active(), scope2);
          });
          assert.strictEqual(contextManager.active(), scope1);
        });
        assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      });

      it("should works with multiple concurrent operations", (_t, done: Done) => {
        const [scope1, scope2, scope3, scope4] = ["1", "2", "3", "4"].map(scope) as [
          OtelContext,
          OtelContext,
          OtelContext,
          OtelContext,
        ];
        let scope4Called = false;
        contextManager.with(scope1, async () => {
          assert.strictEqual(contextManager.active(), scope1);
          setTimeout(async () => {
            await contextManager.with(scope3, async () => {
              assert.strictEqual(contextManager.active(), scope3);
            });
            assert.strictEqual(contextManager.active(), scope1);
            assert.strictEqual(scope4Called, true);
            return done();
          }, 100);
          assert.strictEqual(contextManager.active(), scope1);
        });
        assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
        contextManager.with(scope2, async () => {
          assert.strictEqual(contextManager.active(), scope2);
          setTimeout(() => {
            contextManager.with(scope4, async () => {
              assert.strictEqual(contextManager.active(), scope4);
              scope4Called = true;
            });
            assert.strictEqual(contextManager.active(), scope2);
          }, 20);
          assert.strictEqual(contextManager.active(), scope2);
        });
        assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
      });

      it("should work with timers using the same timeout", (_t, done: Done) => {
        let cnt = 3;
        function countDown() {
          cnt--;
          if (cnt === 0) done();
          if (cnt < 0) throw new Error("too many calls to countDown()");
        }
        const time1 = 2;
        const time2 = time1 + 1;
        const rootCtx = contextManager.active();
        const innerCtx = rootCtx.setValue(Symbol("test"), 23);
        contextManager.with(innerCtx, () => {
          setTimeout(() => {
            assert.strictEqual(contextManager.active(), innerCtx);
            countDown();
          }, time1);
        });
        setTimeout(() => {
          assert.strictEqual(contextManager.active(), rootCtx);
          countDown();
        }, time1);
        setTimeout(() => {
          assert.strictEqual(contextManager.active(), rootCtx);
          countDown();
        }, time2);
      });

      it("should not influence other instances", () => {
        const other = make().enable();
        otherContextManager = other;
        const context = ROOT_CONTEXT.setValue(key1, 2);
        const otherContext = ROOT_CONTEXT.setValue(key1, 3);
        contextManager.with(context, () => {
          assert.strictEqual(contextManager.active(), context);
          assert.strictEqual(other.active(), ROOT_CONTEXT);
          other.with(otherContext, () => {
            assert.strictEqual(contextManager.active(), context);
            assert.strictEqual(other.active(), otherContext);
          });
        });
      });
    });

    describe("a missing context (undefined or null, as a saved context that was never set)", () => {
      it("with(): active() is ROOT_CONTEXT inside, and the caller's after", async () => {
        const outer = scope("outer");
        for (const missing of [undefined, null]) {
          const missingContext = missing as unknown as OtelContext;
          contextManager.with(outer, () => {
            contextManager.with(missingContext, () => {
              assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
            });
            assert.strictEqual(contextManager.active(), outer);
          });
          await contextManager.with(missingContext, async () => {
            await null;
            assert.strictEqual(contextManager.active(), ROOT_CONTEXT);
          });
        }
      });

      it("bind(): the bound function and emitter see ROOT_CONTEXT", () => {
        const missingContext = undefined as unknown as OtelContext;
        const fn = contextManager.bind(missingContext, () => contextManager.active());
        const emitter = contextManager.bind(missingContext, new EventEmitter());
        let heard: OtelContext | undefined;
        emitter.on("x", () => {
          heard = contextManager.active();
        });
        contextManager.with(scope("caller"), () => {
          assert.strictEqual(fn(), ROOT_CONTEXT);
          emitter.emit("x");
        });
        assert.strictEqual(heard, ROOT_CONTEXT);
      });
    });

    describe(".bind(function)", () => {
      it("should return the same target (when enabled)", () => {
        const test = { a: 1 };
        assert.deepStrictEqual(contextManager.bind(ROOT_CONTEXT, test), test);
      });

      it("should return the same target (when disabled)", () => {
        contextManager.disable();
        const test = { a: 1 };
        assert.deepStrictEqual(contextManager.bind(ROOT_CONTEXT, test), test);
        contextManager.enable();
      });

      it("should return current context (when enabled)", (_t, done: Done) => {
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const fn = contextManager.bind(context, () => {
          assert.strictEqual(contextManager.active(), context, "should have context");
          return done();
        });
        fn();
      });

      it("should return current context (when disabled)", (_t, done: Done) => {
        contextManager.disable();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const fn = contextManager.bind(context, () => {
          assert.strictEqual(contextManager.active(), context, "should have context");
          return done();
        });
        fn();
      });

      it("should fail to return current context with async op", (_t, done: Done) => {
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const fn = contextManager.bind(context, () => {
          assert.strictEqual(contextManager.active(), context);
          setTimeout(() => {
            assert.strictEqual(contextManager.active(), context, "should have no context");
            return done();
          }, 100);
        });
        fn();
      });

      it("should not influence other instances", () => {
        const other = make().enable();
        otherContextManager = other;
        const context = ROOT_CONTEXT.setValue(key1, 2);
        const otherContext = ROOT_CONTEXT.setValue(key1, 3);
        const fn = other.bind(
          otherContext,
          contextManager.bind(context, () => {
            assert.strictEqual(contextManager.active(), context);
            assert.strictEqual(other.active(), otherContext);
          }),
        );
        fn();
      });

      // Not in the original: what a bound function passes through.
      it("keeps this, arguments, return value and length", () => {
        const context = scope("bound");
        const fn = contextManager.bind(
          context,
          function (this: { n: number }, a: number, b: number) {
            assert.strictEqual(contextManager.active(), context);
            return this.n + a + b;
          },
        );
        assert.equal(fn.length, 2);
        assert.equal(fn.call({ n: 1 }, 2, 3), 6);
      });
    });

    describe(".bind(event-emitter)", () => {
      it("should return the same target (when enabled)", () => {
        const ee = new EventEmitter();
        assert.deepStrictEqual(contextManager.bind(ROOT_CONTEXT, ee), ee);
      });

      it("should return the same target (when disabled)", () => {
        const ee = new EventEmitter();
        contextManager.disable();
        assert.deepStrictEqual(contextManager.bind(ROOT_CONTEXT, ee), ee);
      });

      it("should return current context and removeListener (when enabled)", (_t, done: Done) => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {
          assert.deepStrictEqual(contextManager.active(), context);
          patchedEE.removeListener("test", handler);
          assert.strictEqual(patchedEE.listeners("test").length, 0);
          return done();
        };
        patchedEE.on("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.emit("test");
      });

      it("should return current context and removeAllListener (when enabled)", (_t, done: Done) => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {
          assert.deepStrictEqual(contextManager.active(), context);
          patchedEE.removeAllListeners("test");
          assert.strictEqual(patchedEE.listeners("test").length, 0);
          return done();
        };
        patchedEE.on("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.emit("test");
      });

      it("should remove event handler enabled by .once using removeListener (when enabled)", () => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        function handler() {}
        patchedEE.once("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.removeListener("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 0);
      });

      it("should remove event handler enabled by .once using off (when enabled)", () => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {};
        patchedEE.once("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.off("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 0);
      });

      it("should return current context and removeAllListeners (when enabled)", (_t, done: Done) => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {
          assert.deepStrictEqual(contextManager.active(), context);
          patchedEE.removeAllListeners();
          assert.strictEqual(patchedEE.listeners("test").length, 0);
          assert.strictEqual(patchedEE.listeners("test1").length, 0);
          return done();
        };
        patchedEE.on("test", handler);
        patchedEE.on("test1", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        assert.strictEqual(patchedEE.listeners("test1").length, 1);
        patchedEE.emit("test");
      });

      it("should return context (when disabled)", (_t, done: Done) => {
        contextManager.disable();
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {
          assert.deepStrictEqual(contextManager.active(), context);
          patchedEE.removeListener("test", handler);
          assert.strictEqual(patchedEE.listeners("test").length, 0);
          return done();
        };
        patchedEE.on("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.emit("test");
      });

      it("should not return current context with async op", (_t, done: Done) => {
        const ee = new EventEmitter();
        const context = ROOT_CONTEXT.setValue(key1, 1);
        const patchedEE = contextManager.bind(context, ee);
        const handler = () => {
          assert.deepStrictEqual(contextManager.active(), context);
          setImmediate(() => {
            assert.deepStrictEqual(contextManager.active(), context);
            patchedEE.removeAllListeners("test");
            assert.strictEqual(patchedEE.listeners("test").length, 0);
            return done();
          });
        };
        patchedEE.on("test", handler);
        assert.strictEqual(patchedEE.listeners("test").length, 1);
        patchedEE.emit("test");
      });

      it("should not influence other instances", () => {
        const ee = new EventEmitter();
        const other = make().enable();
        otherContextManager = other;
        const context = ROOT_CONTEXT.setValue(key1, 2);
        const otherContext = ROOT_CONTEXT.setValue(key1, 3);
        const patchedEE = other.bind(otherContext, contextManager.bind(context, ee));
        let called = 0;
        const handler = () => {
          assert.strictEqual(contextManager.active(), context);
          assert.strictEqual(other.active(), otherContext);
          called++;
        };
        patchedEE.on("test", handler);
        patchedEE.emit("test");
        assert.equal(called, 1);
      });

      // Not in the original: a once listener fires once, in the bound context, and is gone.
      it("runs a once listener once, in the bound context", () => {
        const context = scope("once");
        const ee = contextManager.bind(context, new EventEmitter());
        const seen: OtelContext[] = [];
        ee.once("test", () => seen.push(contextManager.active()));
        ee.emit("test");
        ee.emit("test");
        assert.equal(seen.length, 1);
        assert.strictEqual(seen[0], context);
        assert.equal(ee.listenerCount("test"), 0);
      });

      // Not in the original: the bookkeeping of one event does not lose another's.
      it("removeAllListeners(event) leaves other events' listeners removable", () => {
        const ee = contextManager.bind(scope("bound"), new EventEmitter());
        const listener = () => {};
        ee.on("a", listener);
        ee.on("b", listener);
        ee.removeAllListeners("a");
        ee.removeListener("b", listener);
        assert.equal(ee.listenerCount("b"), 0);
      });

      // Not in the original: a second bind of the same emitter changes nothing.
      it("binding an emitter twice keeps the first context", () => {
        const first = scope("first");
        const ee = contextManager.bind(first, new EventEmitter());
        contextManager.bind(scope("second"), ee);
        let seen: OtelContext | undefined;
        ee.on("test", () => {
          seen = contextManager.active();
        });
        ee.emit("test");
        assert.strictEqual(seen, first);
      });

      // Not in the original: the second and later listeners are wrapped too, and
      // one event's listeners keep their wrappers when another is added.
      it("runs every listener in the bound context and removes any of them", () => {
        const context = scope("bound");
        const ee = contextManager.bind(context, new EventEmitter());
        const seen: [string, OtelContext][] = [];
        const first = () => seen.push(["first", contextManager.active()]);
        const second = () => seen.push(["second", contextManager.active()]);
        const other = () => seen.push(["other", contextManager.active()]);
        ee.on("test", first);
        ee.prependListener("test", second);
        ee.addListener("other", other);
        contextManager.with(scope("caller"), () => {
          ee.emit("test");
          ee.emit("other");
        });
        assert.deepStrictEqual(seen, [
          ["second", context],
          ["first", context],
          ["other", context],
        ]);
        ee.removeListener("test", first);
        assert.deepStrictEqual(ee.listeners("test").length, 1);
        ee.off("test", second);
        assert.equal(ee.listenerCount("test"), 0);
      });

      // Not in the original: removing from an event that never had a listener is a no-op.
      it("removeListener and off of an event never listened to change nothing", () => {
        const ee = contextManager.bind(scope("bound"), new EventEmitter());
        const listener = () => {};
        ee.on("a", listener);
        assert.strictEqual(ee.removeListener("never", listener), ee);
        assert.strictEqual(ee.off("never", listener), ee);
        assert.equal(ee.listenerCount("a"), 1);
      });

      // Not in the original: removeAllListeners forgets the wrappers, so that
      // removeListener then takes a listener added past the patch (by
      // EventEmitter.prototype.on itself) for what it is.
      it("removeAllListeners, of one event or all, forgets the wrappers", () => {
        const ee = contextManager.bind(scope("bound"), new EventEmitter());
        const listener = () => {};
        for (const clear of [() => ee.removeAllListeners("a"), () => ee.removeAllListeners()]) {
          ee.on("a", listener);
          clear();
          EventEmitter.prototype.on.call(ee, "a", listener);
          ee.removeListener("a", listener);
          assert.equal(ee.listenerCount("a"), 0);
        }
      });

      // Not in the original: event names compare as EventEmitter compares them, as
      // property keys, so 1 and "1" are one event.
      it("removes a listener under any spelling of its event name that EventEmitter takes as the same", () => {
        const ee = contextManager.bind(scope("bound"), new EventEmitter());
        const listener = () => {};
        ee.on(1 as never, listener);
        ee.removeListener("1", listener);
        assert.equal(ee.listenerCount("1"), 0);
        ee.on("2", listener);
        ee.off(2 as never, listener);
        assert.equal(ee.listenerCount("2"), 0);
        ee.on(3 as never, listener);
        ee.removeAllListeners("3");
        EventEmitter.prototype.on.call(ee, "3", listener);
        ee.removeListener(3 as never, listener);
        assert.equal(ee.listenerCount("3"), 0);
      });

      // Not in the original: an emitter without some of the methods keeps without them.
      it("leaves out the methods an emitter does not have", () => {
        const ee = new EventEmitter();
        const missing = ["prependOnceListener", "off", "removeAllListeners"] as const;
        for (const name of missing) {
          Object.defineProperty(ee, name, { value: undefined, writable: true });
        }
        const context = scope("bound");
        contextManager.bind(context, ee);
        for (const name of missing) assert.equal(ee[name], undefined, name);
        let seen: OtelContext | undefined;
        ee.on("test", () => {
          seen = contextManager.active();
        });
        ee.emit("test");
        assert.strictEqual(seen, context);
      });
    });
  });
}

// Not in the original, and one place where the two managers differ:
// AsyncLocalStorageContextManager files a string listener in a WeakMap first
// and throws "Invalid value used as weak map key".
describe("ContextVarsContextManager.bind(event-emitter)", () => {
  it("leaves a listener that is not a function to the emitter's own TypeError", () => {
    const contextManager = new ContextVarsContextManager().enable();
    try {
      const ee = contextManager.bind(scope("bound"), new EventEmitter());
      for (const listener of ["listener", undefined]) {
        assert.throws(() => ee.on("test", listener as never), { code: "ERR_INVALID_ARG_TYPE" });
      }
      assert.equal(ee.listenerCount("test"), 0);
    } finally {
      contextManager.disable();
    }
  });

  // AsyncLocalStorageContextManager wraps each add anew and remembers only the
  // last wrapper, so a listener added twice keeps firing after two removals.
  it("a listener added twice is gone after two removals, as on a plain emitter", () => {
    const contextManager = new ContextVarsContextManager().enable();
    try {
      const context = scope("bound");
      const ee = contextManager.bind(context, new EventEmitter());
      const seen: OtelContext[] = [];
      const listener = () => seen.push(contextManager.active());
      ee.on("test", listener);
      ee.on("test", listener);
      ee.emit("test");
      assert.deepStrictEqual(seen, [context, context]);
      ee.removeListener("test", listener);
      assert.equal(ee.listenerCount("test"), 1);
      ee.off("test", listener);
      assert.equal(ee.listenerCount("test"), 0);
      ee.once("test", listener);
      ee.on("test", listener);
      ee.off("test", listener);
      ee.off("test", listener);
      ee.emit("test");
      assert.equal(seen.length, 2);
    } finally {
      contextManager.disable();
    }
  });

  // AsyncLocalStorageContextManager passes every listener through unwrapped while
  // it adds one, to let its once-wrapper by; so also one a newListener listener adds.
  it("a listener added by a newListener listener runs in the bound context too", () => {
    const contextManager = new ContextVarsContextManager().enable();
    try {
      const context = scope("bound");
      const ee = contextManager.bind(context, new EventEmitter());
      const seen: [string, OtelContext][] = [];
      const onEnd = () => seen.push(["end", contextManager.active()]);
      ee.on("newListener", (event: string) => {
        if (event === "data") ee.on("end", onEnd);
      });
      ee.once("data", () => seen.push(["data", contextManager.active()]));
      contextManager.with(scope("caller"), () => {
        ee.emit("data");
        ee.emit("data");
        ee.emit("end");
      });
      assert.deepStrictEqual(seen, [
        ["data", context],
        ["end", context],
      ]);
      ee.removeListener("end", onEnd);
      assert.equal(ee.listenerCount("end"), 0);
    } finally {
      contextManager.disable();
    }
  });

  it("two managers bind one emitter: a once listener runs once with both contexts, and removeListener takes it off before it fires", () => {
    const first = new ContextVarsContextManager();
    const second = new ContextVarsContextManager();
    const ee = second.bind(scope("second"), first.bind(scope("first"), new EventEmitter()));
    const seen: unknown[] = [];
    const listener = () =>
      seen.push([first.active(), second.active()].map((c) => c.getValue(key1)));
    ee.once("test", listener);
    ee.emit("test");
    ee.emit("test");
    assert.deepStrictEqual(seen, [["first", "second"]]);
    ee.once("test", listener);
    ee.prependOnceListener("test", listener);
    assert.equal(ee.listenerCount("test"), 2);
    ee.removeListener("test", listener);
    ee.off("test", listener);
    assert.equal(ee.listenerCount("test"), 0);
  });

  it("an emitter whose on() adds through this.addListener wraps the listener once: it runs in the bound context and removeListener takes it off", () => {
    class Delegating extends EventEmitter {
      override on(event: string | symbol, listener: (...args: unknown[]) => void): this {
        return this.addListener(event, listener);
      }
    }
    const contextManager = new ContextVarsContextManager();
    const context = scope("bound");
    const ee = contextManager.bind(context, new Delegating());
    const seen: OtelContext[] = [];
    const listener = () => seen.push(contextManager.active());
    ee.on("test", listener);
    contextManager.with(scope("caller"), () => ee.emit("test"));
    assert.deepStrictEqual(seen, [context]);
    ee.removeListener("test", listener);
    assert.equal(ee.listenerCount("test"), 0);
  });

  it("a listener carrying another as .listener (Node's once-wrapper convention) is removed by that one, and the other added too runs as itself, as on a plain emitter", () => {
    const contextManager = new ContextVarsContextManager();
    for (const ee of [
      new EventEmitter(),
      contextManager.bind(scope("bound"), new EventEmitter()),
    ]) {
      const ran: string[] = [];
      const inner = () => ran.push("inner");
      const outer = Object.assign(() => ran.push("outer"), { listener: inner });
      ee.on("test", outer);
      ee.removeListener("test", inner);
      assert.equal(ee.listenerCount("test"), 0);
      ee.on("test", outer);
      ee.on("test", inner);
      ee.emit("test");
      assert.deepStrictEqual(ran, ["outer", "inner"]);
    }
  });

  it("an inherited method the emitter's new prototype lacks is called as it was at bind", () => {
    const contextManager = new ContextVarsContextManager().enable();
    try {
      const context = scope("bound");
      const ee = contextManager.bind(context, new EventEmitter());
      // Swapped, as Express swaps req's, but for a prototype with no `on` of its own.
      Object.setPrototypeOf(ee, { emit: EventEmitter.prototype.emit });
      let seen: OtelContext | undefined;
      ee.on("test", () => {
        seen = contextManager.active();
      });
      contextManager.with(scope("caller"), () => ee.emit("test"));
      assert.strictEqual(seen, context);
    } finally {
      contextManager.disable();
    }
  });
});

// Not in the original: AsyncLocalStorageContextManager leaves a callback that
// is not a function to AsyncLocalStorage#run, whose TypeError names nothing.
describe("ContextVarsContextManager.with(context, notAFunction)", () => {
  it("throws a TypeError naming fn and with(), not the var the manager keeps its context in", () => {
    const contextManager = new ContextVarsContextManager().enable();
    try {
      const outer = scope("outer");
      contextManager.with(outer, () => {
        for (const thisArg of [undefined, "that"]) {
          assert.throws(
            () => contextManager.with(scope("inner"), "callback" as never, thisArg as never, 1),
            (error: unknown) => {
              assert.ok(error instanceof TypeError);
              assert.equal(
                error.message,
                'Expected `fn` to be a function, got `"callback"` (string), in ContextVarsContextManager.with()',
              );
              return true;
            },
          );
          assert.equal(contextManager.active(), outer);
        }
      });
    } finally {
      contextManager.disable();
    }
  });
});

// Not in the original: an emitter a manager bound before the core's bindEmitter
// (instrumentation-http binds req and res so, before the app sees them). The
// listener bindEmitter adds through the manager's on() is wrapped again, in a
// wrapper of the manager's that Node's removeListener(event, original) and
// listeners() did not see through: the listener stayed, and events.once left
// its error listener behind.
for (const { name, make } of managers) {
  describe(`bindEmitter over an emitter ${name} bound first`, () => {
    it("runs listeners in both bindings, and removes and reports each as given", async () => {
      const contextManager = make().enable();
      try {
        const user = new ContextVar<string>("user", { default: "none" });
        const bound = scope("bound");
        const ee = contextManager.bind(bound, new EventEmitter());
        // Made where the manager's context is the bound one: ContextVarsContextManager
        // keeps it in the Context, which bindEmitter's listeners run in a copy of.
        bindEmitter(
          ee,
          contextManager.with(bound, () => user.run("alice", copyContext)),
        );
        const seen: [string, unknown][] = [];
        const listener = () => seen.push([user.get(), contextManager.active().getValue(key1)]);
        ee.on("test", listener);
        ee.once("test", listener);
        assert.deepEqual(ee.listeners("test"), [listener, listener]);
        assert.equal(ee.listenerCount("test", listener), 2);
        contextManager.with(scope("caller"), () => user.run("bob", () => ee.emit("test")));
        assert.deepEqual(seen, [
          ["alice", "bound"],
          ["alice", "bound"],
        ]);
        assert.equal(ee.listenerCount("test"), 1);
        ee.removeListener("test", listener);
        assert.equal(ee.listenerCount("test"), 0);
        ee.prependListener("test", listener);
        ee.off("test", listener);
        assert.equal(ee.listenerCount("test"), 0);
        const fired = once(ee, "done");
        ee.emit("done");
        await fired;
        assert.equal(ee.listenerCount("error"), 0);
      } finally {
        contextManager.disable();
      }
    });
  });
}

// Not in the original: withContext given a req and res a manager bound first,
// as instrumentation-http does before the listener runs. Under
// AsyncLocalStorageContextManager, a listener the handler added to req could
// not be removed, and events.once(req, "end") left its error listener.
for (const { name, make } of managers) {
  it(`withContext on a req and res ${name} bound first: listeners run in the request, and go when removed`, async () => {
    const contextManager = make().enable();
    const user = new ContextVar<string>("user", { default: "none" });
    const handler = withContext(
      async (req, res) => {
        const onData = () => {};
        req.on("data", onData);
        req.removeListener("data", onData);
        const dataListenersLeft = req.listenerCount("data");
        let inEnd = "";
        req.on("data", () => {});
        req.on("end", () => {
          inEnd = user.get();
        });
        await once(req, "end");
        res.end(
          JSON.stringify({
            dataListenersLeft,
            inEnd,
            errorListenersLeft: req.listenerCount("error"),
          }),
        );
      },
      { seed: () => user.set("alice") },
    );
    const server = createServer((req, res) => {
      contextManager.bind(scope("server span"), req);
      contextManager.bind(scope("server span"), res);
      handler(req, res);
    });
    const base = await listen(server);
    try {
      assert.deepEqual(await sendJson(base, "/", { method: "POST", body: "hello", chunks: 2 }), {
        dataListenersLeft: 0,
        inEnd: "alice",
        errorListenersLeft: 0,
      });
    } finally {
      await close(server);
      contextManager.disable();
    }
  });
}

// Express's contextMiddleware binds the app's request and response
// prototypes, which AsyncLocalStorageContextManager's own methods on req and
// res (put there before Express, as instrumentation-http does) never call:
// it binds such objects themselves.
it("Express's contextMiddleware on a req and res an OpenTelemetry manager bound first: their listeners see the request's vars under either manager, and one removed is not called", async () => {
  const seen: Record<string, string[]> = {};
  for (const { name, make } of managers) {
    const outcomes: string[] = [];
    seen[name] = outcomes;
    const contextManager = make().enable();
    const user = new ContextVar<string>("user", { default: "none" });
    const app = express();
    app.use(contextMiddleware({ seed: (req) => user.set(String(req.headers["x-user"])) }));
    app.post("/", (req, res) => {
      const got: string[] = [];
      const removed = () => got.push("removed listener called");
      req.on("data", removed);
      req.removeListener("data", removed);
      req.on("data", () => {});
      req.on("end", () => {
        got.push(`end: ${user.get()}`);
        res.json({});
      });
      res.on("finish", () => {
        got.push(`finish: ${user.get()}`);
        outcomes.push(got.join(", "));
      });
    });
    const server = createServer((req, res) => {
      contextManager.bind(scope("server span"), req);
      contextManager.bind(scope("server span"), res);
      app(req, res);
    });
    const base = await listen(server);
    try {
      await Promise.all(
        ["alice", "bob"].map((who) =>
          sendJson(base, "/", { method: "POST", body: "hello", headers: { "x-user": who } }),
        ),
      );
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      await close(server);
      contextManager.disable();
    }
  }
  const expected = ["end: alice, finish: alice", "end: bob, finish: bob"];
  assert.deepEqual(seen.ContextVarsContextManager?.sort(), expected);
  assert.deepEqual(seen.AsyncLocalStorageContextManager?.sort(), expected);
});

// A library that binds req and res in a middleware mounted before
// contextMiddleware (cls-hooked's bindEmitter, or a manager's bind as here)
// finds the listener methods contextMiddleware put on the app's prototypes
// for the first request, and calls them from its own; contextMiddleware then
// binds the objects themselves over it. A listener was wrapped by both, from
// the second request on, and removeListener(event, listener) removed nothing.
it("Express's contextMiddleware after a middleware that binds req and res with an OpenTelemetry manager: from the second request on too, a listener removed is not called", async () => {
  const seen: Record<string, string[]> = {};
  for (const { name, make } of managers) {
    const outcomes: string[] = [];
    seen[name] = outcomes;
    const contextManager = make().enable();
    const user = new ContextVar<string>("user", { default: "none" });
    const app = express();
    app.use((req, res, next) => {
      contextManager.bind(scope("middleware span"), req);
      contextManager.bind(scope("middleware span"), res);
      next();
    });
    app.use(contextMiddleware({ seed: (req) => user.set(String(req.headers["x-user"])) }));
    app.post("/", (req, res) => {
      const got: string[] = [];
      const removed = () => got.push("removed listener called");
      req.on("data", removed);
      req.removeListener("data", removed);
      const removedOnce = () => got.push("removed once listener called");
      res.once("finish", removedOnce);
      res.removeListener("finish", removedOnce);
      req.on("data", () => {});
      req.on("end", () => {
        got.push(`end: ${user.get()}, data listeners: ${req.listenerCount("data")}`);
        res.json({});
      });
      res.on("finish", () => {
        got.push(`finish: ${user.get()}`);
        outcomes.push(got.join(", "));
      });
    });
    const server = createServer(app);
    const base = await listen(server);
    try {
      for (const who of ["alice", "bob", "carol"]) {
        await sendJson(base, "/", { method: "POST", body: "hello", headers: { "x-user": who } });
      }
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      await close(server);
      contextManager.disable();
    }
  }
  const expected = ["alice", "bob", "carol"].map(
    (who) => `end: ${who}, data listeners: 1, finish: ${who}`,
  );
  assert.deepEqual(seen.ContextVarsContextManager, expected);
  assert.deepEqual(seen.AsyncLocalStorageContextManager, expected);
});
