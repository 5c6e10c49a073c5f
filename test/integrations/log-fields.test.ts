/**
 * The fields both `contextMixin` (pino) and `contextFormat` (winston) take,
 * one suite run over both loggers: which names reach a line, when the
 * fields object is read, and lines logged from many tasks at once.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar, createTask, gather } from "contextvars";
import { contextMixin, type LogFields } from "contextvars/pino";
import { type Entry, pinoToMemory, tenant, user, winstonToMemory } from "../helpers/logging.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

interface Sink {
  readonly name: string;
  /** A logger with `fields`: `log(message)` writes one line, `lines` holds them parsed. */
  make(fields: LogFields): { log(message: string): void; lines: Entry[] };
}

const sinks: readonly Sink[] = [
  {
    name: "pino contextMixin",
    make(fields) {
      const { logger, lines } = pinoToMemory({ mixin: contextMixin(fields) });
      return { log: (message) => logger.info(message), lines };
    },
  },
  {
    name: "winston contextFormat",
    make(fields) {
      const { logger, lines } = winstonToMemory(fields);
      return { log: (message) => logger.info(message), lines };
    },
  },
];

const value = new ContextVar<unknown>("value");

for (const sink of sinks) {
  describe(sink.name, () => {
    it("a field may have any name: not an identifier, empty, or a member of Object.prototype", () => {
      const names = ["a.b", "with space", 'say "hi"', "", "constructor", "toString", "__proto__"];
      const { log, lines } = sink.make(Object.fromEntries(names.map((name) => [name, value])));
      value.run("X", () => log("named"));
      value.run({ admin: true }, () => log("an object"));
      for (const name of names) {
        assert.ok(Object.hasOwn(lines[0] as Entry, name), name);
        assert.equal((lines[0] as Entry)[name], "X", name);
        assert.deepEqual((lines[1] as Entry)[name], { admin: true }, name);
      }
      // An object under __proto__ is that field's value, not the line's prototype.
      assert.ok(!("admin" in (lines[1] as Entry)));
    });

    it("reads the fields object once, when made: a getter runs once, later changes are not seen", () => {
      let gets = 0;
      const fields: Record<string, LogFields[string]> = {
        get user() {
          gets++;
          return user;
        },
      };
      const { log, lines } = sink.make(fields);
      fields.tenant = tenant;
      Object.defineProperty(fields, "user", { value: () => "replaced" });
      user.run("alice", () => {
        log("one");
        log("two");
      });
      assert.equal(gets, 1);
      assert.deepEqual(
        lines.map((l) => [l.user, l.tenant]),
        [
          ["alice", undefined],
          ["alice", undefined],
        ],
      );
    });

    it("a var reset to unset inside a task leaves its field out again", async () => {
      const { log, lines } = sink.make({ user });
      await createTask(async () => {
        const token = user.set("bob");
        log("set");
        await null;
        user.reset(token);
        log("reset");
      });
      assert.deepEqual(
        lines.map((l) => [l.message ?? l.msg, "user" in l]),
        [
          ["set", true],
          ["reset", false],
        ],
      );
    });

    itFromEveryState(
      "100 interleaved tasks: every line carries its own task's values",
      async () => {
        const { log, lines } = sink.make({ user, tenant, n: value });
        await gather(
          ...Array.from({ length: 100 }, (_, i) => async () => {
            value.set(i);
            user.set(`user-${i}`);
            log("start");
            await null;
            if (i % 2 === 0) tenant.set(`tenant-${i}`);
            await sleep(1); // equal delays: the timers fire together
            log("after timer");
            await gather(async () => {
              user.set(`sub-${i}`);
              log("in subtask");
            });
            log("after subtask");
          }),
        );
        assert.equal(lines.length, 400);
        for (const line of lines) {
          const i = line.n as number;
          const message = line.message ?? line.msg;
          assert.equal(line.user, message === "in subtask" ? `sub-${i}` : `user-${i}`);
          const tenanted = i % 2 === 0 && message !== "start";
          assert.equal(line.tenant, tenanted ? `tenant-${i}` : "public", `${message} of ${i}`);
        }
      },
    );
  });
}
