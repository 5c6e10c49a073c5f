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
 * other files set (Vitest's `isolate: false`).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

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
  run(vitestDir, [vitestBin, "run", "--reporter=json", ...args], env);

const jestDir = join(fixtures, "jest");
const jest = (args: string[]) =>
  run(jestDir, ["--experimental-vm-modules", "--no-warnings", jestBin, "--json", ...args]);

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

describe("node:test", () => {
  it("before, beforeEach and t.beforeEach: a body reads its hook's set, and so does every test after it", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--conditions=contextvars-source",
        "--import",
        "tsx",
        "--test",
        "--test-reporter=tap",
        join(fixtures, "node-test/hooks.ts"),
      ],
      { cwd: root, timeout: 30_000, env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
    );
    assert.match(stdout, /^# pass 5$/m, stdout);
    assert.match(stdout, /^# fail 0$/m, stdout);
  });
});
