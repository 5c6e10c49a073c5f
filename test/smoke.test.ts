import assert from "node:assert/strict";
import { describe } from "node:test";
import { ContextVar, gather } from "contextvars";
import { itFromEveryState } from "./helpers/starting-states.ts";

describe("smoke", () => {
  itFromEveryState("set, await, get", async () => {
    const v = new ContextVar<string>("v");
    v.set("outer");
    const results = await gather(
      async () => {
        v.set("a");
        await new Promise((r) => setTimeout(r, 5));
        return v.get();
      },
      async () => {
        v.set("b");
        await new Promise((r) => setTimeout(r, 1));
        return v.get();
      },
    );
    assert.deepEqual(results, ["a", "b"]);
    assert.equal(v.get(), "outer");
  });
});
