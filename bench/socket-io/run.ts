/**
 * socket.io benchmark: `node --import tsx bench/socket-io/run.ts [--rounds 6]
 * [--cycles 2] [--duration 1] [--warmup 1] [--connections 50] [--size 16]
 * [--modes bare,bare2,als,ours] [--prof dir]`.
 *
 * What one incoming socket.io event costs the server in each mode of
 * server.ts, measured as bench/ws measures a WebSocket message: each round
 * starts a fresh server process per mode, warms each one, then runs `cycles`
 * cycles; in each, the clients load every server in turn for `duration`
 * seconds, the mode order rotating from cycle to cycle. A burst opens
 * `connections` socket.io-client sockets over loopback, on the websocket
 * transport only and each on a connection of its own, then each does
 * `emitWithAck("echo", payload)` with a `size`-character string and awaits
 * the acknowledgement, again and again, until the time is up; the server's
 * CPU time (process.cpuUsage, reported over IPC) is taken after the
 * handshakes and before the clients disconnect, so the figure is server CPU
 * per event. Ratios are taken within a cycle (bench/ws/report.ts).
 */
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { io, type Socket } from "socket.io-client";
import { buildPackage } from "../http/build.ts";
import { markOf, startServer, stopServer } from "../http/server-process.ts";
import { cycleArguments, runCycles } from "../ws/cycles.ts";
import { report } from "../ws/report.ts";
import type { Mode } from "./server.ts";

const MODES: readonly Mode[] = ["bare", "bare2", "als", "ours"];
const PAIRS: ReadonlyArray<readonly [Mode, Mode, string]> = [
  ["bare2", "bare", "control bare2/bare"],
  ["als", "bare", "als/bare"],
  ["ours", "bare", "ours/bare"],
  ["ours", "als", "ours/als"],
];

const { rounds, cycles, duration, warmup, connections, size, modes, profile } = cycleArguments(
  "bench:socket.io",
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
  events: number;
  seen: number;
}

async function start(mode: Mode): Promise<Server> {
  const { child, port } = await startServer(serverPath, [mode], build, profile);
  return { mode, child, url: `http://127.0.0.1:${port}` };
}

const stop = (server: Server): Promise<void> => stopServer(server.child);
const mark = (server: Server): Promise<Mark> => markOf<Mark>(server.child);

function connect(url: string, i: number): Promise<Socket> {
  // forceNew: io() otherwise shares one Manager, and so one connection, per URL.
  const socket = io(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    extraHeaders: { "x-user": `user-${i}` },
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

/** Emits, awaits the acknowledgement, and again, until `until`; resolves to the count. */
async function pingPong(socket: Socket, payload: string, until: number, mode: Mode) {
  // A server that dies (the ours mode throws if a get() finds no value)
  // leaves emitWithAck waiting for good: end the burst with an error instead.
  let onDisconnect: (reason: string) => void = () => {};
  const lost = new Promise<never>((_, reject) => {
    onDisconnect = (reason) =>
      reject(new Error(`${mode}: a connection was lost during the burst (${reason})`));
    socket.once("disconnect", onDisconnect);
  });
  let count = 0;
  try {
    while (true) {
      await Promise.race([socket.emitWithAck("echo", payload), lost]);
      count++;
      if (Date.now() >= until) return count;
    }
  } finally {
    socket.off("disconnect", onDisconnect);
  }
}

async function burst(server: Server, seconds: number) {
  const clients = await Promise.all(
    Array.from({ length: connections }, (_, i) => connect(server.url, i)),
  );
  const payload = "a".repeat(size);
  const before = await mark(server);
  const started = performance.now();
  const counts = await Promise.all(
    clients.map((socket) => pingPong(socket, payload, Date.now() + seconds * 1000, server.mode)),
  );
  const elapsed = (performance.now() - started) / 1000;
  const after = await mark(server);
  for (const socket of clients) socket.disconnect();
  const echoed = after.events - before.events;
  const sent = counts.reduce((a, b) => a + b, 0);
  if (echoed !== sent || echoed === 0) {
    throw new Error(
      `${server.mode}: the server acknowledged ${echoed} events, the clients got ${sent}`,
    );
  }
  return {
    cpuPerMessage: (after.cpu - before.cpu) / echoed,
    systemPerMessage: (after.system - before.system) / echoed,
    throughput: echoed / elapsed,
    seen: (after.seen - before.seen) / echoed,
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
  unit: "event",
  reads: "user",
});

const seconds = ((Date.now() - started) / 1000).toFixed(0);
const header =
  `Node ${process.version}, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; ` +
  `${rounds} rounds × ${cycles} cycles × ${duration} s bursts (after a ${warmup} s warmup) per ` +
  `mode, ${connections} socket.io connections (websocket transport), each emitting ` +
  `${size}-character events and awaiting each acknowledgement; ${seconds} s in all.`;
console.log(report(all, header, { modes: MODES, pairs: PAIRS, unit: "event" }));
