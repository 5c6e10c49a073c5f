/**
 * The declarations a project gets when it installs the package compile in
 * the projects the package serves, with `skipLibCheck` off. The package is
 * laid out as node_modules/contextvars of a temporary project (package.json
 * and src/, as packed), its declarations emitted into dist/ there as `npm
 * run build` emits them, and a small consumer is compiled against them with
 * this project's TypeScript.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { runtime } from "../runtimes/runtime.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const onNode = { skip: runtime === "node" ? false : "tsc runs on node" };

/** Runs tsc; resolves with what it printed, empty when it found nothing. */
async function compile(args: readonly string[]): Promise<string> {
  return promisify(execFile)(process.execPath, [tsc, ...args, "--pretty", "false"], {
    cwd: root,
    timeout: 60_000,
  }).then(
    (done) => done.stdout,
    (error: Error & { stdout?: string }) => error.stdout || error.message,
  );
}

describe("the installed package's declarations", () => {
  let project = "";

  before(async () => {
    if (onNode.skip) return;
    project = mkdtempSync(join(tmpdir(), "contextvars-declarations-"));
    // Built beside the project, not in its node_modules, where tsc would not
    // find the sources of the package's own `#carrier` import.
    const build = join(project, "build");
    for (const file of ["package.json", "tsconfig.json", "tsconfig.build.json", "src"]) {
      cpSync(join(root, file), join(build, file), { recursive: true });
    }
    symlinkSync(join(root, "node_modules"), join(build, "node_modules"), "dir");
    const emitted = await compile([
      "-p",
      join(build, "tsconfig.build.json"),
      "--emitDeclarationOnly",
    ]);
    const installed = join(project, "node_modules", "contextvars");
    for (const file of ["package.json", "src", "dist"]) {
      cpSync(join(build, file), join(installed, file), { recursive: true });
    }
    rmSync(build, { recursive: true, force: true });
    assert.equal(emitted, "", "the build emits its declarations");
  });

  after(() => {
    if (project !== "") rmSync(project, { recursive: true, force: true });
  });

  it(
    "compile in a browser project: DOM and ES2022 libs, no @types/node, skipLibCheck off",
    onNode,
    async () => {
      writeFileSync(
        join(project, "index.ts"),
        [
          'import { ContextVar, TaskGroup, copyContext } from "contextvars";',
          'import { AsyncContext } from "contextvars/async-context";',
          'const user = new ContextVar<string>("user");',
          'const token = user.set("alice");',
          "user.reset(token);",
          "export const values = [copyContext(), new TaskGroup(), new AsyncContext.Snapshot()];",
          "",
        ].join("\n"),
      );
      const compilerOptions = {
        target: "es2022",
        module: "esnext",
        moduleResolution: "bundler",
        customConditions: ["browser"],
        lib: ["es2022", "dom"],
        types: [],
        strict: true,
        skipLibCheck: false,
        noEmit: true,
      };
      writeFileSync(
        join(project, "tsconfig.json"),
        JSON.stringify({ compilerOptions, files: ["index.ts"] }),
      );
      assert.equal(await compile(["-p", project]), "");
    },
  );
});
