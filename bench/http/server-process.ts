/**
 * A benchmark server in a process of its own, as bench:http, bench:ws and
 * bench:socket.io run them: forked with tsx and the package's tsc build, it
 * tells its port first, then answers "mark" with its figures so far and
 * leaves on "exit".
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { basename } from "node:path";

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
}

const names = new WeakMap<ChildProcess, string>();
const nameOf = (child: ChildProcess): string => names.get(child) ?? "a benchmark server";

// Rejects when the process exits first: a server that fails before it tells its
// port (an app that throws while starting) would otherwise leave the runner,
// and every server it started beside that one, waiting for good.
function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (message: unknown) => {
      settle();
      resolve(message as T);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      settle();
      const how = signal ?? `code ${code}`;
      reject(new Error(`${nameOf(child)} exited (${how}) before it answered; its error is above`));
    };
    const onError = (error: Error) => {
      settle();
      reject(error);
    };
    const settle = () => {
      child.off("message", onMessage).off("exit", onExit).off("error", onError);
    };
    if (child.exitCode !== null || child.signalCode !== null) {
      onExit(child.exitCode, child.signalCode);
      return;
    }
    child.on("message", onMessage).on("exit", onExit).on("error", onError);
  });
}

/** Forks `path` with `args`; resolves once it has told its port. */
export async function startServer(
  path: string,
  args: readonly string[],
  build: string,
  execArgv: readonly string[] = [],
): Promise<ServerProcess> {
  const child = fork(path, args, {
    execArgv: ["--import", "tsx", ...execArgv],
    env: { ...process.env, CONTEXTVARS_BUILD: build, NODE_ENV: "production" },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  names.set(child, `the benchmark server ${[basename(path), ...args].join(" ")}`);
  const { port } = await nextMessage<{ port: number }>(child);
  return { child, port };
}

/** The server's figures so far (its answer to "mark"). */
export function markOf<T>(child: ChildProcess): Promise<T> {
  child.send("mark");
  return nextMessage<T>(child);
}

/** Asks the server to exit and waits for it (nothing if it has exited already). */
export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.send("exit");
  await once(child, "exit");
}
