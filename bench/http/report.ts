/**
 * Statistics and the markdown report of the HTTP benchmark: every ratio is
 * taken between two modes of the same cycle (measured seconds apart on the
 * same machine state), and reported as the median of those paired ratios with
 * their interquartile range and their extremes.
 */
import type { Framework, Mode } from "./apps.ts";

export interface Sample {
  /** µs of server CPU (user + system) per request. */
  cpuPerRequest: number;
  /** Requests per second. */
  throughput: number;
}

/** One cycle of one framework: a sample of each mode, taken back to back. */
export type Cycle = Map<Mode, Sample>;

function quantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  const a = sorted[low] as number;
  const b = sorted[high] as number;
  return a + (b - a) * (at - low);
}

function summary(values: number[], digits: number): string {
  if (values.length === 0) return "–";
  const sorted = [...values].sort((x, y) => x - y);
  const f = (v: number) => v.toFixed(digits);
  return (
    `**${f(quantile(sorted, 0.5))}** ${f(quantile(sorted, 0.25))}–${f(quantile(sorted, 0.75))} ` +
    `(${f(sorted[0] as number)}–${f(sorted[sorted.length - 1] as number)})`
  );
}

function ratios(cycles: Cycle[], a: Mode, b: Mode, field: keyof Sample): number[] {
  return cycles.flatMap((cycle) => {
    const x = cycle.get(a)?.[field];
    const y = cycle.get(b)?.[field];
    return x === undefined || y === undefined ? [] : [x / y];
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted.length === 0 ? Number.NaN : quantile(sorted, 0.5);
}

const PAIRS: ReadonlyArray<readonly [Mode, Mode, string]> = [
  ["bare2", "bare", "control bare2/bare"],
  ["als", "bare", "als/bare"],
  ["ours", "bare", "ours/bare"],
  ["ours", "als", "ours/als"],
  ["quiet", "als", "quiet/als"],
  ["alsid", "als", "alsid/als"],
  ["ours", "alsid", "ours/alsid"],
  ["alt", "bare", "alt/bare"],
  ["ours", "alt", "ours/alt"],
];

/** The report: absolute medians, then the paired ratios for CPU and for throughput. */
export function report(all: Map<Framework, Cycle[]>, header: string): string {
  const lines = [header, "", "Medians per mode, server CPU per request and throughput:", ""];
  lines.push(
    "| framework | bare | als | alsid | ours | quiet | alt |",
    "|---|---|---|---|---|---|---|",
  );
  for (const [framework, cycles] of all) {
    const cell = (mode: Mode) => {
      const samples = cycles.flatMap((c) => (c.has(mode) ? [c.get(mode) as Sample] : []));
      if (samples.length === 0) return "–";
      const cpu = median(samples.map((s) => s.cpuPerRequest)).toFixed(1);
      return `${cpu} µs · ${median(samples.map((s) => s.throughput)).toFixed(0)}/s`;
    };
    const cells = (["bare", "als", "alsid", "ours", "quiet", "alt"] as const).map(cell);
    lines.push(`| ${framework} | ${cells.join(" | ")} |`);
  }
  for (const [field, title] of [
    ["cpuPerRequest", "Server CPU per request"],
    ["throughput", "Throughput"],
  ] as const) {
    lines.push(
      "",
      `${title}, paired ratios: **median** interquartile range (min–max), one pair per cycle:`,
      "",
      `| framework | ${PAIRS.map(([, , label]) => label).join(" | ")} |`,
      `|---|${PAIRS.map(() => "---").join("|")}|`,
    );
    for (const [framework, cycles] of all) {
      const cells = PAIRS.map(([a, b]) => summary(ratios(cycles, a, b, field), 3));
      lines.push(`| ${framework} | ${cells.join(" | ")} |`);
    }
  }
  return lines.join("\n");
}
