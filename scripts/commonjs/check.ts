/**
 * What a CommonJS project gets from the built package, on each Node of the
 * matrix: `node --import tsx scripts/commonjs/check.ts [node20 node22 …]`
 * (all four by default; run `npm run build` first, `npm run check:commonjs`
 * does both).
 *
 * It packs the package as npm would publish it, installs the tarball into a
 * temporary project whose package.json says `"type": "commonjs"` (the
 * optional peers linked from this project's node_modules), compiles
 * consumer.ts there with this project's TypeScript under `module:
 * "nodenext"`, and runs the output on each Node. Node 20.19+ and 22.12+
 * load an ES module through require() only when no module of its graph uses
 * top-level await (ERR_REQUIRE_ASYNC_MODULE otherwise): a subpath that stops
 * loading that way, a typing that stops compiling to require(), or a second
 * module instance beside import()'s fails here.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ensureRuntimes, projectRoot, type RuntimeId, runtimes } from "../runtimes/runtimes.ts";
import type { Report } from "./consumer.ts";

const nodes = ["node20", "node22", "node24", "node26"] as const satisfies readonly RuntimeId[];

const asked = process.argv.slice(2);
for (const id of asked) {
  if (!(nodes as readonly string[]).includes(id)) {
    throw new Error(`Expected node20, node22, node24 or node26, got \`${id}\``);
  }
}
if (!existsSync(join(projectRoot, "dist", "index.js"))) {
  throw new Error("dist/ is missing: run `npm run build` first (npm run check:commonjs does)");
}

const manifest = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as {
  peerDependencies: Record<string, string>;
};

/** The consumer project: the packed package, its peers, package.json, tsconfig.json, index.ts. */
function consumerProject(dir: string): void {
  const modules = join(dir, "node_modules");
  mkdirSync(modules);
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
      cwd: projectRoot,
      encoding: "utf8",
    }),
  ) as { filename: string }[];
  const tarball = join(dir, (packed[0] as { filename: string }).filename);
  execFileSync("tar", ["-xzf", tarball, "-C", modules]);
  renameSync(join(modules, "package"), join(modules, "contextvars"));
  // Linked, not installed: the consumer resolves them, their own
  // dependencies resolve beside them in this project.
  for (const name of [...Object.keys(manifest.peerDependencies), "@types"]) {
    const target = join(projectRoot, "node_modules", name);
    if (!existsSync(target)) continue;
    mkdirSync(dirname(join(modules, name)), { recursive: true });
    symlinkSync(target, join(modules, name), "dir");
  }
  writeFileSync(
    join(dir, "package.json"),
    `${JSON.stringify({ private: true, type: "commonjs" }, null, 2)}\n`,
  );
  const compilerOptions = {
    module: "nodenext",
    target: "es2022",
    strict: true,
    types: ["node"],
    // As tsc --init writes it. Without it the one error is in @types/koa,
    // which names an export content-disposition no longer has.
    skipLibCheck: true,
  };
  writeFileSync(
    join(dir, "tsconfig.json"),
    `${JSON.stringify({ compilerOptions, files: ["index.ts"] }, null, 2)}\n`,
  );
  copyFileSync(new URL("./consumer.ts", import.meta.url), join(dir, "index.ts"));
}

/** What went wrong when `bin` ran the compiled consumer; none when nothing did. */
function problemsOn(bin: string, dir: string): { version?: string; problems: string[] } {
  // Names the module with the top-level await, should one gain it.
  const run = spawnSync(bin, ["--experimental-print-required-tla", "index.js"], {
    cwd: dir,
    encoding: "utf8",
  });
  let report: Report;
  try {
    report = JSON.parse(run.stdout) as Report;
  } catch {
    return { problems: [`printed no report (status ${run.status}):\n${run.stdout}${run.stderr}`] };
  }
  const problems: string[] = [];
  for (const { specifier, error, sameAsImport } of report.subpaths) {
    if (error !== undefined) problems.push(`require("${specifier}") threw ${error}`);
    else if (!sameAsImport) problems.push(`require("${specifier}") is not import()'s module`);
  }
  if (report.subpaths.length === 0) problems.push("no subpath was required");
  for (const name of report.missing) problems.push(`${name} was not imported`);
  if (!report.acrossSystems.every((value) => value === "alice")) {
    const seen = JSON.stringify(report.acrossSystems);
    problems.push(`a value set through one module system was not seen through the other: ${seen}`);
  }
  if (run.stderr.trim() !== "") problems.push(`wrote to stderr: ${run.stderr.trim()}`);
  return { version: report.node, problems };
}

const dir = mkdtempSync(join(tmpdir(), "contextvars-commonjs-"));
let failed = false;
try {
  consumerProject(dir);
  const tsc = spawnSync(
    process.execPath,
    [join(projectRoot, "node_modules", "typescript", "bin", "tsc"), "-p", dir, "--pretty", "false"],
    { encoding: "utf8" },
  );
  if (tsc.status !== 0) {
    throw new Error(`tsc (module nodenext, type commonjs) failed:\n${tsc.stdout}${tsc.stderr}`);
  }
  const emitted = readFileSync(join(dir, "index.js"), "utf8");
  if (!emitted.includes('require("contextvars")')) {
    throw new Error('index.js does not require("contextvars"): not compiled to CommonJS');
  }
  console.log("tsc: module nodenext in a type commonjs package compiles the imports to require()");

  const ids: readonly RuntimeId[] = asked.length === 0 ? nodes : (asked as RuntimeId[]);
  // Node 20 is the machine's own: no runtimes to install for it alone.
  const all = runtimes(ids.some((id) => id !== "node20") ? ensureRuntimes() : "");
  for (const id of ids) {
    const { version = id, problems } = problemsOn(all[id].bin, dir);
    if (problems.length === 0) {
      console.log(`${version}: every subpath loads by require() as import()'s module; one Context`);
    } else {
      failed = true;
      console.log(`${version}: FAILED\n  ${problems.join("\n  ")}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (failed) process.exitCode = 1;
