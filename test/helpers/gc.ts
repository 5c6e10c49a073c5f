/**
 * Garbage collection on demand, for the leak tests and the soak. `--expose-gc`
 * is switched on from inside the process (`v8.setFlagsFromString`) and the
 * `gc` function taken from a new vm context, so the tests run under the
 * package's ordinary `npm test` command line. Bun runs JavaScriptCore, which
 * has no such flag: there `Bun.gc(true)` is the full, synchronous collection.
 *
 * A value "becomes collectable" when a FinalizationRegistry reports it after
 * a few full collections: finalizers run as tasks after a collection, so
 * each round collects and then yields to the event loop. Bounds are rounds,
 * not wall time, so a slow machine takes longer but does not fail.
 *
 * The later rounds wait 100 ms each, so the default 30 cover more than the
 * one second for which Node's HTTP Date-header cache can hold a request's
 * Context: the first response written in each second arms an unref'd timer
 * (`resetCache` in node's lib/internal/http.js) that lives until the second
 * ends, and a timer keeps the AsyncLocalStorage store it was created in.
 */
import { setImmediate as yieldToLoop } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";

const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
if (bun === undefined) v8.setFlagsFromString("--expose-gc");
/** A full, synchronous collection. */
export const gc: () => void =
  bun !== undefined ? () => bun.gc(true) : (vm.runInNewContext("gc") as () => void);

/** Collects until `done()` holds or `rounds` full collections have run; returns done(). */
export async function collectUntil(done: () => boolean, rounds = 30): Promise<boolean> {
  for (let i = 0; i < rounds && !done(); i++) {
    gc();
    await yieldToLoop();
    await new Promise((resolve) => setTimeout(resolve, i < 5 ? 0 : 100));
  }
  return done();
}

/** Heap in use after full collections: the figure growth is measured on. */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await yieldToLoop();
  }
  gc();
  return process.memoryUsage().heapUsed;
}

/**
 * Objects to watch: `track(object, label)` registers one; `alive()` lists
 * the labels not yet collected. Watching never keeps an object alive.
 */
export class Watch {
  readonly #alive = new Set<string>();
  #tracked = 0;
  readonly #registry = new FinalizationRegistry<string>((label) => this.#alive.delete(label));

  /** Registers `object` under `label` (labels must be unique) and returns it. */
  track<T extends object>(object: T, label: string): T {
    this.#alive.add(label);
    this.#tracked++;
    this.#registry.register(object, label);
    return object;
  }

  /** How many objects have been tracked, collected or not. */
  get tracked(): number {
    return this.#tracked;
  }

  /** How many tracked objects have not been collected. */
  get size(): number {
    return this.#alive.size;
  }

  /** Collects until every tracked object is gone (or the rounds run out); the labels still alive. */
  async survivors(rounds?: number): Promise<string[]> {
    await collectUntil(() => this.#alive.size === 0, rounds);
    return [...this.#alive].sort();
  }
}
