/**
 * bindEmitter keeps nothing per event name: an emitter that lives as long as
 * the process (a pooled connection) and names events per call (RPC replies)
 * must not grow with every name it ever used.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { bindEmitter, ContextVar, copyContext } from "contextvars";
import { settledHeap } from "../helpers/gc.ts";

const v = new ContextVar<string>("v");

describe("bindEmitter: no growth per event name", () => {
  it("keeps nothing per event name once its listeners are gone", async () => {
    const emitter = bindEmitter(
      new EventEmitter(),
      v.run("b", () => copyContext()),
    );
    const names = (n: number) =>
      Array.from({ length: n }, (_, i) => `reply:${i}:${"x".repeat(40)}`);
    const run = (list: string[]) => {
      for (const name of list) {
        emitter.once(name, () => {});
        emitter.emit(name);
      }
    };
    run(names(1_000)); // warm up
    const before = await settledHeap();
    run(names(50_000));
    const grown = (await settledHeap()) - before;
    assert.ok(grown < 2_000_000, `heap grew by ${grown} bytes over 50,000 event names`);
    assert.deepEqual(emitter.eventNames(), []);
  });
});
