/**
 * Sequelize 6's CLS transactions (docs/recipes.md, "With Drizzle, Kysely,
 * TypeORM and Sequelize") with the recipe's namespace as the docs give it,
 * `Sequelize.useCLS(clsNamespace("sequelize"))`, over Sequelize's postgres
 * dialect and `pg`.
 *
 * The database is PGlite behind pglite-socket, a clone per pooled
 * connection (test/helpers/pglite-clones.ts): a pool of two, two
 * transactions at once. Rows are read back from each PGlite directly, and
 * `whoami()` names the database and transaction a query ran in. Under
 * `contextvars/http`, with requests at once:
 *
 *   - each `sequelize.transaction(async (t) => …)` runs every query, after
 *     timers, in `Promise.all` and in `gather` tasks, in its own
 *     transaction without a `transaction` option; a throw rolls it back;
 *   - a model's `beforeUpdate` hook runs in the request and is given the
 *     transaction; `t.afterCommit` runs in the request with the
 *     namespace's transaction already `null`;
 *   - two transactions started at once in one Context each read their own;
 *     without the copy in `run`, both read the one that began last, and
 *     the caller is left holding `null`;
 *   - a `sequelize.transaction(cb)` inside another is a second transaction
 *     on a second connection, which commits when the outer one rolls back;
 *     `sequelize.transaction({ transaction: t }, cb)` is a savepoint. With
 *     the copy, the outer transaction is current again after either;
 *     without it, the outer body's next query ran outside its transaction
 *     after an inner one, and in the finished savepoint after a savepoint.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, ContextVar, copyContext, createTask, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import pg from "pg";
import {
  DataTypes,
  type Model,
  type ModelStatic,
  QueryTypes,
  Sequelize,
  type Transaction,
} from "sequelize";
import { close, keepAliveAgent, listen, send } from "../helpers/http.ts";
import { latch } from "../helpers/latch.ts";
import { type PgliteClones, pgliteClones, WHOAMI } from "../helpers/pglite-clones.ts";

// ---- the recipe, as docs/recipes.md gives it ---------------------------------

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
      const context = copyContext(); // the transaction is set here, never in the caller's
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
Sequelize.useCLS(namespace); // for every Sequelize instance

/** The recipe without the copy: `fn` runs in the caller's Context. */
function namespaceWithoutCopy(): ReturnType<typeof clsNamespace> {
  return {
    ...clsNamespace("sequelize-no-copy"),
    run<T>(fn: (context: unknown) => T): unknown {
      fn(undefined);
      return undefined;
    },
  };
}

// ---- the database: a PGlite per pooled connection -----------------------------

const DATABASES = ["a", "b"];
const REQUESTS = 12;

let db: PgliteClones;
let sequelize: Sequelize;

interface AccountRow extends Model {
  name: string;
  balance: number;
}
let Account: ModelStatic<AccountRow>;
let Entry: ModelStatic<Model>;

before(async () => {
  db = await pgliteClones(
    DATABASES,
    "create table accounts (name text primary key, balance integer not null); insert into accounts values ('shared', 0);",
  );
  // Unless given the server's version (an option Sequelize's types do not
  // declare), Sequelize asks for it on a connection outside its pool, one
  // more than there are databases.
  const version = { databaseVersion: db.version };
  sequelize = new Sequelize({
    ...version,
    dialect: "postgres",
    dialectModule: { ...pg, Client: db.Client },
    host: "127.0.0.1",
    username: "postgres",
    database: "postgres",
    logging: false,
    pool: { max: DATABASES.length, min: 0, idle: 60_000 },
  });
  Account = sequelize.define<AccountRow>(
    "account",
    { name: { type: DataTypes.TEXT, primaryKey: true }, balance: DataTypes.INTEGER },
    { tableName: "accounts", timestamps: false },
  );
  Entry = sequelize.define(
    "entry",
    { request: DataTypes.TEXT, note: DataTypes.TEXT },
    { tableName: "entries", timestamps: false },
  );
});

after(async () => {
  await sequelize.close();
  await db.close();
});

/** The database and transaction this query runs in, as `a:742`. */
async function whoami(): Promise<string> {
  const rows = await sequelize.query<{ id: string }>(WHOAMI, { type: QueryTypes.SELECT });
  return String(rows[0]?.id);
}

describe("Sequelize 6 with the recipe's CLS namespace, over PGlite", { timeout: 60_000 }, () => {
  it("each request's transaction runs every query in it, after timers, Promise.all and gather tasks", async () => {
    interface Seen {
      id: string;
      /** whoami() at each step of the transaction. */
      inside: string[];
      /** The Sequelize transaction the namespace gave each step. */
      same: boolean[];
      hook: { requestId: string; same: boolean }[];
      afterCommit: { requestId: string; current: unknown }[];
      /** The namespace's transaction in the request, after the call. */
      afterwards: unknown;
      threw: boolean;
    }
    const hooks = new ContextVar<Seen["hook"]>("hooks");
    Account.addHook("beforeUpdate", "recipe-test", (_row, options) => {
      const seen = hooks.get(undefined);
      seen?.push({
        requestId: requestId.get(),
        same: options.transaction === namespace.get("transaction"),
      });
    });
    const server = createServer(
      withContext(async (_req, res) => {
        const id = requestId.get();
        const seen: Seen = {
          id,
          inside: [],
          same: [],
          hook: [],
          afterCommit: [],
          afterwards: null,
          threw: false,
        };
        hooks.set(seen.hook);
        const step = async (t: Transaction) => {
          seen.same.push(namespace.get("transaction") === t);
          seen.inside.push(await whoami());
        };
        const fails = Number(id.split("-")[1]) % 3 === 2;
        try {
          await sequelize.transaction(async (t) => {
            t.afterCommit(() => {
              seen.afterCommit.push({
                requestId: requestId.get(),
                current: namespace.get("transaction"),
              });
            });
            await step(t);
            await Entry.create({ request: id, note: "first" });
            await sleep(1);
            await step(t);
            await Promise.all([step(t), step(t)]);
            await gather(
              createTask(() => step(t)),
              createTask(() => step(t)),
            );
            const shared = await Account.findByPk("shared");
            assert.ok(shared);
            await shared.update({ balance: shared.balance + 1 });
            await Entry.create({ request: id, note: "last" });
            await step(t);
            if (fails) throw new Error("roll back");
          });
        } catch {
          seen.threw = true;
        }
        seen.afterwards = namespace.get("transaction");
        res.end(JSON.stringify(seen));
      }),
    );
    const base = await listen(server);
    const agent = keepAliveAgent();
    try {
      const replies = await Promise.all(
        Array.from({ length: REQUESTS }, async (_, n) => {
          const reply = await send(base, "/", { headers: { "x-request-id": `r-${n}` }, agent });
          return JSON.parse(reply.body) as Seen;
        }),
      );
      const transactions = new Set<string>();
      for (const seen of replies) {
        assert.equal(seen.inside.length, 7, seen.id);
        assert.equal(new Set(seen.inside).size, 1, `${seen.id}: ${seen.inside}`);
        transactions.add(seen.inside[0] as string);
        assert.ok(seen.same.every(Boolean), seen.id);
        assert.deepEqual(seen.hook, [{ requestId: seen.id, same: true }]);
        assert.equal(seen.afterwards, undefined, "the caller never holds the transaction");
        const failed = Number(seen.id.split("-")[1]) % 3 === 2;
        assert.equal(seen.threw, failed);
        assert.deepEqual(await db.notesOf(seen.id), failed ? [] : ["first", "last"]);
        assert.deepEqual(
          seen.afterCommit,
          failed ? [] : [{ requestId: seen.id, current: null }],
          seen.id,
        );
      }
      assert.equal(transactions.size, REQUESTS, "no two requests shared a transaction");
      // Both of the pool's connections served transactions.
      assert.deepEqual(new Set([...transactions].map((t) => t.split(":")[0])), new Set(DATABASES));
    } finally {
      Account.removeHook("beforeUpdate", "recipe-test");
      agent.destroy();
      await close(server);
    }
  });

  it("two transactions at once in one Context each read their own; without the copy in run, the last begun", async () => {
    /** Two transactions begun at once; each body reads `ns` once both are open. */
    async function twoAtOnce(ns: ReturnType<typeof clsNamespace>) {
      const arrive = latch(2);
      const body = async (t: Transaction) => {
        await arrive(); // both are open now
        const current = ns.get("transaction") as Transaction | null | undefined;
        return { own: current === t, read: current, ranIn: await whoami() };
      };
      const results = await Promise.all([sequelize.transaction(body), sequelize.transaction(body)]);
      return { results, after: ns.get("transaction") };
    }

    const recipe = await twoAtOnce(namespace);
    assert.deepEqual(
      recipe.results.map((r) => r.own),
      [true, true],
    );
    assert.notEqual(recipe.results[0]?.ranIn, recipe.results[1]?.ranIn);
    assert.equal(recipe.after, undefined);

    const withoutCopy = namespaceWithoutCopy();
    Sequelize.useCLS(withoutCopy);
    try {
      const broken = await twoAtOnce(withoutCopy);
      // Both read the one whose BEGIN came back last, and queried in it.
      const [first, second] = broken.results;
      assert.ok(first?.read);
      assert.equal(first.read, second?.read);
      assert.equal(broken.results.filter((r) => r.own).length, 1);
      assert.equal(first?.ranIn, second?.ranIn);
      assert.equal(broken.after, null, "the caller is left holding null");
    } finally {
      Sequelize.useCLS(namespace);
    }
  });

  it("a transaction inside another is a second one, which commits when the outer rolls back; a savepoint is not", async () => {
    const request = "nested";
    let outerId = "";
    let innerId = "";
    let savepointId = "";
    let outerAfterInner = false;
    let outerAfterSavepoint = false;
    await assert.rejects(
      sequelize.transaction(async (outer) => {
        outerId = await whoami();
        await Entry.create({ request, note: "outer" });
        await sequelize.transaction(async () => {
          innerId = await whoami();
          await Entry.create({ request, note: "inner" });
        });
        outerAfterInner = namespace.get("transaction") === outer;
        await assert.rejects(
          sequelize.transaction({ transaction: outer }, async () => {
            savepointId = await whoami();
            await Entry.create({ request, note: "savepoint" });
            throw new Error("roll back to the savepoint");
          }),
        );
        outerAfterSavepoint = namespace.get("transaction") === outer;
        await Entry.create({ request, note: "outer again" });
        assert.deepEqual(
          (await Entry.findAll({ where: { request } })).map((e) => e.get("note")),
          ["outer", "outer again"],
          "the savepoint's row is gone, the outer's kept; the inner's is in another database",
        );
        throw new Error("roll back the outer");
      }),
      /roll back the outer/,
    );
    assert.notEqual(innerId.split(":")[0], outerId.split(":")[0], "another connection");
    assert.equal(savepointId, outerId, "the savepoint is in the outer transaction");
    assert.ok(outerAfterInner, "the outer transaction is current again after the inner one");
    assert.ok(outerAfterSavepoint, "the outer transaction is current again after the savepoint");
    assert.deepEqual(await db.notesOf(request), ["inner"], "only the inner one committed");
  });
  it("without the copy in run, the outer transaction is lost after one begun inside it", async () => {
    const withoutCopy = namespaceWithoutCopy();
    Sequelize.useCLS(withoutCopy);
    try {
      let outerId = "";
      let afterInner = "";
      let afterInnerCurrent: unknown;
      await sequelize.transaction(async (outer) => {
        outerId = await whoami();
        await sequelize.transaction(async () => {});
        // The inner one's commit set the one namespace slot to null.
        afterInnerCurrent = withoutCopy.get("transaction");
        afterInner = await whoami();
        withoutCopy.set("transaction", outer);
        await assert.rejects(
          sequelize.transaction({ transaction: outer }, async () => {
            throw new Error("roll back to the savepoint");
          }),
        );
        // A savepoint's end clears nothing: the slot still holds it.
        assert.notEqual(withoutCopy.get("transaction"), outer);
        await assert.rejects(whoami(), /rollback has been called on this transaction/);
      });
      assert.equal(afterInnerCurrent, null);
      assert.notEqual(afterInner, outerId, "the outer body's query ran outside its transaction");
    } finally {
      Sequelize.useCLS(namespace);
    }
  });
});
