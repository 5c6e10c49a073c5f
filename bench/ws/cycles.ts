/**
 * The rounds and cycles bench/ws and bench/socket-io share: each round
 * starts a fresh server process per mode, warms each one, then runs
 * `cycles` cycles in which every server takes one burst in turn, the mode
 * order rotating from cycle to cycle (idle servers cost nothing, so the
 * modes of a cycle are measured seconds apart under the same load from
 * whatever else runs on the machine). Ratios are taken within a cycle
 * (report.ts).
 */
import { checkArguments, names, option } from "../http/cli.ts";
import type { Cycle, Sample } from "./report.ts";

export interface CycleOptions<M extends string, S extends { readonly mode: M }> {
  readonly modes: readonly M[];
  readonly rounds: number;
  readonly cycles: number;
  /** Seconds of the warm-up burst each fresh server takes before its round. */
  readonly warmup: number;
  /** Seconds of each measured burst. */
  readonly duration: number;
  start(mode: M): Promise<S>;
  stop(server: S): Promise<void>;
  burst(server: S, seconds: number): Promise<Sample>;
  /** What one unit of work is called in the progress lines: "msg", "event". */
  readonly unit: string;
  /** What the handler reads, in the progress lines: "store", "user". */
  readonly reads: string;
}

/** Runs every round and cycle; prints a line per burst on stderr. */
export async function runCycles<M extends string, S extends { readonly mode: M }>(
  o: CycleOptions<M, S>,
): Promise<Cycle<M>[]> {
  const all: Cycle<M>[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const servers: S[] = [];
    try {
      // Every server that started is stopped (finally) even when another failed to.
      const starts = await Promise.allSettled(o.modes.map((mode) => o.start(mode)));
      for (const s of starts) if (s.status === "fulfilled") servers.push(s.value);
      for (const s of starts) if (s.status === "rejected") throw s.reason;
      for (const server of servers) await o.burst(server, o.warmup);
      for (let c = 0; c < o.cycles; c++) {
        const cycle: Cycle<M> = new Map();
        const shift = round * o.cycles + c;
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + shift) % servers.length] as S;
          const sample = await o.burst(server, o.duration);
          cycle.set(server.mode, sample);
          console.error(
            `round ${round + 1}/${o.rounds} cycle ${c + 1}/${o.cycles} ${server.mode.padEnd(5)} ` +
              `${sample.cpuPerMessage.toFixed(2).padStart(6)} µs/${o.unit} ` +
              `(system ${sample.systemPerMessage.toFixed(2).padStart(5)}) ` +
              `${sample.throughput.toFixed(0).padStart(6)} ${o.unit === "msg" ? "msg" : `${o.unit}s`}/s ` +
              `${o.reads} seen by ${(sample.seen * 100).toFixed(0)}% of reads`,
          );
        }
        all.push(cycle);
      }
    } finally {
      await Promise.all(servers.map((server) => o.stop(server)));
    }
  }
  return all;
}

/** What both runners' command lines give, read and checked. */
export interface CycleArguments<M extends string>
  extends Pick<
    CycleOptions<M, { mode: M }>,
    "modes" | "rounds" | "cycles" | "warmup" | "duration"
  > {
  readonly connections: number;
  readonly size: number;
  /** Node flags for each server: a V8 CPU profile per server with --prof <dir>. */
  readonly profile: string[];
}

/**
 * Reads `--rounds 6 --cycles 2 --duration 1 --warmup 1 --connections 50
 * --size 16 --modes … --prof dir`, as bench:ws and bench:socket.io take
 * them; `script` names the npm script in the usage line. Exits with the
 * usage on an unknown or malformed option (cli.ts).
 */
export function cycleArguments<M extends string>(
  script: string,
  all: readonly M[],
): CycleArguments<M> {
  checkArguments(
    `usage: npm run ${script} [-- --rounds 6] [--cycles 2] [--duration 1] [--warmup 1]
       [--connections 50] [--size 16] [--modes ${all.join(",")}] [--prof dir]`,
    ["rounds", "cycles", "duration", "warmup", "connections", "size", "modes", "prof"],
  );
  const chosen = names("modes", all);
  const profAt = process.argv.indexOf("--prof");
  return {
    rounds: option("rounds", 6, { whole: true }),
    cycles: option("cycles", 2, { whole: true }),
    duration: option("duration", 1),
    warmup: option("warmup", 1),
    connections: option("connections", 50, { whole: true }),
    size: option("size", 16, { whole: true }),
    // In the order of `all`, whatever the order given.
    modes: chosen === undefined ? [...all] : all.filter((m) => chosen.includes(m)),
    profile: profAt === -1 ? [] : ["--cpu-prof", "--cpu-prof-dir", process.argv[profAt + 1] ?? "."],
  };
}
