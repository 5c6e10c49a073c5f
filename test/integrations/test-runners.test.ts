/**
 * An app's own tests, under the test runners users run them with: Vitest 4,
 * jest 30 (ES modules, `node --experimental-vm-modules`) and node:test, each
 * run as a child process on the fixture suites in
 * fixtures/test-runners/ (docs/recipes.md, Overrides in tests). The fixture
 * suites assert what a test sees: overrides with var.run, a new Context and
 * a prepared Context; concurrent tests; where hooks run and what their sets
 * leak to; fake timers with callLater, bind, timeout and TaskGroup; Node's
 * promises and AbortErrors from outside jest's vm context. Here: every one
 * of their tests passed, under each pool, and which files read the values
 * other files set (Vitest's `isolate: false`). Under DOM environments (jest's
 * and Vitest's jsdom, Vitest's happy-dom), the package is installed in a
 * project of its own (fixtures/test-runners/dom/), built as `npm run build`
 * builds it, since where it lives decides how Vitest loads it: there, which
 * carrier the runner's resolution picks decides whether values outlive an
 * await. Under node:test, a jsdom and a happy-dom window made by the test
 * hand it AbortSignals of their own realm.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { DomFacts } from "./fixtures/test-runners/dom/facts.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const fixtures = join(root, "test/integrations/fixtures/test-runners");
const vitestBin = join(root, "node_modules/vitest/vitest.mjs");
const jestBin = join(root, "node_modules/jest/bin/jest.js");
const scratch = mkdtempSync(join(tmpdir(), "contextvars-runners-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Report {
  numTotalTests: number;
  numPassedTests: number;
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[];
}

interface Run {
  report: Report;
  /** What the leak-*.spec.ts files read when they loaded, in the order they loaded. */
  seen: { file: string; tenant: string; region: string }[];
}

let runs = 0;

/** Runs node with args in cwd; resolves with the JSON report it wrote and the leak files' log. */
async function run(cwd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const id = ++runs;
  const output = join(scratch, `report-${id}.json`);
  const seenLog = join(scratch, `seen-${id}.jsonl`);
  try {
    await promisify(execFile)(process.execPath, [...args, `--outputFile=${output}`], {
      cwd,
      timeout: 30_000,
      // Without this runner's NODE_TEST_CONTEXT and NODE_OPTIONS (the source
      // condition and tsx are the fixtures' own config's business).
      env: {
        ...process.env,
        NODE_TEST_CONTEXT: undefined,
        NODE_OPTIONS: "",
        SEEN_LOG: seenLog,
        ...env,
      },
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    assert.fail(`${args.join(" ")} failed:\n${stdout}\n${stderr}`);
  }
  const report = JSON.parse(readFileSync(output, "utf8")) as Report;
  let seen: Run["seen"] = [];
  try {
    seen = readFileSync(seenLog, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Run["seen"][number]);
  } catch {
    // No leak file ran.
  }
  return { report, seen };
}

const vitestDir = join(fixtures, "vitest");
const vitest = (args: string[], env?: Record<string, string>) =>
  // --no-cache: no results cache written into the fixture's node_modules/.vite.
  run(vitestDir, [vitestBin, "run", "--reporter=json", "--no-cache", ...args], env);

const jestDir = join(fixtures, "jest");
const jest = (args: string[]) =>
  run(jestDir, [
    "--experimental-vm-modules",
    "--no-warnings",
    jestBin,
    "--json",
    // The transform cache in scratch, not left in the system's temp folder.
    `--cacheDirectory=${join(scratch, "jest-cache")}`,
    ...args,
  ]);

/** Every test of the report passed, and there were `count`. */
function allPassed({ report }: Run, count: number): void {
  const failed = report.testResults.flatMap((file) =>
    file.assertionResults.filter((test) => test.status !== "passed").map((test) => test.fullName),
  );
  assert.deepEqual(failed, []);
  assert.equal(report.numPassedTests, count);
  assert.equal(report.numTotalTests, count);
}

const SUITES = ["overrides", "hooks", "fake-timers", "realms"];

describe("Vitest 4", () => {
  it("overrides, hooks, fake timers and Node's objects, in the default pool (forks)", async () => {
    allPassed(await vitest(SUITES), 22);
  });

  it("the same in worker threads (--pool=threads)", async () => {
    allPassed(await vitest(["--pool=threads", ...SUITES]), 22);
  });

  it("Node's promises and AbortErrors from outside a vm context (--pool=vmThreads)", async () => {
    allPassed(await vitest(["--pool=vmThreads", "realms"], { VITEST_POOL_IS_VM: "1" }), 1);
  });

  for (const pool of ["forks", "threads"]) {
    it(`each file loads the app and the package anew: no file reads another's sets (${pool})`, async () => {
      const result = await vitest([`--pool=${pool}`, "--maxWorkers=1", "leak-"]);
      allPassed(result, 2);
      for (const line of result.seen)
        assert.deepEqual([line.tenant, line.region], ["none", "none"]);
    });
  }

  it("isolate: false: the file run second in a worker reads what the first set, in a test and at its top level", async () => {
    const result = await vitest(["--no-isolate", "--maxWorkers=1", "leak-"]);
    allPassed(result, 2);
    const [first, second] = result.seen;
    assert.deepEqual([first?.tenant, first?.region], ["none", "none"]);
    assert.deepEqual([second?.tenant, second?.region], [first?.file, first?.file]);
  });

  it("isolate: false with aroundEach running each test in a copy: only the top-level set reaches the next file", async () => {
    const result = await vitest([
      "--no-isolate",
      "--maxWorkers=1",
      "--config=vitest.copy-per-test.config.ts",
      "leak-",
    ]);
    allPassed(result, 2);
    const [first, second] = result.seen;
    assert.deepEqual([first?.tenant, first?.region], ["none", "none"]);
    assert.deepEqual([second?.tenant, second?.region], ["none", first?.file]);
  });
});

describe("jest 30, ES modules", () => {
  it("overrides, hooks, fake timers and Node's objects from outside its vm context; files in one process share nothing", async () => {
    const result = await jest(["--runInBand"]);
    allPassed(result, 19);
    assert.equal(result.seen.length, 2);
    for (const line of result.seen) assert.deepEqual([line.tenant, line.region], ["none", "none"]);
  });
});

/** Runs a fixture file under node:test; resolves with its TAP output, passing or not. */
async function nodeTest(file: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--conditions=contextvars-source",
      "--import",
      "tsx",
      "--test",
      "--test-reporter=tap",
      join(fixtures, "node-test", file),
    ],
    { cwd: root, timeout: 30_000, env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
  ).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
  return stdout;
}

describe("node:test", () => {
  it("before, beforeEach and t.beforeEach: a body reads its hook's set, and so does every test after it", async () => {
    const stdout = await nodeTest("hooks.ts");
    assert.match(stdout, /^# pass 5$/m, stdout);
    assert.match(stdout, /^# fail 0$/m, stdout);
  });

  it("a jsdom and a happy-dom window made in the test: createTask, TaskGroup, taskGroup and timeout take their AbortSignals, and refuse what is not one", async () => {
    const stdout = await nodeTest("dom-windows.ts");
    assert.match(stdout, /^# pass 11$/m, stdout);
    assert.match(stdout, /^# fail 0$/m, stdout);
  });
});

/**
 * A project with the package installed in its node_modules (package.json,
 * src and dist, as packed), the DOM fixtures, and links to the runners and
 * environments of this repository's node_modules.
 */
function domProject(): string {
  const project = join(scratch, "dom-project");
  const build = join(scratch, "dom-build");
  for (const file of ["package.json", "tsconfig.json", "tsconfig.build.json", "src"]) {
    cpSync(join(root, file), join(build, file), { recursive: true });
  }
  symlinkSync(join(root, "node_modules"), join(build, "node_modules"), "dir");
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(build, "tsconfig.build.json")], {
    timeout: 60_000,
  });
  const installed = join(project, "node_modules/contextvars");
  for (const file of ["package.json", "src", "dist"]) {
    cpSync(join(build, file), join(installed, file), { recursive: true });
  }
  const linked = [
    "vitest",
    "jest",
    "@jest/globals",
    "jest-environment-jsdom",
    "jsdom",
    "happy-dom",
  ];
  for (const name of [...linked, "esbuild"]) {
    mkdirSync(dirname(join(project, "node_modules", name)), { recursive: true });
    symlinkSync(join(root, "node_modules", name), join(project, "node_modules", name), "dir");
  }
  const dom = join(fixtures, "dom");
  for (const file of readdirSync(dom)) cpSync(join(dom, file), join(project, file));
  cpSync(join(fixtures, "jest/strip-types.cjs"), join(project, "strip-types.cjs"));
  writeFileSync(join(project, "package.json"), '{ "private": true, "type": "module" }\n');
  return project;
}

let domDir = "";
let domRuns = 0;

/** Runs the DOM fixture spec under one runner set-up; resolves with the facts it recorded. */
async function domFacts(args: string[], env: Record<string, string> = {}): Promise<DomFacts> {
  const factsLog = join(scratch, `facts-${++domRuns}.jsonl`);
  allPassed(await run(domDir, args, { ...env, FACTS_LOG: factsLog }), 1);
  const lines = readFileSync(factsLog, "utf8").trim().split("\n");
  assert.equal(lines.length, 1);
  return (JSON.parse(lines[0] as string) as { facts: DomFacts }).facts;
}

const domJest = (config: string) =>
  domFacts([
    "--experimental-vm-modules",
    "--no-warnings",
    join(domDir, "node_modules/jest/bin/jest.js"),
    "--json",
    `--cacheDirectory=${join(scratch, "jest-cache")}`,
    `--config=${config}`,
  ]);

const domVitest = (environment: string, env?: Record<string, string>) =>
  domFacts(
    [
      join(domDir, "node_modules/vitest/vitest.mjs"),
      "run",
      "--reporter=json",
      `--environment=${environment}`,
    ],
    env,
  );

/** What the values and signals are with AsyncLocalStorage (Node's conditions). */
function valuesKept(facts: DomFacts): void {
  assert.equal(facts.afterAwait, "ada");
  assert.equal(facts.tasksOwn, 200);
  assert.equal(facts.tasksSetInCaller, false);
  assert.deepEqual(facts.isolated, ["set in isolated", "anonymous"]);
  assert.deepEqual(facts.group, ["a", "b", "c"]);
}

/** What they are with the synchronous carrier ("browser"): the root Context after every await. */
function valuesLost(facts: DomFacts): void {
  assert.equal(facts.afterAwait, "anonymous");
  assert.equal(facts.tasksOwn, 0);
  assert.equal(facts.tasksSetInCaller, true);
  assert.deepEqual(facts.isolated, ["anonymous", "anonymous"]);
  assert.deepEqual(facts.group, ["anonymous", "anonymous", "anonymous"]);
}

/**
 * The environment's own signals, whatever the carrier: accepted, and heeded
 * when aborted; `reads` is what the task they cancelled read after its await.
 */
function signalsHeeded(facts: DomFacts, reads: string): void {
  const { "what the cancelled task read after its await": read, ...outcomes } = facts.signals;
  for (const [name, outcome] of Object.entries(outcomes)) {
    const expected = name.includes("aborted") ? "rejected RangeError: stop" : "resolved done";
    assert.equal(outcome, expected, name);
  }
  assert.equal(Object.keys(outcomes).length, 12);
  assert.equal(read, reads);
  assert.deepEqual(facts.refused, [
    "TypeError: Expected `options.signal` to be an AbortSignal, got `5` (number)",
    "TypeError: Expected `options.signal` to be an AbortSignal, got `[object Object]` (object)",
    "TypeError: Expected `options.signal` to be an AbortSignal, got `[object EventTarget]` (object)",
    "TypeError: Expected `options.signal` to be an AbortSignal, got `[object Object]` (object)",
  ]);
}

describe("DOM environments, the package installed", () => {
  before(() => {
    domDir = domProject();
  });

  it('jest, testEnvironment "jsdom": the "browser" condition picks the synchronous carrier; after an await every value is the root Context\'s, with no error', async () => {
    const facts = await domJest("jest.config.mjs");
    valuesLost(facts);
    signalsHeeded(facts, "anonymous");
  });

  it('jest, jsdom with customExportConditions ["node", "node-addons"]: AsyncLocalStorage, 200 concurrent tasks read their own values', async () => {
    const facts = await domJest("jest.node-conditions.config.mjs");
    valuesKept(facts);
    signalsHeeded(facts, "bob");
  });

  it("jest, jsdom with moduleNameMapper for #carrier and #worker-threads: the same, other packages still resolved for the browser", async () => {
    const facts = await domJest("jest.mapper.config.mjs");
    valuesKept(facts);
    signalsHeeded(facts, "bob");
  });

  for (const environment of ["jsdom", "happy-dom"]) {
    it(`Vitest, environment ${environment}: Node loads the package, AsyncLocalStorage`, async () => {
      const facts = await domVitest(environment);
      valuesKept(facts);
      signalsHeeded(facts, "bob");
    });
  }

  it("Vitest, jsdom, server.deps.inline: Vite's pipeline resolves with Vitest's Node conditions, AsyncLocalStorage", async () => {
    const facts = await domVitest("jsdom", { INLINE: "1" });
    valuesKept(facts);
    signalsHeeded(facts, "bob");
  });

  it('Vitest, jsdom, inlined and resolve.conditions ["browser"]: the synchronous carrier', async () => {
    const facts = await domVitest("jsdom", { INLINE: "1", BROWSER_CONDITIONS: "1" });
    valuesLost(facts);
    signalsHeeded(facts, "anonymous");
  });
});
