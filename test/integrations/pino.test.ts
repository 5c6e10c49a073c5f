import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { contextMixin } from "contextvars/pino";
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
    assert.throws(() => contextMixin(null as never), TypeError);
    assert.throws(() => contextMixin({ user: "user" as never }), /Expected `fields\["user"\]`/);
    assert.equal(Object.keys(contextMixin({})()).length, 0);
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
