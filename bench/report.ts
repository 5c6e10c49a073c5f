/**
 * What a bench file reports and how it is printed: shared by the harness (in
 * each bench process) and by run.ts, which must not load the library itself
 * (the parent process stays free of ALS state and of the package's source).
 */

/**
 * Rounds per file and milliseconds per measure per round: BENCH_ROUNDS and
 * BENCH_TIME, else 9 and 300. Read here, where the harness, run.ts and
 * scripts/runtimes/bench-matrix.ts all find them, so the headers they print
 * state what the files run.
 */
export const ROUNDS = setting("BENCH_ROUNDS", 9, true);
export const TIME_MS = setting("BENCH_TIME", 300, false);

// A value that is not a positive number made every figure NaN (no rounds, or no time).
function setting(name: string, fallback: number, whole: boolean): number {
  const text = process.env[name];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !(value > 0) || (whole && !Number.isInteger(value))) {
    throw new Error(
      `${name} must be a positive ${whole ? "whole number" : "number"}, got "${text}"; unset it for ${fallback}`,
    );
  }
  return value;
}

export interface CompareOptions {
  /** The target: ours / baseline must be at most this. */
  max?: number;
  /** The target: ours / baseline must be at least this. */
  min?: number;
}

export interface ComparisonSpec extends CompareOptions {
  name: string;
  ours: string;
  baseline: string;
}

export interface MeasureResult {
  name: string;
  /** Median over rounds of each round's median, in ns per unit. */
  ns: number;
  rounds: number[];
}

export interface ComparisonResult extends ComparisonSpec {
  /** Median over rounds of ours / baseline. */
  ratio: number;
  rounds: number[];
  /** Whether the median ratio meets the target; undefined when there is none. */
  met: boolean | undefined;
}

export interface FileResult {
  file: string;
  title: string;
  measures: MeasureResult[];
  comparisons: ComparisonResult[];
}

/** The median of xs (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** `12.3 ns`, `4.56 µs`, `7.89 ms`. */
export function formatNs(ns: number): string {
  if (ns < 1_000) return `${ns.toFixed(1)} ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(2)} µs`;
  return `${(ns / 1_000_000).toFixed(2)} ms`;
}

export function targetText(c: CompareOptions): string {
  if (c.max !== undefined) return `≤ ${c.max}x`;
  if (c.min !== undefined) return `≥ ${c.min}x`;
  return "—";
}

export function verdict(met: boolean | undefined): string {
  return met === undefined ? "" : met ? "met" : "MISSED";
}

/** Prints a table with columns padded to fit. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}
