/**
 * A benchmark server in a process of its own, as bench:http and bench:ws
 * run them: forked with tsx and the package's tsc build, it tells its port
 * first, then answers "mark" with its figures so far and leaves on "exit".
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return once(child, "message").then(([message]) => message as T);
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
  if (child.exitCode !== null) return;
  child.send("exit");
  await once(child, "exit");
}
