/**
 * The NestJS HTTP code of docs/integrations.md ("NestJS"), as written there:
 * fixtures/nest-microservices/http-app.ts holds its files in one, compiled
 * here with `tsc` (experimentalDecorators and emitDecoratorMetadata, as
 * `nest build` does) and run on `@nestjs/platform-express` and on
 * `@nestjs/platform-fastify`. 100 concurrent requests, each with its own
 * `x-request-id` and user, and 20 that fail: every response and every log
 * line carries its own request's id and user, the `@isolated` audit's set
 * stays in its call, and the exception filter answers with the failing
 * request's id. Run under tsx instead, which emits no decorator metadata,
 * the controller's service is injected as `undefined`, as the docs say.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const fixture = "test/integrations/fixtures/nest-microservices/http-app.ts";
const tsc = join(root, "node_modules/typescript/bin/tsc");

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { cwd: root, timeout: 30_000, env },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stdout}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

interface Line {
  level: string;
  scope?: string;
  message: string;
  requestId: string;
  user: string;
}
interface Response {
  n: number;
  status: number;
  body: Record<string, unknown>;
}

function parse(stdout: string): { lines: Line[]; responses: Response[] } {
  const parsed = stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Line | { responses: Response[] });
  const last = parsed.pop() as { responses: Response[] };
  return { lines: parsed as Line[], responses: last.responses };
}

describe("NestJS over Express and Fastify, the docs' code compiled with tsc", () => {
  let out: string;
  let compiled: string;
  before(async () => {
    out = await mkdtemp(join(tmpdir(), "nest-http-"));
    await run([
      tsc,
      fixture,
      "--ignoreConfig",
      "--rootDir",
      ".",
      "--outDir",
      out,
      "--experimentalDecorators",
      "--emitDecoratorMetadata",
      "--target",
      "ES2022",
      "--module",
      "ESNext",
      "--noCheck",
      "--noResolve",
    ]);
    compiled = await readFile(join(out, fixture.replace(/\.ts$/, ".js")), "utf8");
  });
  after(() => rm(out, { recursive: true, force: true }));

  for (const platform of ["express", "fastify"]) {
    it(`on ${platform}: each response and log line carries its own request's id and user`, async () => {
      const stdout = await run(
        [
          "--conditions=contextvars-source",
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          compiled,
        ],
        { ...process.env, PLATFORM: platform },
      );
      const { lines, responses } = parse(stdout);
      assert.equal(responses.length, 120);
      for (const { n, status, body } of responses) {
        if (n < 100) {
          assert.deepEqual(
            { status, body },
            {
              status: 200,
              body: {
                user: `user-${n}`,
                recent: `recent orders of user-${n} (req-${n})`,
                totals: `totals of user-${n}`,
                requestId: `req-${n}`,
              },
            },
          );
        } else {
          assert.deepEqual(
            { status, body },
            { status: 500, body: { status: 500, requestId: `req-${n}` } },
          );
        }
      }
      const inRequests = lines.filter((line) => line.requestId !== "-");
      assert.equal(inRequests.length, 220);
      for (const line of inRequests) {
        const n = line.requestId.slice("req-".length);
        if (line.scope === "AuditService") {
          assert.deepEqual(line, {
            level: "log",
            scope: "AuditService",
            message: `user-${n} read recent orders`,
            requestId: `req-${n}`,
            user: `audit(user-${n})`,
          });
        } else if (line.scope === "http") {
          assert.match(line.message, /^done in \d+ ms$/);
          assert.equal(line.user, `user-${n}`);
        } else {
          assert.deepEqual(line, {
            level: "error",
            scope: "errors",
            message: `Error: no orders for req-${n}`,
            requestId: `req-${n}`,
            user: `user-${n}`,
          });
        }
      }
      const scopes = new Set(inRequests.map((line) => line.scope));
      assert.deepEqual([...scopes].sort(), ["AuditService", "errors", "http"]);
      for (const line of lines.filter((line) => line.requestId === "-")) {
        assert.ok(
          !scopes.has(line.scope),
          `a request's line without its id: ${JSON.stringify(line)}`,
        );
      }
    });
  }

  it("run under tsx, which emits no decorator metadata, the service is injected as undefined", async () => {
    const tsconfig = join(root, "test/integrations/fixtures/nest-microservices/tsconfig.json");
    const stdout = await run(["--conditions=contextvars-source", "--import", "tsx", fixture], {
      ...process.env,
      PLATFORM: "express",
      TSX_TSCONFIG_PATH: tsconfig,
    });
    const { lines, responses } = parse(stdout);
    // Both of the task group's children call a method of the undefined service.
    for (const { n, status } of responses) assert.equal(status, 500, `request ${n}`);
    const failed = lines.filter((line) => line.message.includes("failed: 2 unhandled errors"));
    assert.equal(failed.length, 100);
  });
});
