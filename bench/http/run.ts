/**
 * HTTP benchmark: `node --import tsx bench/http/run.ts [--rounds 2]
 * [--cycles 3] [--duration 1] [--warmup 1] [--connections 50]
 * [--frameworks http,express] [--modes bare,als,ours]`.
 *
 * Each round starts, for one framework at a time, a fresh server process per
 * mode of apps.ts (bare, a bare-vs-bare control, minimal ALS, minimal ALS
 * with the request id, ours, ours without the echo, the popular alternative),
 * warms each one, then runs `cycles` cycles: in each,
 * autocannon loads every server in turn over loopback for `duration`
 * seconds, the mode order rotating from cycle to cycle. Idle servers cost
 * nothing, so the modes of a cycle are measured seconds apart, under the
 * same load from whatever else runs on the machine. Each server reports its
 * own CPU time (process.cpuUsage) around each burst: the headline figure is
 * server CPU per request, which the load generator sharing the machine
 * disturbs far less than throughput. Ratios are taken within a cycle; see
 * report.ts.
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { FRAMEWORKS, type Framework, type Mode, modesOf } from "./apps.ts";
import { buildPackage } from "./build.ts";
import { checkArguments, names, option } from "./cli.ts";
import { type Cycle, report } from "./report.ts";
import { markOf, startServer, stopServer } from "./server-process.ts";

checkArguments(
  `usage: npm run bench:http [-- --rounds 2] [--cycles 3] [--duration 1] [--warmup 1]
       [--connections 50] [--frameworks ${FRAMEWORKS.join(",")}] [--modes bare,als,ours,…]`,
  ["rounds", "cycles", "duration", "warmup", "connections", "frameworks", "modes"],
);
const rounds = option("rounds", 2, { whole: true });
const cycles = option("cycles", 3, { whole: true });
const duration = option("duration", 1);
const warmup = option("warmup", 1);
const connections = option("connections", 50, { whole: true });
const frameworks: Framework[] = names("frameworks", FRAMEWORKS) ?? [...FRAMEWORKS];
// Any framework's mode; alt is measured only where the framework has one.
const chosenModes = names("modes", [...new Set(FRAMEWORKS.flatMap(modesOf))]);

const serverPath = fileURLToPath(new URL("./server.ts", import.meta.url));
const build = buildPackage();

interface Server {
  mode: Mode;
  child: ChildProcess;
  url: string;
}

async function start(framework: Framework, mode: Mode): Promise<Server> {
  const { child, port } = await startServer(serverPath, [framework, mode], build);
  return { mode, child, url: `http://127.0.0.1:${port}/` };
}

const stop = (server: Server): Promise<void> => stopServer(server.child);

async function cpu(server: Server): Promise<number> {
  return (await markOf<{ cpu: number }>(server.child)).cpu;
}

async function burst(server: Server, seconds: number) {
  const before = await cpu(server);
  const result = await autocannon({ url: server.url, connections, duration: seconds });
  const after = await cpu(server);
  const ok = result["2xx"];
  if (result.errors > 0 || result.non2xx > 0 || ok === 0) {
    throw new Error(`${server.mode}: ${result.errors} errors, ${result.non2xx} non-2xx`);
  }
  return { cpuPerRequest: (after - before) / ok, throughput: ok / seconds };
}

const all = new Map<Framework, Cycle[]>(frameworks.map((f) => [f, []]));
const started = Date.now();
for (let round = 0; round < rounds; round++) {
  for (const framework of frameworks) {
    const modes = modesOf(framework).filter((m) => chosenModes?.includes(m) ?? true);
    const servers: Server[] = [];
    try {
      // Every server that started is stopped (finally) even when another failed to.
      const starts = await Promise.allSettled(modes.map((mode) => start(framework, mode)));
      for (const s of starts) if (s.status === "fulfilled") servers.push(s.value);
      for (const s of starts) if (s.status === "rejected") throw s.reason;
      for (const server of servers) await burst(server, warmup);
      for (let c = 0; c < cycles; c++) {
        const cycle: Cycle = new Map();
        const shift = round * cycles + c;
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + shift) % servers.length] as Server;
          const sample = await burst(server, duration);
          cycle.set(server.mode, sample);
          console.error(
            `round ${round + 1}/${rounds} cycle ${c + 1}/${cycles} ${framework.padEnd(7)} ` +
              `${server.mode.padEnd(5)} ${sample.cpuPerRequest.toFixed(1).padStart(6)} µs/req ` +
              `${sample.throughput.toFixed(0).padStart(6)} req/s`,
          );
        }
        all.get(framework)?.push(cycle);
      }
    } finally {
      await Promise.all(servers.map(stop));
    }
  }
}

const seconds = ((Date.now() - started) / 1000).toFixed(0);
const header =
  `Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; ${rounds} rounds × ` +
  `${cycles} cycles × ${duration} s bursts (after a ${warmup} s warmup) per mode, ` +
  `${connections} connections, no x-request-id sent (ours makes a UUID per request); ${seconds} s in all.`;
console.log(report(all, header));
