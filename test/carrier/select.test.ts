/**
 * Which carrier the package picked at import: AsyncContext's when
 * `globalThis.AsyncContext` existed before the package loaded (the matrix's
 * `/async-context` targets preload the test double), else the platform's
 * AsyncLocalStorage. CONTEXTVARS_EXPECT_CARRIER, set by the matrix, says
 * which one this run must have.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { describe, it } from "node:test";
import { Context, ContextVar, copyContext } from "contextvars";
import { globalAsyncContext } from "../../src/carrier/async-context.ts";
import { carrier } from "../../src/carrier/select.ts";
import { AsyncContextDouble } from "../helpers/async-context-double.ts";

interface ProposalNamespace {
  Variable: new (options?: object) => object;
  Snapshot: new () => { run<R>(fn: () => R): R };
}

const native = (globalThis as { AsyncContext?: ProposalNamespace }).AsyncContext;
const expected = process.env.CONTEXTVARS_EXPECT_CARRIER;

describe("carrier selection", () => {
  it("matches what the matrix asked for", {
    skip: expected === undefined ? "not run by the matrix (no CONTEXTVARS_EXPECT_CARRIER)" : false,
  }, () => {
    assert.equal(native === undefined ? "platform" : "async-context", expected);
  });

  it("is an AsyncContext.Variable when globalThis.AsyncContext exists, else an AsyncLocalStorage", () => {
    if (native === undefined) assert.ok(carrier instanceof AsyncLocalStorage);
    else assert.ok(carrier instanceof native.Variable);
  });

  it("a globalThis.AsyncContext counts only when its Variable is a function", () => {
    const global = globalThis as { AsyncContext?: unknown };
    const had = Object.hasOwn(global, "AsyncContext");
    const saved = global.AsyncContext;
    try {
      global.AsyncContext = AsyncContextDouble;
      assert.strictEqual(globalAsyncContext(), AsyncContextDouble);
      // A namespace of some other proposal stage, or a stub: the platform's carrier is kept.
      global.AsyncContext = { Variable: "pending" };
      assert.equal(globalAsyncContext(), undefined);
      delete global.AsyncContext;
      assert.equal(globalAsyncContext(), undefined);
    } finally {
      if (had) global.AsyncContext = saved;
      else delete global.AsyncContext;
    }
  });

  it("an AsyncContext.Snapshot taken by other code captures the current Context", {
    skip: native === undefined ? "no globalThis.AsyncContext" : false,
  }, async () => {
    const AsyncContext = native as ProposalNamespace;
    const v = new ContextVar<string>("v", { default: "unset" });
    const context = new Context();
    const snapshot = context.run(() => {
      v.set("inside");
      return new AsyncContext.Snapshot();
    });
    assert.equal(v.get(), "unset");
    assert.equal(
      snapshot.run(() => v.get()),
      "inside",
    );
    assert.equal(
      snapshot.run(() => copyContext().get(v)),
      "inside",
    );
  });
});
