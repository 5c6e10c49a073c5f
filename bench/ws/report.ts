/**
 * The WebSocket benchmark's report: per-mode medians, then every ratio
 * taken between two modes of the same cycle, as the median of those paired
 * ratios with their interquartile range and extremes (as bench/http).
 */
import type { Mode } from "./server.ts";

export interface Sample {
  /** µs of server CPU (user + system) per message echoed. */
  cpuPerMessage: number;
  /** The part of it spent in the kernel (system time). */
  systemPerMessage: number;
  /** Messages echoed per second. */
  throughput: number;
  /** Share of the handler's store reads that found a value. */
  seen: number;
}

/** One cycle: a sample of each mode, taken back to back. */
export type Cycle = Map<Mode, Sample>;

function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const a = sorted[Math.floor(at)] as number;
  const b = sorted[Math.ceil(at)] as number;
  return a + (b - a) * (at - Math.floor(at));
}

function median(values: number[]): number {
  return values.length === 0
    ? Number.NaN
    : quantile(
        [...values].sort((x, y) => x - y),
        0.5,
      );
}

function summary(values: number[]): string {
  if (values.length === 0) return "–";
  const sorted = [...values].sort((x, y) => x - y);
  const f = (v: number) => v.toFixed(3);
  return (
    `**${f(quantile(sorted, 0.5))}** ${f(quantile(sorted, 0.25))}–${f(quantile(sorted, 0.75))} ` +
    `(${f(sorted[0] as number)}–${f(sorted[sorted.length - 1] as number)})`
  );
}

const PAIRS: ReadonlyArray<readonly [Mode, Mode, string]> = [
  ["bare2", "bare", "control bare2/bare"],
  ["als", "bare", "als/bare"],
  ["ours", "bare", "ours/bare"],
  ["ours", "als", "ours/als"],
  ["alsbound", "bare", "alsbound/bare"],
  ["ours", "alsbound", "ours/alsbound"],
];

export function report(cycles: Cycle[], header: string): string {
  const samples = (mode: Mode) =>
    cycles.flatMap((c) => (c.has(mode) ? [c.get(mode) as Sample] : []));
  const lines = [
    header,
    "",
    "| mode | server CPU per message | of which system | messages per second | store reads that found a value |",
    "|---|---|---|---|---|",
  ];
  for (const mode of ["bare", "bare2", "als", "alsbound", "ours"] as const) {
    const s = samples(mode);
    if (s.length === 0) continue;
    lines.push(
      `| ${mode} | ${median(s.map((x) => x.cpuPerMessage)).toFixed(2)} µs | ` +
        `${median(s.map((x) => x.systemPerMessage)).toFixed(2)} µs | ` +
        `${median(s.map((x) => x.throughput)).toFixed(0)} | ` +
        `${mode.startsWith("bare") ? "–" : `${(median(s.map((x) => x.seen)) * 100).toFixed(0)}%`} |`,
    );
  }
  lines.push(
    "",
    `Paired ratios, one pair per cycle (${cycles.length} pairs): **median** interquartile range (min–max):`,
    "",
    "| ratio | server CPU per message | system time per message | messages per second |",
    "|---|---|---|---|",
  );
  for (const [a, b, label] of PAIRS) {
    const of = (field: "cpuPerMessage" | "systemPerMessage" | "throughput") =>
      cycles.flatMap((c) => {
        const x = c.get(a)?.[field];
        const y = c.get(b)?.[field];
        return x === undefined || y === undefined ? [] : [x / y];
      });
    lines.push(
      `| ${label} | ${summary(of("cpuPerMessage"))} | ${summary(of("systemPerMessage"))} | ` +
        `${summary(of("throughput"))} |`,
    );
  }
  return lines.join("\n");
}
