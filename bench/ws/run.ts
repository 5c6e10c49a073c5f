/**
 * WebSocket benchmark: `node --import tsx bench/ws/run.ts [--rounds 6]
 * [--cycles 2] [--duration 1] [--warmup 1] [--connections 50] [--size 16]
 * [--modes bare,bare2,als,alsbound,ours] [--prof dir]`.
 *
 * What one incoming WebSocket message costs the server in each mode of
 * server.ts, measured as bench/http measures a request: each round starts a
 * fresh server process per mode, warms each one, then runs `cycles` cycles;
 * in each, the clients load every server in turn for `duration` seconds, the
 * mode order rotating from cycle to cycle (idle servers cost nothing, so the
 * modes of a cycle are measured seconds apart, under the same load from
 * whatever else runs on the machine). A burst opens `connections` `ws`
 * clients over loopback, then each sends a `size`-byte message and awaits
 * its echo, again and again, until the time is up; the server's CPU time
 * (process.cpuUsage, reported over IPC) is taken after the handshakes and
 * before the clients close, so the figure is server CPU per message. Ratios
 * are taken within a cycle (report.ts).
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { buildPackage } from "../http/build.ts";
import { markOf, startServer, stopServer } from "../http/server-process.ts";
import { cycleArguments, runCycles } from "./cycles.ts";
import { report } from "./report.ts";
import type { Mode } from "./server.ts";

const MODES: readonly Mode[] = ["bare", "bare2", "als", "alsbound", "ours"];
const PAIRS: ReadonlyArray<readonly [Mode, Mode, string]> = [
  ["bare2", "bare", "control bare2/bare"],
  ["als", "bare", "als/bare"],
  ["ours", "bare", "ours/bare"],
  ["ours", "als", "ours/als"],
  ["alsbound", "bare", "alsbound/bare"],
  ["ours", "alsbound", "ours/alsbound"],
];

const { rounds, cycles, duration, warmup, connections, size, modes, profile } = cycleArguments(
  "bench:ws",
  MODES,
);

const serverPath = fileURLToPath(new URL("./server.ts", import.meta.url));
const build = buildPackage();

interface Server {
  mode: Mode;
  child: ChildProcess;
  url: string;
}

interface Mark {
  cpu: number;
  system: number;
  messages: number;
  seen: number;
}

async function start(mode: Mode): Promise<Server> {
  const { child, port } = await startServer(serverPath, [mode], build, profile);
  return { mode, child, url: `ws://127.0.0.1:${port}/` };
}

const stop = (server: Server): Promise<void> => stopServer(server.child);
const mark = (server: Server): Promise<Mark> => markOf<Mark>(server.child);

function connect(url: string, i: number): Promise<WebSocket> {
  const ws = new WebSocket(url, { headers: { "x-user": `user-${i}` }, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** Sends, awaits the echo, and again, until `until`; resolves to the count. */
function pingPong(ws: WebSocket, payload: Buffer, until: number, mode: Mode): Promise<number> {
  return new Promise((resolve, reject) => {
    let count = 0;
    ws.on("error", reject);
    // A server that dies (the ours mode throws if a get() finds no value) closes
    // the connection with no error: without this the burst never ended, and the
    // runner left with exit code 13 and no word of why.
    ws.on("close", (code) => {
      reject(new Error(`${mode}: the server closed a connection during the burst (code ${code})`));
    });
    ws.on("message", () => {
      count++;
      if (Date.now() >= until) resolve(count);
      else ws.send(payload);
    });
    ws.send(payload);
  });
}

async function burst(server: Server, seconds: number) {
  const clients = await Promise.all(
    Array.from({ length: connections }, (_, i) => connect(server.url, i)),
  );
  const payload = Buffer.alloc(size, 0x61);
  const before = await mark(server);
  const started = performance.now();
  const counts = await Promise.all(
    clients.map((ws) => pingPong(ws, payload, Date.now() + seconds * 1000, server.mode)),
  );
  const elapsed = (performance.now() - started) / 1000;
  const after = await mark(server);
  await Promise.all(
    clients.map((ws) => {
      const closed = once(ws, "close");
      ws.close();
      return closed;
    }),
  );
  const echoed = after.messages - before.messages;
  const sent = counts.reduce((a, b) => a + b, 0);
  if (echoed !== sent || echoed === 0) {
    throw new Error(
      `${server.mode}: the server echoed ${echoed} messages, the clients got ${sent}`,
    );
  }
  return {
    cpuPerMessage: (after.cpu - before.cpu) / echoed,
    systemPerMessage: (after.system - before.system) / echoed,
    throughput: echoed / elapsed,
    seen: (after.seen - before.seen) / (3 * echoed),
  };
}

const started = Date.now();
const all = await runCycles({
  modes,
  rounds,
  cycles,
  warmup,
  duration,
  start,
  stop,
  burst,
  unit: "msg",
  reads: "store",
});

const seconds = ((Date.now() - started) / 1000).toFixed(0);
const header =
  `Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; ` +
  `${rounds} rounds × ${cycles} cycles × ${duration} s bursts (after a ${warmup} s warmup) per ` +
  `mode, ${connections} connections, each sending ${size}-byte messages and awaiting each echo; ` +
  `${seconds} s in all.`;
console.log(report(all, header, { modes: MODES, pairs: PAIRS, unit: "message" }));
