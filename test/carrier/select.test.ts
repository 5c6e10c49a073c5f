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
import { carrier } from "../../src/carrier/select.ts";

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
