/**
 * Faults at every stage of a framework's request pipeline. Each framework's
 * test mounts a check at each stage (its seed, middleware, hooks, body
 * parser, handler, error handler) that fails the request when the path is
 * `/<stage>/sync` (a throw) or `/<stage>/async` (a rejection after an
 * await), after setting `leak`. The framework's error handler answers 500
 * with `errorReport()`: the values it sees. `expectStageFaults` then checks,
 * for every stage and both modes:
 *
 *   - the response is the framework's error response, echoing the id;
 *   - the error handler saw the failing request's own id and user, and the
 *     value the failing stage set (it runs in the request's Context);
 *   - the next request on the same keep-alive socket sees none of it;
 *   - the test's own Context is exactly what it was.
 */
import assert from "node:assert/strict";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { keepAliveAgent, randomDelay, send } from "./http.ts";
import { pinContext } from "./pin-context.ts";

export const user = new ContextVar<string>("fault.user");
export const leak = new ContextVar<string>("fault.leak");

export type Mode = "sync" | "async";

export class StageError extends Error {
  constructor(readonly stage: string) {
    super(`failed at ${stage}`);
  }
}

/** The seed every app passes: the user comes from the x-user header. */
export function seedUser(header: string | string[] | undefined | null): void {
  user.set(typeof header === "string" ? header : "anonymous");
}

/** The mode `path` asks `stage` to fail in, if it does. */
export function failureAt(path: string, stage: string): Mode | undefined {
  const [, at, mode] = path.split("?")[0]?.split("/") ?? [];
  return at === stage && (mode === "sync" || mode === "async") ? mode : undefined;
}

/**
 * At `stage`: throws (sync) or rejects after an await (async) when the path
 * asks for it, else returns undefined (or a resolved promise, for async).
 */
export function maybeFail(path: string, stage: string): void | Promise<void> {
  const mode = failureAt(path, stage);
  if (mode === undefined) return;
  leak.set(`set at ${stage}`);
  if (mode === "sync") throw new StageError(stage);
  return randomDelay(2).then(() => {
    throw new StageError(stage);
  });
}

/** What an error handler answers: the values it sees. */
export function errorReport(error: unknown): Record<string, string> {
  return {
    id: requestId.get("<no request>"),
    user: user.get("<no user>"),
    leak: leak.get("unset"),
    error: error instanceof Error ? error.message : String(error),
  };
}

/** What GET /peek answers. */
export function peek(): Record<string, string> {
  return {
    id: requestId.get("<no request>"),
    user: user.get("<no user>"),
    leak: leak.get("unset"),
  };
}

export interface StageCase {
  stage: string;
  modes?: readonly Mode[];
  /** The response status; default 500. */
  status?: number;
  /** Whether the framework's error handler answers (else the framework's own error page). */
  reported?: boolean;
  /** Whether the error handler sees the failing stage's own sets (false: a fresh copy or before it). */
  seesLeak?: boolean;
}

export async function expectStageFaults(base: string, cases: readonly StageCase[]): Promise<void> {
  const pin = pinContext();
  const agent = keepAliveAgent(1); // one socket: the next request reuses the failed one's
  try {
    for (const {
      stage,
      modes = ["sync", "async"],
      status = 500,
      reported = true,
      seesLeak = true,
    } of cases) {
      for (const mode of modes) {
        const id = `${stage}-${mode}`;
        const headers = { "x-request-id": id, "x-user": `user-${id}` };
        const reply = await send(base, `/${stage}/${mode}`, { agent, headers });
        const where = `${stage} (${mode})`;
        assert.equal(reply.status, status, `${where}: ${reply.body}`);
        if (reported) {
          assert.deepEqual(
            JSON.parse(reply.body),
            {
              id,
              user: `user-${id}`,
              leak: seesLeak ? `set at ${stage}` : "unset",
              error: `failed at ${stage}`,
            },
            `${where}: what the error handler saw`,
          );
        }
        const next = await send(base, "/peek", {
          agent,
          headers: { "x-request-id": `after-${id}` },
        });
        assert.equal(next.status, 200, `${where}, next request: ${next.body}`);
        assert.deepEqual(
          JSON.parse(next.body),
          { id: `after-${id}`, user: "anonymous", leak: "unset" },
          `${where}: the next request on the same socket`,
        );
      }
    }
  } finally {
    agent.destroy();
  }
  pin.check();
}
