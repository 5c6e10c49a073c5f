/**
 * Malformed `x-request-id` headers, on every integration, sent from a raw
 * socket (as a client that validates nothing would): oversized, control
 * characters, non-ASCII bytes, JSON and log-forging text, duplicated,
 * empty, prototype keys. None throws into the request; a malformed id is
 * replaced by a fresh UUID, never passed through; and nothing of it reaches
 * a pino or winston log line (every line stays one parseable JSON object
 * whose `requestId` is the id the response echoed). Node's HTTP parser
 * refuses some bytes outright (400, before any integration runs): that is
 * allowed, as long as the handler never saw the request.
 *
 * The rule checked (src/integrations/request-id.ts, documented there and in
 * the contract): 1 to 200 characters of letters, digits and `_ - . : = + /`.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request as httpRequest } from "node:http";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { LookupError } from "contextvars";
import { contextPlugin } from "contextvars/fastify";
import { requestId, withContext } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import { contextFormat } from "contextvars/winston";
import fc from "fast-check";
import Fastify from "fastify";
import pino from "pino";
import winston from "winston";
import { frameworkNames, startApp } from "../helpers/apps.ts";
import { close, listen, sendRaw, UUID } from "../helpers/http.ts";

const WELL_FORMED = /^[\w.:=+/-]{1,200}$/;

/** The ids the handler read, in order. */
const handlerSaw: string[] = [];

/** Every raw log line, from both loggers, in order. */
const logText: string[] = [];
const pinoLogger = pino(
  { base: undefined, timestamp: false, mixin: contextMixin({ requestId }) },
  { write: (line: string) => logText.push(line) },
);
const winstonLogger = winston.createLogger({
  format: winston.format.combine(contextFormat({ requestId }), winston.format.json()),
  transports: [
    new winston.transports.Stream({
      stream: new Writable({
        write(chunk: Buffer, _encoding, done) {
          logText.push(chunk.toString("utf8"));
          done();
        },
      }),
    }),
  ],
});

/** A header value as bytes on the wire (latin1: one char, one byte). */
const cases: ReadonlyArray<readonly [string, string]> = [
  ["well-formed", "req-42"],
  ["well-formed, every allowed character", "a.b:c=d+e/f_G-9"],
  ["well-formed, 200 characters", "x".repeat(200)],
  ["201 characters", "x".repeat(201)],
  ["10,000 characters", "y".repeat(10_000)],
  ["empty", ""],
  ["spaces", "a b c"],
  ["a forged log line", 'a", "level": 60, "msg": "forged'],
  ["JSON", '{"requestId":"admin"}'],
  ["percent-encoded CRLF", "abc%0d%0aX-Admin:%20true"],
  ["latin1 bytes", "caf\xe9"],
  ["UTF-8 bytes of U+202E (right-to-left override)", "abc\xe2\x80\xaedef"],
  ["an escape sequence", "\x1b[31mred"],
  ["a NUL byte", "a\x00b"],
  ["a tab", "a\tb"],
  ["__proto__", "__proto__"],
  ["constructor", "constructor"],
];

async function expectSafe(
  base: string,
  label: string,
  lines: string[],
): Promise<string | undefined> {
  const before = logText.length;
  const reply = await sendRaw(base, ["GET /log HTTP/1.1", "Host: 127.0.0.1", ...lines]);
  await new Promise((resolve) => setImmediate(resolve)); // winston's stream writes on the next tick
  const logged = logText.slice(before);
  if (reply.status === 400 && logged.length === 0) return undefined; // refused by Node's parser
  assert.equal(reply.status, 200, `${label}: ${reply.body}`);
  const echoed = reply.headers["x-request-id"];
  assert.equal(typeof echoed, "string", `${label}: the id is echoed`);
  assert.equal(logged.length, 2, `${label}: one line per logger`);
  for (const text of logged) {
    assert.equal(text.trimEnd().includes("\n"), false, `${label}: one line`);
    const line = JSON.parse(text) as { requestId?: unknown };
    assert.equal(line.requestId, echoed, `${label}: the log line carries the echoed id`);
  }
  assert.equal(handlerSaw.at(-1), echoed, `${label}: the handler read the same id`);
  assert.equal(Object.hasOwn(Object.prototype, "admin"), false);
  return echoed as string;
}

describe("malformed x-request-id never throws, is replaced, and never reaches a log line", () => {
  for (const name of frameworkNames) {
    it(name, async () => {
      const app = await startApp(name, {
        handle() {
          pinoLogger.info("handled");
          winstonLogger.info("handled");
          handlerSaw.push(requestId.get());
          return { ok: true };
        },
      });
      try {
        for (const [label, value] of cases) {
          const echoed = await expectSafe(app.base, label, [`X-Request-Id: ${value}`]);
          if (echoed === undefined) continue;
          if (WELL_FORMED.test(value)) assert.equal(echoed, value, `${label}: passed through`);
          else {
            assert.match(echoed, UUID, `${label}: replaced`);
            if (value.length >= 3)
              assert.ok(!logText.some((text) => text.includes(value)), `${label}: not logged`);
          }
        }
        const twice = await expectSafe(app.base, "sent twice", [
          "X-Request-Id: a",
          "X-Request-Id: b",
        ]);
        assert.match(twice ?? "", UUID, "a duplicated header is malformed");

        // Any bytes but CR and LF (which end the header line itself).
        const byte = fc.integer({ min: 0, max: 255 }).filter((b) => b !== 10 && b !== 13);
        await fc.assert(
          fc.asyncProperty(fc.array(byte, { maxLength: 260 }), async (bytes) => {
            const value = String.fromCharCode(...bytes);
            const echoed = await expectSafe(app.base, JSON.stringify(value), [
              `X-Request-Id: ${value}`,
            ]);
            if (echoed === undefined) return;
            const received = value.replace(/^[ \t]+|[ \t]+$/g, ""); // Node drops the header's outer whitespace
            if (WELL_FORMED.test(received)) assert.equal(echoed, received);
            else assert.match(echoed, UUID);
          }),
          { numRuns: 60 },
        );
      } finally {
        await app.close();
      }
    });
  }
});

describe("requestId read outside a request", () => {
  it("says the integration sets it and must come first, not to set it or give it a default", () => {
    const error = (() => {
      try {
        requestId.get();
      } catch (caught) {
        return caught;
      }
    })();
    assert.ok(error instanceof LookupError);
    assert.equal(error.code, "ERR_CONTEXTVAR_UNSET");
    assert.match(error.message, /^ContextVar\("requestId"\) has no value in the current Context; /);
    assert.match(error.message, /mount the integration first/);
    assert.doesNotMatch(error.message, /set it first|give the var a default/);
  });

  it("an upgrade listener of a server whose request listener alone is wrapped is told of withUpgradeContext", async () => {
    const messages: string[] = [];
    const server = createServer(withContext((_req, res) => res.end()));
    server.on("upgrade", (_req, socket) => {
      try {
        requestId.get();
      } catch (error) {
        messages.push((error as Error).message);
      }
      socket.destroy();
    });
    try {
      const url = new URL(await listen(server));
      const upgrade = httpRequest({
        host: url.hostname,
        port: url.port,
        headers: { connection: "Upgrade", upgrade: "websocket" },
      });
      const ended = once(upgrade, "error").catch(() => {});
      upgrade.end();
      await ended;
    } finally {
      await close(server);
    }
    assert.equal(messages.length, 1);
    assert.match(messages[0] as string, /set by the integration \(.*withUpgradeContext.*\)/);
  });

  it("a Fastify hook registered before contextPlugin gets that message", async () => {
    const app = Fastify();
    app.addHook("onRequest", async () => {
      requestId.get();
    });
    await app.register(contextPlugin);
    app.get("/", async () => ({ id: requestId.get() }));
    try {
      const reply = await app.inject("/");
      assert.equal(reply.statusCode, 500);
      const body = reply.json() as { code: string; message: string };
      assert.equal(body.code, "ERR_CONTEXTVAR_UNSET");
      assert.match(
        body.message,
        /set by the integration .*contextPlugin.*mount the integration first/,
      );
    } finally {
      await app.close();
    }
  });
});
