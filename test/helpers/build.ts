/**
 * Running a framework's build (Vite, Astro, Nitro) as a child process of the
 * test's own node, from an app folder the test made.
 */
import { spawn } from "node:child_process";

/**
 * Runs `node ...args` in `cwd`; resolves when it exits 0, else rejects with
 * everything it printed. A build that fails can stay alive (Astro 5 did, on
 * a bad dependency manifest): ended after two minutes, with what it printed.
 */
export function runBuild(
  label: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    const timer = setTimeout(() => child.kill(), 120_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${label} exited ${code ?? signal}:\n${output}`));
    });
  });
}
