/**
 * The report of the message benchmarks (bench/ws, bench/socket-io): per-mode
 * medians, then every ratio taken between two modes of the same cycle, as
 * the median of those paired ratios with their interquartile range and
 * extremes (as bench/http). Each runner names its modes, its pairs and what
 * one message is called.
 */

export interface Sample {
  /** µs of server CPU (user + system) per message echoed (per event acknowledged). */
  cpuPerMessage: number;
  /** The part of it spent in the kernel (system time). */
  systemPerMessage: number;
  /** Messages echoed per second. */
  throughput: number;
  /** Share of the handler's store reads that found a value. */
  seen: number;
}

/** One cycle: a sample of each mode, taken back to back. */
export type Cycle<M extends string = string> = Map<M, Sample>;

export interface Layout<M extends string> {
  /** The modes, in the table's order; those named bare… read nothing of a store. */
  readonly modes: readonly M[];
  /** Each ratio as [numerator, denominator, label]. */
  readonly pairs: ReadonlyArray<readonly [M, M, string]>;
  /** What one measured unit is called: "message", "event". */
  readonly unit: string;
}

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

export function report<M extends string>(
  cycles: Cycle<M>[],
  header: string,
  { modes, pairs, unit }: Layout<M>,
): string {
  const samples = (mode: M) => cycles.flatMap((c) => (c.has(mode) ? [c.get(mode) as Sample] : []));
  const lines = [
    header,
    "",
    `| mode | server CPU per ${unit} | of which system | ${unit}s per second | store reads that found a value |`,
    "|---|---|---|---|---|",
  ];
  for (const mode of modes) {
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
    `| ratio | server CPU per ${unit} | system time per ${unit} | ${unit}s per second |`,
    "|---|---|---|---|",
  );
  for (const [a, b, label] of pairs) {
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
