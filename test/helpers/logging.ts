/**
 * Loggers writing to memory, a real server whose handler logs through a
 * given logger, and a driver that sends it many concurrent requests: for
 * the pino and winston tests, which then check that every line carries its
 * own request's values.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, createTask, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { contextFormat, type LogFields } from "contextvars/winston";
import pino from "pino";
import winston from "winston";
import { close, keepAliveAgent, listen, randomDelay, send } from "./http.ts";

export const user = new ContextVar<string>("user");
export const tenant = new ContextVar<string>("tenant", { default: "public" });

/** One log line or entry, parsed from its JSON. */
export type Entry = Record<string, unknown>;

/** A pino logger writing to memory (pino writes synchronously to a `{ write }` destination). */
export function pinoToMemory(options: pino.LoggerOptions = {}) {
  const lines: Entry[] = [];
  const logger = pino(
    { base: undefined, timestamp: false, ...options },
    { write: (line: string) => lines.push(JSON.parse(line) as Entry) },
  );
  return { logger, lines };
}

/** A winston logger with `contextFormat(fields)` then `json()`, writing to an in-memory stream. */
export function winstonToMemory(fields: LogFields, options: winston.LoggerOptions = {}) {
  const lines: Entry[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Entry);
      done();
    },
  });
  const logger = winston.createLogger({
    format: winston.format.combine(contextFormat(fields), winston.format.json()),
    transports: [new winston.transports.Stream({ stream })],
    ...options,
  });
  return { logger, lines };
}

/** How the handler logs: `log(message, n)` on the logger, or on a child logger. */
export interface RequestLogger {
  log(message: string, n: number): void;
  child(n: number): { log(message: string, n: number): void };
}

/** One parsed line: the fields the tests look at. */
export interface Line {
  msg: string;
  n: number;
  requestId?: string;
  user?: string;
  tenant?: string;
}

/**
 * Starts a server, sends `count` concurrent requests (request `n` has id
 * `req-n` and user `user-n`), and returns once all have answered. Each
 * request logs five lines: at the start, after an await, from a timer,
 * from a gathered task and from a child logger.
 */
export async function logUnderLoad(logger: RequestLogger, count: number): Promise<void> {
  const server = createServer(
    withContext(
      async (req, res) => {
        const n = Number(new URL(req.url ?? "/", "http://x").searchParams.get("n"));
        try {
          logger.log("start", n);
          await randomDelay();
          logger.log("after await", n);
          await new Promise<void>((resolve, reject) =>
            setTimeout(() => {
              try {
                logger.log("in timer", n);
                resolve();
              } catch (error) {
                reject(error);
              }
            }, Math.random() * 3),
          );
          await gather(async () => {
            await sleep(1);
            logger.log("in task", n);
          });
          await createTask(async () => {
            await randomDelay();
            logger.child(n).log("in child", n);
          });
          res.end(requestId.get());
        } catch (error) {
          // A logger that throws fails the request, and with it the test, rather than leaving it open.
          res.statusCode = 500;
          res.end(String(error));
        }
      },
      {
        seed: (req) => {
          user.set(String(req.headers["x-user"]));
          if (req.headers["x-tenant"] !== undefined) tenant.set(String(req.headers["x-tenant"]));
        },
      },
    ),
  );
  const base = await listen(server);
  const agent = keepAliveAgent(100);
  try {
    await Promise.all(
      Array.from({ length: count }, async (_, n) => {
        const headers: Record<string, string> = {
          "x-request-id": `req-${n}`,
          "x-user": `user-${n}`,
        };
        if (n % 2 === 0) headers["x-tenant"] = `tenant-${n}`;
        const reply = await send(base, `/?n=${n}`, { headers, agent });
        assert.equal(reply.body, `req-${n}`);
      }),
    );
  } finally {
    agent.destroy();
    await close(server);
  }
}

/** Every request logged its five lines, each with that request's values and nothing else's. */
export function assertEveryLineIsItsOwn(lines: readonly Line[], count: number): void {
  assert.equal(lines.length, count * 5);
  const perRequest = new Map<number, string[]>();
  for (const line of lines) {
    const { n } = line;
    assert.equal(line.requestId, `req-${n}`, `${line.msg} of request ${n}`);
    assert.equal(line.user, `user-${n}`, `${line.msg} of request ${n}`);
    assert.equal(line.tenant, n % 2 === 0 ? `tenant-${n}` : "public", `tenant of ${n}`);
    perRequest.set(n, [...(perRequest.get(n) ?? []), line.msg]);
  }
  assert.equal(perRequest.size, count);
  for (const msgs of perRequest.values()) {
    assert.deepEqual(msgs.sort(), ["after await", "in child", "in task", "in timer", "start"]);
  }
}
