import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, gather } from "contextvars";
import { requestId } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
import pino from "pino";
import {
  assertEveryLineIsItsOwn,
  type Line,
  logUnderLoad,
  pinoToMemory,
  tenant,
  user,
} from "../helpers/logging.ts";

describe("contextMixin", () => {
  it("adds the vars of the current Context; an unset var is left out, a default shows", () => {
    const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user, tenant }) });
    logger.info("outside");
    user.run("alice", () => logger.info("inside"));
    assert.deepEqual(lines, [
      { level: 30, tenant: "public", msg: "outside" },
      { level: 30, user: "alice", tenant: "public", msg: "inside" },
    ]);
  });

  it("child loggers keep the mixin beside their bindings", () => {
    const { logger, lines } = pinoToMemory({ mixin: contextMixin({ user }) });
    const child = logger.child({ module: "db" });
    const grandchild = child.child({ table: "orders" });
    user.run("bob", () => {
      child.info("child");
      grandchild.warn("grandchild");
    });
    assert.deepEqual(lines, [
      { level: 30, module: "db", user: "bob", msg: "child" },
      { level: 40, module: "db", table: "orders", user: "bob", msg: "grandchild" },
    ]);
  });

  it("a child's binding of a field's name is not replaced: both keys are written, the mixin's last", () => {
    const raw: string[] = [];
    const logger = pino(
      { mixin: contextMixin({ user }), base: undefined, timestamp: false },
      { write: (line: string) => raw.push(line) },
    );
    user.run("from the Context", () => logger.child({ user: "bound" }).info("x"));
    assert.equal(raw[0], '{"level":30,"user":"bound","user":"from the Context","msg":"x"}\n');
    assert.equal((JSON.parse(raw[0] as string) as Line).user, "from the Context");
  });

  it("the log call's own fields win; every line gets a fresh object", () => {
    const mixin = contextMixin({ user });
    const { logger, lines } = pinoToMemory({ mixin });
    user.run("carol", () => {
      logger.info({ user: "explicit" }, "one");
      logger.info("two");
      assert.notEqual(mixin(), mixin());
    });
    assert.deepEqual(
      lines.map((l) => l.user),
      ["explicit", "carol"],
    );
  });

  it("takes functions read per line; undefined or a throw leaves the field out", () => {
    let calls = 0;
    const { logger, lines } = pinoToMemory({
      mixin: contextMixin({
        count: () => ++calls,
        nothing: () => undefined,
        broken: () => {
          throw new Error("no");
        },
      }),
    });
    logger.info("a");
    logger.info("b");
    assert.deepEqual(
      lines.map((l) => [l.count, "nothing" in l, "broken" in l]),
      [
        [1, false, false],
        [2, false, false],
      ],
    );
  });

  it("rejects fields that are neither ContextVars nor functions", () => {
    assert.throws(
      () => contextMixin(null as never),
      new TypeError("Expected `fields` to be an object of ContextVars, got `null` (null)"),
    );
    // A string is no object of fields, not fields "0", "1", … holding its characters.
    assert.throws(
      () => contextMixin("user" as never),
      new TypeError('Expected `fields` to be an object of ContextVars, got `"user"` (string)'),
    );
    // An array would pass as an object, and log its vars as fields "0", "1".
    assert.throws(
      () => contextMixin([user] as never),
      new TypeError(
        "Expected `fields` to be an object of ContextVars keyed by field name (`{ user }`), not an array, got `[object Array]` (object)",
      ),
    );
    assert.throws(() => contextMixin({ user: "user" as never }), /Expected `fields\["user"\]`/);
    assert.equal(Object.keys(contextMixin({})()).length, 0);
  });

  it("given to pino uncalled (mixin: contextMixin), each log call says to call it with the fields", () => {
    const { logger, lines } = pinoToMemory({ mixin: contextMixin as never });
    const uncalled = {
      name: "TypeError",
      message:
        /^contextMixin was called as pino's mixin, with \(mergeObject, level, logger\): it makes the mixin, so pass mixin: contextMixin\(fields\), not contextMixin itself$/,
    };
    // Not a line without the fields, nor the log call's own object taken for the fields.
    assert.throws(() => user.run("alice", () => logger.info("hello")), uncalled);
    assert.throws(() => logger.info({ attempt: 1 }, "hello"), uncalled);
    assert.deepEqual(lines, []);
  });

  it("falsy values are kept: only unset is left out", () => {
    const count = new ContextVar<number>("count");
    const flag = new ContextVar<boolean | null>("flag");
    const mixin = contextMixin({ count, flag });
    count.run(0, () => flag.run(null, () => assert.deepEqual(mixin(), { count: 0, flag: null })));
  });

  it("an unset var is no key at all, not a key holding undefined", () => {
    assert.deepEqual(Object.keys(contextMixin({ user })()), []);
  });

  it("a field named like one of pino's own keys comes after it: a JSON parser reads the field's", () => {
    const raw: string[] = [];
    const field = new ContextVar<string>("field");
    const own = { level: field, time: field, pid: field, hostname: field, msg: field };
    const logger = pino({ mixin: contextMixin(own) }, { write: (line: string) => raw.push(line) });
    field.run("field", () => {
      logger.info("message");
      logger.info({ a: 1 });
    });
    assert.match(
      raw[0] as string,
      /^\{"level":30,"time":\d+,"pid":\d+,"hostname":"[^"]*","level":"field"/,
    );
    const [withMessage, without] = raw.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(withMessage, {
      level: "field",
      time: "field",
      pid: "field",
      hostname: "field",
      msg: "message",
    });
    assert.equal(without?.msg, "field");
  });

  it("pino's own options treat the fields as the call's: redact, nestedKey, formatters.log", () => {
    const mixin = contextMixin({ user, tenant });
    const { logger, lines } = pinoToMemory({
      mixin,
      redact: ["user"],
      nestedKey: "payload",
      formatters: { log: (object) => ({ ...object, seen: Object.keys(object) }) },
    });
    user.run("alice", () => logger.info({ n: 1 }, "options"));
    assert.deepEqual(lines, [
      {
        level: 30,
        payload: { user: "[Redacted]", tenant: "public", n: 1, seen: ["user", "tenant", "n"] },
        msg: "options",
      },
    ]);
  });

  it("a transport on a worker thread, an asynchronous destination and a multistream get the caller's values", async () => {
    const dir = await mkdtemp(join(tmpdir(), "contextvars-pino-"));
    const file = (name: string) => join(dir, `${name}.log`);
    try {
      const all = pino.destination({ dest: file("all"), sync: false });
      const warn = pino.destination({ dest: file("warn"), sync: false });
      const transport = pino.transport({
        target: "pino/file",
        options: { destination: file("transport") },
      });
      const asynchronous = pino.destination({ dest: file("async"), sync: false });
      const streams = [
        transport,
        asynchronous,
        pino.multistream([{ stream: all }, { level: "warn", stream: warn }]),
      ];
      // An error from a stream fails the test here with its message, rather than crashing later.
      const errors: unknown[] = [];
      for (const stream of [transport, asynchronous, all, warn]) {
        stream.on("error", (error: unknown) => errors.push(error));
      }
      const loggers = streams.map((stream) =>
        pino({ base: undefined, mixin: contextMixin({ user, tenant }) }, stream),
      );
      await gather(
        ...Array.from({ length: 50 }, (_, i) => async () => {
          user.set(`user-${i}`);
          for (const logger of loggers) logger.info({ i }, "start");
          await sleep(1); // equal delays: the tasks' timers fire together
          if (i % 2 === 0) tenant.set(`tenant-${i}`);
          const child = loggers.map((l) => l.child({ module: "db" }, { msgPrefix: "[db] " }));
          for (const logger of child) logger.child({ table: "t" }).warn({ i }, "after timer");
        }),
      );
      const read = async (name: string) =>
        (await readFile(file(name), "utf8"))
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      // The files close once all they hold is written.
      await Promise.all(
        [asynchronous, all, warn].map((stream) => {
          const closed = once(stream, "close");
          stream.end();
          return closed;
        }),
      );
      // The transport's thread writes its file by itself; its 'close' does not always come
      // (pino unrefs the thread), so the test waits for the lines, up to 10 s.
      transport.end();
      for (let waited = 0; waited < 10_000; waited += 20) {
        if ((await read("transport").catch(() => [])).length >= 100) break;
        await sleep(20);
      }
      assert.deepEqual(errors, []);
      for (const [name, count] of [
        ["transport", 100],
        ["async", 100],
        ["all", 100],
        ["warn", 50],
      ] as const) {
        const lines = await read(name);
        assert.equal(lines.length, count, name);
        for (const line of lines) {
          const i = line.i as number;
          const later = line.msg === "[db] after timer";
          assert.equal(line.user, `user-${i}`, `${name}: ${line.msg} of ${i}`);
          assert.equal(line.tenant, later && i % 2 === 0 ? `tenant-${i}` : "public", name);
          if (later) assert.deepEqual([line.module, line.table], ["db", "t"]);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("500 concurrent requests: every line carries its own request's values", async () => {
    const { logger, lines } = pinoToMemory({ mixin: contextMixin({ requestId, user, tenant }) });
    await logUnderLoad(
      {
        log: (msg, n) => logger.info({ n }, msg),
        child: (n) => {
          const child = logger.child({ component: `c${n}` });
          return { log: (msg, k) => child.info({ n: k }, msg) };
        },
      },
      500,
    );
    assertEveryLineIsItsOwn(lines as unknown as Line[], 500);
    assert.ok(lines.some((l) => l.component === "c7" && l.n === 7));
  });
});
