/**
 * A test's TypeScript fixture run as a child process of the test's own node,
 * under tsx and with the package's source condition, as the test itself runs:
 * for what needs a process of its own (an agent loaded first, decorators
 * compiled another way, process-level handlers).
 */
import { execFile } from "node:child_process";

export interface FixtureOptions {
  /** Node flags after `--import tsx`, before the file: an agent's `--import` or `--require`. */
  flags?: readonly string[];
  /** Arguments after the file. */
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * `node --conditions=contextvars-source --import tsx ...flags file ...args`;
 * resolves with what it printed on stdout once it exits 0, else rejects with
 * its stderr. Ended after 30 s.
 */
export function runFixture(file: string, options: FixtureOptions = {}): Promise<string> {
  const { flags = [], args = [], env = process.env, cwd } = options;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--conditions=contextvars-source", "--import", "tsx", ...flags, file, ...args],
      { cwd, env, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** `runFixture`, then the last line it printed, parsed as JSON: the fixture's result. */
export async function fixtureResult<T>(file: string, options?: FixtureOptions): Promise<T> {
  const stdout = await runFixture(file, options);
  return JSON.parse(stdout.trim().split("\n").at(-1) as string) as T;
}
