/**
 * A framework's own server run as a child process of the test's node
 * (`next start`, Nitro's built output and dev server): started listening on
 * 127.0.0.1 port 0, its URL read from what it prints, the JSON it prints
 * after `[[log]]` on a line of stdout gathered, and ended with SIGTERM, or
 * SIGKILL when that has not ended it 10 s later.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

export interface ServerProcess<L> {
  /** The URL it prints, without a trailing slash. */
  base: string;
  /** The JSON lines it printed so far. */
  logs: L[];
  child: ChildProcess;
}

const running = new Set<ChildProcess>();

/**
 * Spawns `node ...args` with `env` over this process's environment; resolves
 * once its output matches `listening` (whose first group is the URL), rejects
 * if it exits first or prints no URL within 60 s.
 */
export function startServer<L>(
  args: readonly string[],
  env: Record<string, string>,
  listening: RegExp,
  cwd?: string,
): Promise<ServerProcess<L>> {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs: L[] = [];
  let output = "";
  let pending = "";
  return new Promise<ServerProcess<L>>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no URL after 60 s:\n${output}`));
    }, 60_000);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code ?? signal} before listening:\n${output}`));
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const at = line.indexOf("[[log]]");
        if (at >= 0) logs.push(JSON.parse(line.slice(at + 7)) as L);
      }
      // biome-ignore lint/suspicious/noControlCharactersInRegex: dev servers colour their output
      const url = listening.exec(output.replace(/\u001b\[[0-9;]*m/g, ""))?.[1];
      if (url === undefined) return;
      clearTimeout(timer);
      resolve({ base: url.replace(/\/$/, ""), logs, child });
    });
  });
}

/** Ends a server: SIGTERM, and SIGKILL if it has not exited 10 s later. */
export async function stopServer(child: ChildProcess): Promise<void> {
  if (!running.delete(child) || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Ends every server started here and not ended yet: for a file's `after`. */
export async function stopServers(): Promise<void> {
  await Promise.all([...running].map(stopServer));
}

/**
 * Waits until `count` log lines satisfy `which`: a server may print after the
 * response was sent. Gives up after 30 s, inside the suites' timeouts, and
 * returns what came.
 */
export async function loggedLines<L>(
  server: ServerProcess<L>,
  which: (line: L) => boolean,
  count: number,
): Promise<L[]> {
  for (let i = 0; i < 1200; i++) {
    const lines = server.logs.filter(which);
    if (lines.length >= count) return lines;
    await sleep(25);
  }
  return server.logs.filter(which);
}
