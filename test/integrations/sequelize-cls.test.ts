/**
 * Sequelize 6's `Sequelize.useCLS(namespace)` on this package instead of
 * cls-hooked (docs/recipes.md, "With Drizzle, Kysely, TypeORM and Sequelize").
 * Sequelize checks that the namespace has `run` and `bind`, and calls only:
 *
 *   - `run(fn)`, in `sequelize.transaction(cb)`: runs `fn` at once, in a
 *     Context of its own (a copy of the caller's);
 *   - `set("transaction", t)` once BEGIN is done, inside that run, and
 *     `set("transaction", null)` at commit or rollback;
 *   - `get("transaction")` in every query and model method that was given
 *     no `transaction` option.
 *
 * So a var per key and `copyContext().run` are the whole adapter. Over
 * HTTP, with requests at once on a SQLite file: every query a request's
 * callback makes, through awaits, timers, `Promise.all`, `gather` tasks and
 * model hooks, runs in its own transaction; `afterCommit` callbacks see the
 * request and no transaction; the caller never sees one; a throw rolls back.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bind, ContextVar, copyContext, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { DataTypes, type Model, type ModelStatic, Sequelize, Transaction } from "sequelize";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

/** The part of a cls-hooked namespace that Sequelize 6 uses, on ContextVars. */
function clsNamespace(name: string) {
  const vars = new Map<string, ContextVar<unknown>>();
  const slot = (key: string): ContextVar<unknown> => {
    let found = vars.get(key);
    if (found === undefined) {
      found = new ContextVar<unknown>(`${name}.${key}`, { default: undefined });
      vars.set(key, found);
    }
    return found;
  };
  return {
    run<T>(fn: (context: unknown) => T): unknown {
      const context = copyContext();
      context.run(fn, context);
      return context;
    },
    get: (key: string): unknown => slot(key).get(),
    set<T>(key: string, value: T): T {
      slot(key).set(value);
      return value;
    },
    bind: <F extends (...args: never[]) => unknown>(fn: F): F => bind(fn),
  };
}

const namespace = clsNamespace("sequelize");
Sequelize.useCLS(namespace);

const currentTransaction = () => namespace.get("transaction") as Transaction | null | undefined;
/** Sequelize gives each transaction an id (a savepoint its parent's); its types leave it out. */
const idOf = (transaction: Transaction | null | undefined): string | undefined =>
  (transaction as { id?: string } | null | undefined)?.id;

describe("Sequelize.useCLS with a contextvars namespace, on SQLite", () => {
  let directory: string;
  let sequelize: Sequelize;
  let Account: ModelStatic<Model<{ name: string; balance: number }>>;
  let base: string;
  const hookSaw: { requestId: string; transaction: string | undefined }[] = [];
  const afterCommitSaw: { requestId: string; transaction: unknown }[] = [];

  const server = createServer(
    withContext(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const from = url.searchParams.get("from") ?? "";
      const to = url.searchParams.get("to") ?? "";
      const amount = Number(url.searchParams.get("amount"));
      const seen: (string | undefined)[] = [];
      const note = () => seen.push(idOf(currentTransaction()));
      try {
        const id = await sequelize.transaction(async (t) => {
          note();
          // No { transaction } option anywhere below: Sequelize reads the namespace.
          await Account.increment({ balance: -amount }, { where: { name: from } });
          await randomDelay();
          note();
          await Promise.all([Account.findByPk(to), Account.count()]);
          await gather(
            async () => {
              note();
              await Account.findByPk(from);
            },
            async () => {
              await new Promise((resolve) => setTimeout(resolve, 1));
              note();
            },
          );
          const target = await Account.findByPk(to);
          assert.ok(target);
          await target.update({ balance: Number(target.get("balance")) + amount }); // runs the beforeUpdate hook
          t.afterCommit(() => {
            afterCommitSaw.push({ requestId: requestId.get(), transaction: currentTransaction() });
          });
          if (url.searchParams.has("fail")) throw new Error("payment provider down");
          return idOf(t);
        });
        res.end(JSON.stringify({ id, seen, after: currentTransaction() ?? null }));
      } catch (error) {
        res.statusCode = 500;
        res.end(
          JSON.stringify({ error: (error as Error).message, after: currentTransaction() ?? null }),
        );
      }
    }),
  );

  const balances = async () =>
    (await Account.findAll({ order: [["name", "ASC"]] })).map((account) =>
      Number(account.get("balance")),
    );

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), "sequelize-cls-"));
    sequelize = new Sequelize({
      dialect: "sqlite",
      storage: join(directory, "db.sqlite"),
      logging: false,
      transactionType: Transaction.TYPES.IMMEDIATE,
      retry: { max: 0 },
    });
    // One connection per transaction: concurrent writers wait for SQLite's lock.
    sequelize.addHook("afterConnect", (connection) => {
      (connection as { configure(option: "busyTimeout", ms: number): void }).configure(
        "busyTimeout",
        10_000,
      );
    });
    Account = sequelize.define(
      "Account",
      { name: { type: DataTypes.STRING, primaryKey: true }, balance: DataTypes.INTEGER },
      { timestamps: false },
    );
    Account.addHook("beforeUpdate", (_account, options) => {
      hookSaw.push({
        requestId: requestId.get(),
        transaction: idOf((options as { transaction?: Transaction }).transaction),
      });
    });
    await Account.sync();
    await Account.bulkCreate(["a0", "a1", "a2", "a3"].map((name) => ({ name, balance: 100 })));
    base = await listen(server);
  });

  after(async () => {
    await close(server);
    await sequelize.close();
    await rm(directory, { recursive: true, force: true });
  });

  it("runs each request's queries in its own transaction", async () => {
    const agent = keepAliveAgent(4);
    const count = 12;
    const replies = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        send(base, `/transfer?from=a${i % 4}&to=a${(i + 1) % 4}&amount=${i + 1}`, {
          agent,
          headers: { "x-request-id": `req-${i}` },
        }),
      ),
    );
    agent.destroy();
    const ids = new Set<string>();
    for (const reply of replies) {
      assert.equal(reply.status, 200, reply.body);
      const body = JSON.parse(reply.body) as { id: string; seen: string[]; after: unknown };
      assert.deepEqual(body.seen, [body.id, body.id, body.id, body.id]);
      assert.equal(body.after, null);
      ids.add(body.id);
    }
    assert.equal(ids.size, count);
    // Model hooks run in the request, with the namespace's transaction as options.transaction.
    assert.equal(hookSaw.length, count);
    for (const saw of hookSaw) assert.ok(ids.has(saw.transaction ?? ""), JSON.stringify(saw));
    assert.deepEqual(
      new Set(hookSaw.map((saw) => saw.requestId)),
      new Set(replies.map((_, i) => `req-${i}`)),
    );
    // afterCommit runs in the request, after the transaction was cleared from the namespace.
    assert.equal(afterCommitSaw.length, count);
    for (const saw of afterCommitSaw) assert.equal(saw.transaction, null);
    assert.deepEqual(
      new Set(afterCommitSaw.map((saw) => saw.requestId)),
      new Set(replies.map((_, i) => `req-${i}`)),
    );
    const expected = [100, 100, 100, 100];
    for (let i = 0; i < count; i++) {
      expected[i % 4] = (expected[i % 4] ?? 0) - (i + 1);
      expected[(i + 1) % 4] = (expected[(i + 1) % 4] ?? 0) + (i + 1);
    }
    assert.deepEqual(await balances(), expected);
    assert.equal(currentTransaction(), undefined);
  });

  it("rolls a throwing callback back; the caller sees no transaction", async () => {
    const before = await balances();
    const replies = await Promise.all(
      [0, 1].map((i) => send(base, `/transfer?from=a${i}&to=a${i + 2}&amount=7&fail=1`)),
    );
    for (const reply of replies) {
      assert.equal(reply.status, 500);
      assert.deepEqual(JSON.parse(reply.body), { error: "payment provider down", after: null });
    }
    assert.deepEqual(await balances(), before);
  });

  it("keeps two transactions started at once in one Context apart", async () => {
    // DEFERRED and read-only: both hold SQLite's shared lock, so their awaits interleave.
    const reader = () =>
      sequelize.transaction({ type: Transaction.TYPES.DEFERRED }, async (t) => {
        const seen: (string | undefined)[] = [];
        for (let i = 0; i < 3; i++) {
          await Account.findByPk("a1");
          await new Promise((resolve) => setImmediate(resolve));
          seen.push(idOf(currentTransaction()));
        }
        return { id: idOf(t), seen };
      });
    const results = await Promise.all([reader(), reader(), reader()]);
    for (const { id, seen } of results) assert.deepEqual(seen, [id, id, id]);
    // Each ran in a copy: the caller's Context never held any of them, not even a null.
    assert.equal(currentTransaction(), undefined);
  });

  it("a savepoint, given { transaction }, is current in its callback and leaves the outer current after", async () => {
    const [a0Before] = await balances();
    await sequelize.transaction(async (outer) => {
      await Account.increment({ balance: 1 }, { where: { name: "a0" } });
      // A savepoint of the namespace's transaction, passed explicitly.
      await sequelize
        .transaction({ transaction: outer }, async (savepoint) => {
          assert.equal(currentTransaction(), savepoint);
          await Account.increment({ balance: 1_000 }, { where: { name: "a0" } });
          throw new Error("savepoint fails");
        })
        .catch(() => {});
      assert.equal(
        currentTransaction(),
        outer,
        "the savepoint's run did not touch the outer Context",
      );
    });
    const [a0After] = await balances();
    assert.equal(a0After, (a0Before ?? 0) + 1);
  });
});
