/**
 * Repetition leaves no growth: 1,000,000 set/reset cycles, from every
 * starting state, and 100,000 runs, copies and tasks, end with the heap
 * where it began (after full collections) and the Context exactly as it was.
 *
 * The bound is generous on purpose: a leak of one token, one map or one
 * Context per cycle would be 40 MB or more, so 4 MB catches any real leak
 * and never trips on the noise of a collection.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Context, ContextVar, copyContext, createTask, gather } from "contextvars";
import { settledHeap } from "../helpers/gc.ts";
import { pinContext } from "../helpers/pin-context.ts";
import { startingStates } from "../helpers/starting-states.ts";

const MB = 1024 * 1024;
const BOUND = 4 * MB;
const CYCLES = 1_000_000;

const a = new ContextVar<number>("a");
const b = new ContextVar<object>("b", { default: {} });
const others = Array.from({ length: 20 }, (_, i) => new ContextVar<number>(`other ${i}`));

function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(2)} MB`;
}

/** Runs `body` in `chunks` pieces; the settled heap after the last is within BOUND of before. */
async function expectNoGrowth(label: string, chunks: number, body: () => void): Promise<void> {
  body(); // warm up: JIT code and inline caches are not a leak
  const before = await settledHeap();
  const seen: number[] = [];
  for (let i = 0; i < chunks; i++) {
    body();
    seen.push(await settledHeap());
  }
  const growth = (seen.at(-1) ?? before) - before;
  assert.ok(
    growth < BOUND,
    `${label}: heap grew by ${mb(growth)} (bound ${mb(BOUND)}); per chunk: ${seen.map((n) => mb(n - before)).join(", ")}`,
  );
}

describe("1,000,000 set/reset cycles leave no growth", () => {
  for (const state of startingStates) {
    // The full million at the root; a tenth of it from each other starting state.
    const cycles = state.name === "root" ? CYCLES : CYCLES / 10;
    it(`${state.name}: ${cycles.toLocaleString("en")} cycles among 20 other vars`, async () => {
      await state.enter(async () => {
        for (const [i, v] of others.entries()) v.set(i);
        const pin = pinContext();
        const perChunk = cycles / 4;
        await expectNoGrowth(state.name, 4, () => {
          for (let i = 0; i < perChunk; i++) {
            const outer = a.set(i);
            const inner = b.set({ i });
            b.reset(inner);
            a.reset(outer);
          }
        });
        pin.check("after 1,000,000 cycles");
      });
    });
  }

  it("`using` at scope exit, including scopes left by a throw", async () => {
    const pin = pinContext();
    await expectNoGrowth("using", 4, () => {
      for (let i = 0; i < 5_000; i++) {
        try {
          using _ = a.set(i);
          if (i % 2 === 0) throw i; // leaves the scope (a number: no stack to capture)
        } catch {}
      }
    });
    pin.check();
  });
});

describe("runs, copies and tasks leave no growth", () => {
  it("100,000 each of ctx.run, var.run and copyContext().run", async () => {
    const pin = pinContext();
    await expectNoGrowth("runs", 4, () => {
      for (let i = 0; i < 25_000; i++) {
        new Context().run(() => a.set(i));
        a.run(i, () => b.set({ i }));
        copyContext().run(() => b.get());
      }
    });
    pin.check();
  });

  it("20,000 gathered tasks", async () => {
    const pin = pinContext();
    const batch = async () => {
      for (let i = 0; i < 2; i++) {
        await gather(
          ...Array.from({ length: 2_500 }, (_, n) => async () => {
            a.set(n);
            await null;
            return b.set({ n });
          }),
        );
      }
    };
    await batch();
    const before = await settledHeap();
    for (let i = 0; i < 4; i++) await batch();
    await createTask(() => undefined);
    const growth = (await settledHeap()) - before;
    assert.ok(growth < BOUND, `tasks: heap grew by ${mb(growth)}`);
    pin.check();
  });
});
