/**
 * The harness every bench file uses: measures taken in alternating rounds,
 * and each figure reported as a ratio against a baseline measured in the
 * same process, in the same rounds.
 *
 * Why ratios, and why rounds
 * --------------------------
 * The machines these run on are shared and noisy: absolute times swing by
 * tens of percent between runs, while two measures taken side by side in one
 * process swing together. So every figure is `ours / baseline`, both taken in
 * the same round; a file runs several rounds (the task order reversed every
 * other round, so neither side always runs first) and reports the median of
 * the per-round ratios.
 *
 * Why batches
 * -----------
 * Most operations here take 5-50 ns, below what a timer call resolves. A
 * body runs its operation `n` times in its own loop, written out in each
 * bench file, so the call site of the operation is monomorphic and V8 can
 * inline it as it would in an application; tinybench records the mean per
 * operation of each batch (`overriddenDuration`).
 *
 * Why the ALS is touched first
 * ----------------------------
 * On Node 20/22 the first `AsyncLocalStorage#run` turns on async_hooks for
 * the whole process, after which every promise costs more. `run()` enters a
 * Context once before anything is measured, so baselines pay that tax too;
 * `als-tax.bench.ts` measures the tax itself. Baselines use the library's own
 * ALS instance (`alsOf()`): a second busy instance would slow both sides.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { Bench, type FnReturnedObject } from "tinybench";
import { carrier } from "../src/carrier/select.ts";
import { Context } from "../src/index.ts";
import {
  type CompareOptions,
  type ComparisonSpec,
  type FileResult,
  formatNs,
  median,
  printTable,
  ROUNDS,
  TIME_MS,
  targetText,
  verdict,
} from "./report.ts";

export type { CompareOptions, ComparisonResult, FileResult, MeasureResult } from "./report.ts";
// Other bench files import these from here.
export { formatNs, median, printTable, targetText, verdict } from "./report.ts";

/** Runs the measured operation `n` times. */
export type Body = (n: number) => void | Promise<void>;

export interface MeasureOptions {
  /** Operations per batch (the `n` passed to the body). */
  batch: number;
  /** Units each operation stands for (e.g. 10,000 tasks per gather): figures are per unit. */
  units?: number;
  /** Runs before each phase of the measure (warmup, run), outside the timing. */
  before?: () => void;
}

interface Measure extends MeasureOptions {
  name: string;
  body: Body;
  async: boolean;
}

/** The ALS the library carries Contexts on, typed for baselines that put their own stores in it. */
export function alsOf<S>(): AsyncLocalStorage<S> {
  // Baselines must share the library's instance (see the header); another carrier
  // (AsyncContext, the browser's) would make every ratio meaningless.
  if (!(carrier instanceof AsyncLocalStorage)) {
    throw new Error("bench: the carrier in use is not an AsyncLocalStorage; baselines need it");
  }
  return carrier as unknown as AsyncLocalStorage<S>;
}

/** Where bodies put results so V8 cannot drop the work that made them. */
export const sink = { n: 0, o: undefined as unknown };

export class Suite {
  readonly file: string;
  readonly title: string;
  #measures: Measure[] = [];
  #comparisons: ComparisonSpec[] = [];
  readonly #touchAls: boolean;

  /** @param touchAls false only for a file that measures the ALS tax itself. */
  constructor(file: string, title: string, { touchAls = true } = {}) {
    this.file = file;
    this.title = title;
    this.#touchAls = touchAls;
  }

  /** A synchronous measure. */
  add(name: string, body: (n: number) => void, options: MeasureOptions): this {
    this.#measures.push({ name, body, async: false, ...options });
    return this;
  }

  /** A measure whose body returns a promise (awaited inside the timing). */
  addAsync(name: string, body: (n: number) => Promise<void>, options: MeasureOptions): this {
    this.#measures.push({ name, body, async: true, ...options });
    return this;
  }

  /** Reports ours / baseline, both measures of this suite. */
  compare(name: string, ours: string, baseline: string, options: CompareOptions = {}): this {
    this.#comparisons.push({ name, ours, baseline, ...options });
    return this;
  }

  async run(): Promise<FileResult> {
    // Turn async_hooks on (Node 20/22) before anything is measured: see the header.
    if (this.#touchAls) new Context().run(() => {});
    const perRound = new Map<string, number[]>(this.#measures.map((m) => [m.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      const bench = new Bench({
        time: TIME_MS,
        iterations: 5,
        warmupTime: round === 0 ? 60 : 15,
        warmupIterations: 3,
        setup: () => globalThis.gc?.(),
      });
      const order = round % 2 === 0 ? this.#measures : [...this.#measures].reverse();
      for (const m of order) {
        const before = m.before;
        bench.add(m.name, timed(bench, m), {
          async: m.async,
          ...(before === undefined ? {} : { beforeAll: () => before() }),
        });
      }
      await bench.run();
      for (const task of bench.tasks) {
        const result = task.result;
        if (result.state === "errored") throw result.error;
        if (result.state !== "completed") throw new Error(`${task.name}: ${result.state}`);
        const m = this.#measures.find((x) => x.name === task.name) as Measure;
        perRound.get(task.name)?.push((result.latency.p50 * 1e6) / (m.units ?? 1));
      }
    }
    const measures = this.#measures.map((m) => {
      const rounds = perRound.get(m.name) ?? [];
      return { name: m.name, ns: median(rounds), rounds };
    });
    const byName = new Map(measures.map((m) => [m.name, m]));
    const comparisons = this.#comparisons.map((c) => {
      const ours = byName.get(c.ours);
      const base = byName.get(c.baseline);
      if (ours === undefined || base === undefined) throw new Error(`${c.name}: unknown measure`);
      const rounds = ours.rounds.map((x, i) => x / (base.rounds[i] as number));
      const ratio = median(rounds);
      const met =
        c.max === undefined && c.min === undefined
          ? undefined
          : (c.max === undefined || ratio <= c.max) && (c.min === undefined || ratio >= c.min);
      return { ...c, ratio, rounds, met };
    });
    const result: FileResult = { file: this.file, title: this.title, measures, comparisons };
    print(result);
    process.send?.(result);
    return result;
  }
}

// Wraps a body as a tinybench task: one batch per iteration, recorded as the mean per operation.
function timed(bench: Bench, m: Measure): () => FnReturnedObject | Promise<FnReturnedObject> {
  const { body, batch } = m;
  if (!m.async) {
    return () => {
      const start = bench.now();
      body(batch);
      const elapsed = bench.now() - start;
      return { overriddenDuration: elapsed / batch, overriddenIterationCost: elapsed };
    };
  }
  return async () => {
    const start = bench.now();
    await body(batch);
    const elapsed = bench.now() - start;
    return { overriddenDuration: elapsed / batch, overriddenIterationCost: elapsed };
  };
}

function print(result: FileResult): void {
  console.log(`\n## ${result.title} (${result.file}, ${ROUNDS} rounds)\n`);
  printTable(
    ["measure", "median", "per round"],
    result.measures.map((m) => [
      m.name,
      formatNs(m.ns),
      m.rounds.map((x) => x.toFixed(x < 100 ? 1 : 0)).join(" "),
    ]),
  );
  console.log("");
  printTable(
    ["ratio", "ours / baseline", "target", "", "per round"],
    result.comparisons.map((c) => [
      c.name,
      `${c.ratio.toFixed(2)}x`,
      targetText(c),
      verdict(c.met),
      c.rounds.map((x) => x.toFixed(2)).join(" "),
    ]),
  );
}
