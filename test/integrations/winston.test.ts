import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, gather } from "contextvars";
import { requestId } from "contextvars/http";
import { contextFormat, contextMeta } from "contextvars/winston";
import winston from "winston";
import {
  assertEveryLineIsItsOwn,
  type Entry,
  type Line,
  logUnderLoad,
  tenant,
  user,
  winstonToMemory,
} from "../helpers/logging.ts";

// winston.Transport (winston-transport's TransportStream), typed for subclassing.
type TransportClass = new (options?: object) => Writable;
const Transport = (winston as unknown as { Transport: TransportClass }).Transport;

/** A transport slower than the logging: winston queues entries behind it. */
class SlowTransport extends Transport {
  readonly entries: Entry[] = [];
  /** What `user.get()` read inside `log()` itself, for each entry, in order. */
  readonly usersSeen: unknown[] = [];
  log(info: Entry, next: () => void): void {
    this.entries.push(info);
    this.usersSeen.push(user.get(undefined));
    setTimeout(next, 1);
  }
}

describe("contextFormat", () => {
  it("adds the vars of the current Context; an unset var is left out, a default shows", () => {
    const { logger, lines } = winstonToMemory({ requestId, user, tenant });
    logger.info("outside");
    user.run("alice", () => logger.warn("inside"));
    assert.deepEqual(lines, [
      { level: "info", message: "outside", tenant: "public" },
      { level: "warn", message: "inside", user: "alice", tenant: "public" },
    ]);
  });

  it("child loggers go through it; the log call's meta and defaultMeta win", () => {
    const { logger, lines } = winstonToMemory(
      { user, tenant },
      { defaultMeta: { service: "shop" } },
    );
    const child = logger.child({ module: "db" });
    user.run("bob", () => {
      child.info("child");
      logger.info("explicit", { user: "explicit" });
      tenant.run("acme", () => logger.info({ message: "object form" }));
    });
    assert.deepEqual(lines, [
      {
        level: "info",
        message: "child",
        service: "shop",
        module: "db",
        user: "bob",
        tenant: "public",
      },
      { level: "info", message: "explicit", service: "shop", user: "explicit", tenant: "public" },
      { level: "info", message: "object form", service: "shop", user: "bob", tenant: "acme" },
    ]);
  });

  it("takes functions read per entry; undefined or a throw leaves the field out", () => {
    let calls = 0;
    const { logger, lines } = winstonToMemory({
      count: () => ++calls,
      nothing: () => undefined,
      broken: () => {
        throw new Error("no");
      },
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

  it("keeps a field the entry already has, even one holding undefined", () => {
    // As an entry made with defaultMeta: contextMeta while user was unset, formatted in another Context.
    const entry = { level: "info", message: "m", user: undefined };
    const formatted = user.run("someone else", () => contextFormat({ user }).transform(entry, {}));
    assert.equal((formatted as Entry).user, undefined);
    assert.ok(Object.hasOwn(formatted as Entry, "user"));
  });

  it("an object logged again gets the values of the Context it is logged from again", () => {
    // logger.info(object) formats the caller's own object: what the format wrote into it last
    // time is not a field the entry already has.
    const { logger, lines } = winstonToMemory({ user, tenant });
    const started = { message: "started" };
    const pinned = { message: "pinned", user: "explicit" };
    for (const who of ["alice", "bob", undefined]) {
      const log = () => {
        logger.info(started);
        logger.log("info", pinned);
      };
      if (who === undefined) log();
      else user.run(who, () => tenant.run(`${who}-tenant`, log));
    }
    assert.deepEqual(
      lines.map((l) => [l.message, l.user, l.tenant]),
      [
        ["started", "alice", "alice-tenant"],
        ["pinned", "explicit", "alice-tenant"],
        ["started", "bob", "bob-tenant"],
        ["pinned", "explicit", "bob-tenant"],
        ["started", undefined, "public"],
        ["pinned", "explicit", "public"],
      ],
    );
    // A value the caller put in place of the format's between two calls is the caller's.
    (started as Entry).tenant = "mine";
    user.run("carol", () => logger.info(started));
    assert.deepEqual(lines.at(-1), {
      level: "info",
      message: "started",
      user: "carol",
      tenant: "mine",
    });
  });

  it("an object logged again from a Context that writes nothing into it, then given a value by the caller, keeps the caller's value", () => {
    const { logger, lines } = winstonToMemory({ user });
    const started = { message: "started" };
    user.run("alice", () => logger.info(started));
    logger.info(started); // no user here: the "alice" written before goes, and nothing is written
    (started as Entry).user = "alice"; // the caller's own now, though it equals what was written
    user.run("bob", () => logger.info(started));
    assert.deepEqual(
      lines.map((line) => line.user),
      ["alice", undefined, "alice"],
    );
  });

  it("the documented limit: a copy of an object logged before as an entry (a child logger's entry, meta) keeps what was written into it; a fresh object gets its own Context's values", () => {
    const { logger, lines } = winstonToMemory({ user });
    const child = logger.child({ part: "child" });
    const started = { message: "started" };
    user.run("alice", () => logger.info(started));
    user.run("bob", () => child.info(started));
    user.run("carol", () => logger.info("as meta", started));
    assert.deepEqual(
      lines.map((line) => line.user),
      ["alice", "alice", "alice"],
      "winston copies the object, fields written into it included (docs/observability.md)",
    );
    user.run("dave", () => logger.info(started));
    user.run("erin", () => child.info({ message: "started" }));
    user.run("frank", () => logger.info("as meta", { part: "meta" }));
    assert.deepEqual(
      lines.slice(3).map((line) => line.user),
      ["dave", "erin", "frank"],
    );
  });

  it("an object whose class has a getter of a field's name gets the field; logging it does not throw", () => {
    // logger.info(object) formats the object itself: assigning the field there would call
    // the class's getter-only accessor and throw, out of logger.info() or, for an entry a
    // slow transport left queued, out of the stream's drain, which ends the process.
    class Order {
      readonly message = "order";
      get user(): string {
        return "from the getter";
      }
    }
    const { logger, lines } = winstonToMemory({ user });
    const order = new Order();
    user.run("alice", () => logger.info(order));
    assert.deepEqual(lines, [{ level: "info", message: "order", user: "alice" }]);
    // Logged again from a Context without a user, the object is as it was: its getter shows.
    logger.info(order);
    assert.deepEqual(lines.at(-1), { level: "info", message: "order" });
    assert.equal(order.user, "from the getter");
  });

  it("the call's meta wins on either side of splat(); a timer or a profile takes the Context that ends it", () => {
    const { format } = winston;
    for (const order of ["splat first", "splat after"]) {
      const ours = contextFormat({ user });
      const { logger, lines } = winstonToMemory(
        {},
        {
          format: format.combine(
            ...(order === "splat first" ? [format.splat(), ours] : [ours, format.splat()]),
            format.errors(),
            format.json(),
          ),
        },
      );
      user.run("alice", () => {
        logger.info("hello %s", "bob", { user: "meta" });
        logger.info("hello %s", "bob");
        logger.error(new Error("boom"));
        const timer = logger.startTimer();
        logger.profile("profiled");
        user.run("carol", () => {
          timer.done({ message: "timed" });
          logger.profile("profiled");
        });
      });
      assert.deepEqual(
        lines.map((l) => [l.message, l.user]),
        [
          ["hello bob", "meta"],
          ["hello bob", "alice"],
          ["boom", "alice"],
          ["timed", "carol"],
          ["profiled", "carol"],
        ],
        order,
      );
    }
  });

  it("rejects fields that are neither ContextVars nor functions", () => {
    assert.throws(() => contextFormat(null as never), TypeError);
    assert.throws(() => contextFormat({ user: 42 as never }), /Expected `fields\["user"\]`/);
    assert.throws(() => contextMeta({ user: {} as never }), TypeError);
    for (const make of [contextFormat, contextMeta]) {
      assert.throws(
        () => make([user] as never),
        /keyed by field name \(`\{ user \}`\), not an array/,
      );
    }
  });

  it("500 concurrent requests: every line carries its own request's values", async () => {
    const { logger, lines } = winstonToMemory({ requestId, user, tenant });
    await logUnderLoad(
      {
        log: (message, n) => logger.info(message, { n }),
        child: (n) => {
          const child = logger.child({ component: `c${n}` });
          return { log: (message, k) => child.info(message, { n: k }) };
        },
      },
      500,
    );
    assertEveryLineIsItsOwn(
      lines.map((l) => ({ ...l, msg: l.message }) as unknown as Line),
      500,
    );
    assert.ok(lines.some((l) => l.component === "c7" && l.n === 7));
  });
});

describe("contextMeta", () => {
  it("reads the vars when the entry is made, so a slow transport cannot mix them up", async () => {
    const fields = { requestId, user };
    for (const withMeta of [true, false]) {
      const slow = new SlowTransport();
      const logger = winston.createLogger({
        ...(withMeta ? { defaultMeta: contextMeta(fields) } : {}),
        format: winston.format.combine(contextFormat(fields), winston.format.json()),
      });
      logger.add(slow as unknown as Parameters<typeof logger.add>[0]);
      const child = logger.child({ module: "child" });
      await gather(
        ...Array.from({ length: 200 }, (_, i) => async () => {
          user.set(`user-${i}`);
          for (let k = 0; k < 3; k++) {
            (k === 1 ? child : logger).info("step", { i });
            await null;
          }
        }),
      );
      for (let waited = 0; slow.entries.length < 600 && waited < 10_000; waited += 20)
        await sleep(20);
      assert.equal(slow.entries.length, 600);
      const wrong = slow.entries.filter((e) => e.user !== `user-${e.i}`).length;
      if (withMeta) assert.equal(wrong, 0, "contextMeta: every entry has its own user");
      // Documents why contextMeta exists: the format alone runs when winston catches up.
      else assert.ok(wrong > 0, "a format alone reads the Context of whoever drains the queue");
      // A transport that reads a var itself runs where the queue is drained,
      // with or without contextMeta: the entry's field is what to read there.
      const readWrong = slow.entries.filter((e, k) => slow.usersSeen[k] !== `user-${e.i}`).length;
      assert.ok(readWrong > 0, "a transport's own read sees whoever drains the queue");
      logger.close();
    }
  });

  it("with winston's File transport under load, every entry keeps its own values; a format alone does not", async () => {
    const dir = await mkdtemp(join(tmpdir(), "contextvars-winston-"));
    try {
      for (const withMeta of [true, false]) {
        const filename = join(dir, `${withMeta}.log`);
        const logger = winston.createLogger({
          ...(withMeta ? { defaultMeta: contextMeta({ user }) } : {}),
          format: winston.format.combine(contextFormat({ user }), winston.format.json()),
          transports: [new winston.transports.File({ filename })],
        });
        // 600 lines of 2 kB in one go: the file stream pushes back, and winston queues.
        const pad = "x".repeat(2000);
        await gather(
          ...Array.from({ length: 200 }, (_, i) => async () => {
            user.set(`user-${i}`);
            for (let k = 0; k < 3; k++) {
              logger.info("step", { i, pad });
              await null;
            }
          }),
        );
        const read = async () =>
          (await readFile(filename, "utf8").catch(() => ""))
            .split("\n")
            .filter((line) => line !== "");
        for (let waited = 0; (await read()).length < 600 && waited < 10_000; waited += 20) {
          await sleep(20);
        }
        const entries = (await read()).map((line) => JSON.parse(line) as Entry);
        logger.close();
        assert.equal(entries.length, 600);
        const wrong = entries.filter((e) => e.user !== `user-${e.i}`).length;
        if (withMeta) assert.equal(wrong, 0, "contextMeta: every entry has its own user");
        else assert.ok(wrong > 0, "a format alone reads the Context of whoever drains the queue");
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a field with no value still replaces the object's or the child's own: winston assigns defaultMeta over them", () => {
    const fields = { user };
    const { logger, lines } = winstonToMemory(fields, { defaultMeta: contextMeta(fields) });
    const child = logger.child({ user: "child" });
    const log = () => {
      logger.info({ message: "object", user: "explicit" });
      child.info("child");
      logger.info("meta", { user: "meta" });
    };
    log();
    user.run("alice", log);
    assert.deepEqual(
      lines.map((l) => [l.message, l.user]),
      [
        ["object", undefined],
        ["child", undefined],
        ["meta", "meta"],
        ["object", "alice"],
        ["child", "alice"],
        ["meta", "meta"],
      ],
    );
  });

  it("a field named level or message replaces winston's own in logger.info(message)", () => {
    const level = new ContextVar<string>("level");
    const message = new ContextVar<string>("message");
    const { logger, lines } = winstonToMemory({}, { defaultMeta: contextMeta({ level, message }) });
    level.run("from a var", () => message.run("from a var too", () => logger.info("m")));
    logger.info("unset");
    // Unset, they still replace winston's: the entry has no level or message left to show.
    assert.deepEqual(lines, [{ level: "from a var", message: "from a var too" }, {}]);
  });

  it("is a frozen object whose properties are read per access", () => {
    const meta = contextMeta({ user, tenant });
    assert.ok(Object.isFrozen(meta));
    assert.deepEqual({ ...meta }, { user: undefined, tenant: "public" });
    user.run("carol", () => assert.deepEqual({ ...meta }, { user: "carol", tenant: "public" }));
    assert.deepEqual(Object.keys(meta), ["user", "tenant"]);
    const unset = new ContextVar<string>("unset");
    assert.equal(contextMeta({ unset }).unset, undefined);
  });
});
