/**
 * The transaction recipe (docs/recipes.md, "With Drizzle, Kysely,
 * TypeORM and Sequelize") with real query builders over PGlite, Postgres compiled to
 * WASM and run in this process: a `ContextVar` holds the current
 * transaction, `transaction(fn)` opens one (a savepoint when nested) and
 * runs `fn` with the var set, and repository functions query through
 * `q()`, the transaction if there is one. Under `contextvars/http`, with
 * requests at once:
 *
 *   - every query a request makes inside its transaction, after timers,
 *     in `Promise.all`, in `gather` and `TaskGroup` tasks and in a nested
 *     savepoint, runs in that request's transaction (`txid_current()`),
 *     and no two requests share one;
 *   - after `transaction` returns or throws, the var is unset again; a
 *     throw rolls back, a failed savepoint undoes its own writes only;
 *   - a task started inside and left running keeps the transaction in its
 *     copy of the Context after the commit. Both libraries refuse a query
 *     on it (Drizzle's PGlite session: "Transaction is closed"; Kysely:
 *     "Transaction is already committed"); the `open` flag below names
 *     the mistake, and lets such a task's own `transaction()` open a new
 *     transaction rather than a savepoint of a finished one.
 *
 * And PGlite's `listen` callbacks run in the Context of the query that
 * delivered the notification, a bound one in its own.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PGlite } from "@electric-sql/pglite";
import { bind, ContextVar, createTask, gather, type Task, taskGroup } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { eq, sql } from "drizzle-orm";
import { integer, pgTable, text } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/pglite";
import { Kysely, sql as ksql, PostgresDialect, type PostgresPool } from "kysely";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

/** What each ORM's version of the recipe offers the shared HTTP scenarios. */
interface Store {
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** The transaction this code runs in, or undefined outside one. */
  current(): unknown;
  txid(): Promise<string>;
  add(name: string, amount: number): Promise<void>;
  balance(name: string): Promise<number>;
}

let client: PGlite;

before(async () => {
  client = new PGlite();
  await client.waitReady;
});

after(async () => {
  await client.close();
});

// ---- Drizzle ---------------------------------------------------------------

const drizzleAccounts = pgTable("drizzle_accounts", {
  name: text("name").primaryKey(),
  balance: integer("balance").notNull(),
});

function drizzleStore(): Store {
  const db = drizzle(client);
  type Tx = Parameters<Parameters<typeof db.transaction>[0]>[0];
  const current = new ContextVar<{ tx: Tx; open: boolean } | undefined>("drizzle.tx", {
    default: undefined,
  });

  const q = (): typeof db | Tx => {
    const entry = current.get();
    if (entry === undefined) return db;
    if (!entry.open) throw new Error("query after its transaction ended");
    return entry.tx;
  };

  return {
    transaction<T>(fn: () => Promise<T>): Promise<T> {
      const outer = current.get();
      // tx.transaction() is a savepoint of the outer transaction.
      return (outer?.open ? outer.tx : db).transaction(async (tx) => {
        const entry = { tx, open: true };
        try {
          return await current.run(entry, fn);
        } finally {
          entry.open = false;
        }
      });
    },
    current: () => current.get()?.tx,
    txid: async () => {
      const { rows } = await q().execute<{ id: string }>(sql`select txid_current()::text as id`);
      return String(rows[0]?.id);
    },
    add: async (name, amount) => {
      await q()
        .update(drizzleAccounts)
        .set({ balance: sql`${drizzleAccounts.balance} + ${amount}` })
        .where(eq(drizzleAccounts.name, name));
    },
    balance: async (name) => {
      const rows = await q().select().from(drizzleAccounts).where(eq(drizzleAccounts.name, name));
      if (rows[0] === undefined) throw new Error(`no account ${name}`);
      return rows[0].balance;
    },
  };
}

// ---- Kysely ----------------------------------------------------------------

interface KyselyTables {
  kysely_accounts: { name: string; balance: number };
}

/**
 * PGlite is one session, so Kysely's PostgresDialect gets a pool of one
 * connection over it: a transaction holds it from BEGIN to COMMIT, and
 * every other query waits for `release()`.
 */
function onePglitePool(pglite: PGlite): PostgresPool {
  interface Connection {
    query(text: string, parameters: readonly unknown[]): Promise<unknown>;
    release(): void;
  }
  const waiting: ((connection: Connection) => void)[] = [];
  let taken = false;
  const connection: Connection = {
    async query(text: string, parameters: readonly unknown[]) {
      const result = await pglite.query(text, [...parameters]);
      const command = text.trimStart().split(/\s/, 1)[0]?.toUpperCase();
      return { command, rowCount: result.affectedRows ?? 0, rows: result.rows };
    },
    release() {
      const next = waiting.shift();
      if (next === undefined) taken = false;
      else next(connection);
    },
  };
  return {
    async connect() {
      if (!taken) {
        taken = true;
        return connection;
      }
      return new Promise((resolve) => waiting.push(resolve));
    },
    async end() {},
  } as unknown as PostgresPool;
}

function kyselyStore(): Store {
  const db = new Kysely<KyselyTables>({
    dialect: new PostgresDialect({ pool: onePglitePool(client) }),
  });
  type Tx = Kysely<KyselyTables>;
  const current = new ContextVar<{ tx: Tx; open: boolean } | undefined>("kysely.tx", {
    default: undefined,
  });
  let savepoints = 0;

  const q = (): Tx => {
    const entry = current.get();
    if (entry === undefined) return db;
    if (!entry.open) throw new Error("query after its transaction ended");
    return entry.tx;
  };

  async function inTransaction<T>(tx: Tx, fn: () => Promise<T>): Promise<T> {
    const entry = { tx, open: true };
    try {
      return await current.run(entry, fn);
    } finally {
      entry.open = false;
    }
  }

  return {
    async transaction<T>(fn: () => Promise<T>): Promise<T> {
      const outer = current.get();
      if (!outer?.open) return db.transaction().execute((trx) => inTransaction(trx, fn));
      // Kysely's Transaction has no nested transaction(): a savepoint by hand.
      const name = ksql.id(`sp_${++savepoints}`);
      await ksql`savepoint ${name}`.execute(outer.tx);
      try {
        const result = await inTransaction(outer.tx, fn);
        await ksql`release savepoint ${name}`.execute(outer.tx);
        return result;
      } catch (error) {
        await ksql`rollback to savepoint ${name}`.execute(outer.tx);
        throw error;
      }
    },
    current: () => current.get()?.tx,
    txid: async () => {
      const { rows } = await ksql<{ id: string }>`select txid_current()::text as id`.execute(q());
      return String(rows[0]?.id);
    },
    add: async (name, amount) => {
      await q()
        .updateTable("kysely_accounts")
        .set((eb) => ({ balance: eb("balance", "+", amount) }))
        .where("name", "=", name)
        .execute();
    },
    balance: async (name) => {
      const row = await q()
        .selectFrom("kysely_accounts")
        .select("balance")
        .where("name", "=", name)
        .executeTakeFirst();
      if (row === undefined) throw new Error(`no account ${name}`);
      return row.balance;
    },
  };
}

// ---- the scenarios, over HTTP ------------------------------------------------

const stores = {
  drizzle: { make: drizzleStore, table: "drizzle_accounts" },
  kysely: { make: kyselyStore, table: "kysely_accounts" },
};

const ACCOUNTS = 8;
const START = 100;

interface TransferReply {
  requestId: string;
  txids: string[];
  requestIds: string[];
  after: unknown;
}

for (const [name, { make, table }] of Object.entries(stores)) {
  describe(`${name} on PGlite: the transaction in a ContextVar`, { timeout: 60_000 }, () => {
    let store: Store;
    let base: string;
    const server = createServer(
      withContext(async (req, res) => {
        const url = new URL(req.url ?? "/", "http://x");
        const from = url.searchParams.get("from") ?? "";
        const to = url.searchParams.get("to") ?? "";
        const amount = Number(url.searchParams.get("amount"));
        const txids: string[] = [];
        const requestIds: string[] = [];
        const note = async () => {
          txids.push(await store.txid());
          requestIds.push(requestId.get());
        };
        try {
          await store.transaction(async () => {
            await note();
            await store.add(from, -amount);
            await randomDelay();
            await Promise.all([note(), note(), store.balance(to)]);
            await gather(note, note);
            await taskGroup(async (group) => {
              group.createTask(note);
              group.createTask(async () => {
                await sleep(1);
                await note();
              });
            });
            // A savepoint that fails: its write is undone, the outer goes on.
            await store
              .transaction(async () => {
                await note();
                await store.add(to, 1_000);
                throw new Error("savepoint fails");
              })
              .catch(() => {});
            await new Promise((resolve) => setTimeout(resolve, 1));
            await store.add(to, amount);
            await note();
            if (url.searchParams.has("fail")) throw new Error("payment provider down");
          });
          res.end(
            JSON.stringify({
              requestId: requestId.get(),
              txids,
              requestIds,
              after: store.current() ?? null,
            }),
          );
        } catch (error) {
          res.statusCode = 500;
          res.end(
            JSON.stringify({ error: (error as Error).message, after: store.current() ?? null }),
          );
        }
      }),
    );

    const balances = async (): Promise<number[]> => {
      const { rows } = await client.query<{ balance: number }>(
        `select balance from ${table} order by name`,
      );
      return rows.map((row) => row.balance);
    };

    before(async () => {
      store = make();
      await client.exec(`create table ${table} (name text primary key, balance integer not null)`);
      for (let i = 0; i < ACCOUNTS; i++) {
        await client.query(`insert into ${table} values ($1, $2)`, [`a${i}`, START]);
      }
      base = await listen(server);
    });

    after(async () => {
      await close(server);
    });

    it("runs each request's queries in its own transaction, tasks and savepoints included", async () => {
      const agent = keepAliveAgent(6);
      const count = 24;
      const replies = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          send(base, `/transfer?from=a${i % ACCOUNTS}&to=a${(i + 3) % ACCOUNTS}&amount=${i + 1}`, {
            agent,
            headers: { "x-request-id": `req-${i}` },
          }),
        ),
      );
      agent.destroy();
      const seen = new Set<string>();
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.status, 200, reply.body);
        const body = JSON.parse(reply.body) as TransferReply;
        assert.equal(body.requestId, `req-${i}`);
        assert.deepEqual(new Set(body.requestIds), new Set([`req-${i}`]));
        assert.equal(body.txids.length, 9);
        assert.equal(new Set(body.txids).size, 1, `req-${i} ran in ${body.txids.join(", ")}`);
        assert.ok(!seen.has(body.txids[0] ?? ""), `req-${i} shares a transaction`);
        seen.add(body.txids[0] ?? "");
        assert.equal(body.after, null);
      }
      const expected = Array.from({ length: ACCOUNTS }, () => START);
      for (let i = 0; i < count; i++) {
        expected[i % ACCOUNTS] = (expected[i % ACCOUNTS] ?? 0) - (i + 1);
        expected[(i + 3) % ACCOUNTS] = (expected[(i + 3) % ACCOUNTS] ?? 0) + (i + 1);
      }
      assert.deepEqual(await balances(), expected);
    });

    it("rolls a throwing transaction back and leaves the var unset", async () => {
      const before = await balances();
      const replies = await Promise.all(
        [0, 1, 2].map((i) => send(base, `/transfer?from=a${i}&to=a${i + 1}&amount=50&fail=1`)),
      );
      for (const reply of replies) {
        assert.equal(reply.status, 500);
        assert.deepEqual(JSON.parse(reply.body), { error: "payment provider down", after: null });
      }
      assert.deepEqual(await balances(), before);
    });

    it("refuses a query from a task that outlived its transaction", async () => {
      let committed = () => {};
      const commit = new Promise<void>((resolve) => {
        committed = resolve;
      });
      let late: Task<unknown> | undefined;
      let ownTransaction: Task<string[]> | undefined;
      const first = await store.transaction(async () => {
        late = createTask(async () => {
          await commit;
          assert.notEqual(
            store.current(),
            undefined,
            "the task's copy still holds the transaction",
          );
          return store.balance("a0");
        });
        ownTransaction = createTask(async () => {
          await commit;
          return store.transaction(async () => [await store.txid(), await store.txid()]);
        });
        return store.txid();
      });
      committed();
      await assert.rejects(late as Task<unknown>, /query after its transaction ended/);
      const [a, b] = await (ownTransaction as Task<string[]>);
      assert.equal(a, b);
      assert.notEqual(a, first);
      // Outside the task, the var is unset and queries go to the database.
      assert.equal(store.current(), undefined);
      assert.equal(typeof (await store.balance("a0")), "number");
    });
  });
}

describe("PGlite's notification listeners", { timeout: 60_000 }, () => {
  it("run in the Context of the query that delivered the notification, unless bound", async () => {
    const who = new ContextVar<string>("orm.who", { default: "none" });
    const plain: string[] = [];
    const bound: string[] = [];
    const unlisten = await who.run("listener", () =>
      Promise.all([
        client.listen("orm_events", (payload) => plain.push(`${payload}: ${who.get()}`)),
        client.listen(
          "orm_events",
          bind((payload: string) => bound.push(`${payload}: ${who.get()}`)),
        ),
      ]),
    );
    try {
      await who.run("notifier", () => client.query("notify orm_events, 'direct'"));
      await who.run("committer", () =>
        client.transaction(async (tx) => {
          await tx.query("notify orm_events, 'in a transaction'");
        }),
      );
      // PGlite queues each callback as a microtask while it reads the reply;
      // wait for both (bounded) rather than a fixed time.
      const deadline = Date.now() + 5_000;
      while ((plain.length < 2 || bound.length < 2) && Date.now() < deadline) await sleep(5);
      assert.deepEqual(plain, ["direct: notifier", "in a transaction: committer"]);
      assert.deepEqual(bound, ["direct: listener", "in a transaction: listener"]);
    } finally {
      for (const stop of unlisten) await stop();
    }
  });
});

describe("the drivers' own handling of a transaction used after its end", {
  timeout: 60_000,
}, () => {
  it("both refuse it: Drizzle's PGlite transaction is closed, Kysely's is committed", async () => {
    const db = drizzle(client);
    let drizzleTx: Parameters<Parameters<typeof db.transaction>[0]>[0] | undefined;
    await db.transaction(async (tx) => {
      drizzleTx = tx;
    });
    await assert.rejects(
      async () => drizzleTx?.execute(sql`select 1`),
      (error: Error) => (error.cause as Error)?.message === "Transaction is closed",
    );

    const kdb = new Kysely<KyselyTables>({
      dialect: new PostgresDialect({ pool: onePglitePool(client) }),
    });
    let kyselyTx: Kysely<KyselyTables> | undefined;
    await kdb.transaction().execute(async (trx) => {
      kyselyTx = trx;
    });
    await assert.rejects(
      async () => ksql`select 1`.execute(kyselyTx as Kysely<KyselyTables>),
      /Transaction is already committed/,
    );
    await kdb.destroy();
  });
});
