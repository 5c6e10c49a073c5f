/**
 * The carrier's two verbs, run over every carrier (OpenTelemetry's one suite
 * over every context manager): `getStore()` and `run(context, fn, ...args)`.
 *
 * - async-local-storage: the carrier on Node, Bun and Deno.
 * - async-context: the AsyncContext carrier over the test double of the TC39
 *   proposal (test/helpers/async-context-double.ts).
 * - sync: the browser's carrier, which is honest about what it cannot do:
 *   its Context ends with the synchronous extent of `run`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Context } from "contextvars";
import { createAsyncContextCarrier } from "../../src/carrier/async-context.ts";
import { createPlatformCarrier as createAlsCarrier } from "../../src/carrier/async-local-storage.ts";
import type { Carrier } from "../../src/carrier/carrier.ts";
import { createPlatformCarrier as createSyncCarrier } from "../../src/carrier/sync.ts";
import { AsyncContextDouble } from "../helpers/async-context-double.ts";

const carriers: { name: string; make: () => Carrier; followsAsync: boolean }[] = [
  { name: "async-local-storage", make: createAlsCarrier, followsAsync: true },
  {
    name: "async-context (test double)",
    make: () => createAsyncContextCarrier(AsyncContextDouble),
    followsAsync: true,
  },
  { name: "sync", make: createSyncCarrier, followsAsync: false },
];

for (const { name, make, followsAsync } of carriers) {
  describe(`carrier: ${name}`, () => {
    it("getStore() is undefined outside any run", () => {
      assert.equal(make().getStore(), undefined);
    });

    it("run(context, fn, ...args) passes the arguments and returns fn's result", () => {
      const carrier = make();
      const context = new Context();
      const result = carrier.run(context, (a: number, b: string) => `${a}${b}`, 1, "x");
      assert.equal(result, "1x");
    });

    it("the context is current inside fn and nested runs restore the outer one", () => {
      const carrier = make();
      const [outer, inner] = [new Context(), new Context()];
      const seen: (Context | undefined)[] = [];
      carrier.run(outer, () => {
        seen.push(carrier.getStore());
        carrier.run(inner, () => seen.push(carrier.getStore()));
        seen.push(carrier.getStore());
      });
      seen.push(carrier.getStore());
      assert.deepEqual(seen, [outer, inner, outer, undefined]);
      assert.equal(seen[0], outer);
      assert.equal(seen[1], inner);
    });

    it("a throw restores the previous context and propagates", () => {
      const carrier = make();
      const outer = new Context();
      const error = new Error("boom");
      carrier.run(outer, () => {
        assert.throws(
          () =>
            carrier.run(new Context(), () => {
              throw error;
            }),
          (e) => e === error,
        );
        assert.equal(carrier.getStore(), outer);
      });
    });

    it("two carriers never see each other's runs", () => {
      const [a, b] = [make(), make()];
      const context = new Context();
      a.run(context, () => assert.equal(b.getStore(), undefined));
    });

    if (followsAsync) {
      it("the context follows awaits, timers and promise callbacks; siblings stay apart", async () => {
        const carrier = make();
        const worker = async (context: Context) => {
          const seen = [carrier.getStore() === context];
          await sleep(2);
          seen.push(carrier.getStore() === context);
          await new Promise<void>((resolve) => setTimeout(resolve, 1));
          seen.push(carrier.getStore() === context);
          seen.push(await Promise.resolve().then(() => carrier.getStore() === context));
          return seen;
        };
        const [a, b] = [new Context(), new Context()];
        const results = await Promise.all([carrier.run(a, worker, a), carrier.run(b, worker, b)]);
        assert.deepEqual(results, [
          [true, true, true, true],
          [true, true, true, true],
        ]);
        assert.equal(carrier.getStore(), undefined);
      });
    } else {
      it("the context ends with run's synchronous extent: after an await nothing is current", async () => {
        const carrier = make();
        const context = new Context();
        const seen = await carrier.run(context, async () => {
          const before = carrier.getStore();
          await null;
          return [before, carrier.getStore()];
        });
        assert.deepEqual(seen, [context, undefined]);
      });
    }
  });
}
