/**
 * typeorm-transactional 0.5 beside this package (docs/recipes.md, "With
 * Drizzle, Kysely, TypeORM and Sequelize"), with its `AsyncLocalStorage`
 * driver, over TypeORM's postgres driver and `pg`.
 *
 * typeorm-transactional keeps the transaction's EntityManager in a store of
 * its own and patches the DataSource (`query`, `manager`) and every
 * Repository's `manager` to read it. Its `AsyncLocalStorage` driver's store
 * is one object per top-level `runInTransaction`, handed on to whatever is
 * scheduled inside, and the EntityManager leaves it when the transaction
 * ends; this package's tasks and binds leave that store alone. So:
 *
 *   - `gather` and `createTask` tasks, and a `callSoon` callback that runs
 *     while the transaction is open, query in it; a `callSoon` callback or
 *     task that queries after the commit finds none and runs outside any;
 *   - a function `bind` made inside runs, called later, in its bound
 *     Context (this package's vars) but in typeorm-transactional's store of
 *     the caller: outside any transaction, or in the caller's own;
 *   - `@Transactional()` methods (the decorator applied by hand, as the
 *     legacy decorator transform does) behave as `runInTransaction`;
 *   - under `contextvars/http`, requests in pairs, each pair's two
 *     transactions open at once on two connections, each run every query in
 *     their own transaction (a throw rolls back the rows its task wrote
 *     too), and this package's vars stay their own.
 *
 * The database is PGlite behind pglite-socket, a clone per pooled
 * connection (test/helpers/pglite-clones.ts): PGlite is one Postgres
 * session, so pglite-socket runs one transaction at a time over all its
 * connections. `whoami()` names the database and transaction a query ran in
 * (`a:742`).
 *
 * The storage driver is a process-wide choice made once
 * (`initializeTransactionalContext` keeps the first one), so the cls-hooked
 * driver runs in fixture processes, fixtures/typeorm-transactional-drivers.ts
 * (TypeORM over sql.js), beside the `AsyncLocalStorage` driver there: the
 * same places see the same transactions under both.
 */
import "reflect-metadata";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { bind, ContextVar, callSoon, createTask, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { DataSource, EntitySchema } from "typeorm";
import {
  addTransactionalDataSource,
  initializeTransactionalContext,
  runInTransaction,
  StorageDriver,
  Transactional,
} from "typeorm-transactional";
import { fixtureResult } from "../helpers/fixture-process.ts";
import { close, keepAliveAgent, listen, send } from "../helpers/http.ts";
import { signal } from "../helpers/latch.ts";
import { type PgliteClones, pgliteClones, WHOAMI } from "../helpers/pglite-clones.ts";

initializeTransactionalContext({ storageDriver: StorageDriver.ASYNC_LOCAL_STORAGE });

interface Entry {
  id: number;
  request: string;
  note: string;
}

const EntrySchema = new EntitySchema<Entry>({
  name: "entry",
  tableName: "entries",
  columns: {
    id: { type: Number, primary: true, generated: true },
    request: { type: String },
    note: { type: String },
  },
});

// ---- the database: a PGlite per pooled connection -----------------------------

const DATABASES = ["a", "b"];
let db: PgliteClones;
let dataSource: DataSource;

/** What each place saw in the fixture, with each driver: started first, it runs while PGlite starts. */
let driversSeen: Promise<Record<string, string>[]>;

before(async () => {
  const fixture = fileURLToPath(
    new URL("./fixtures/typeorm-transactional-drivers.ts", import.meta.url),
  );
  driversSeen = Promise.all(
    ["cls-hooked", "async-local-storage"].map((driver) =>
      fixtureResult<Record<string, string>>(fixture, { args: [driver] }),
    ),
  );
  driversSeen.catch(() => {}); // awaited by its test
  db = await pgliteClones(DATABASES);
  dataSource = new DataSource({
    type: "postgres",
    host: "127.0.0.1",
    username: "postgres",
    database: "postgres",
    entities: [EntrySchema],
    logging: false,
    // pg's Pool options. A query that waits for a connection while both are
    // held fails after 5 s instead of waiting for ever.
    extra: {
      Client: db.Client,
      max: DATABASES.length,
      idleTimeoutMillis: 60_000,
      connectionTimeoutMillis: 5_000,
    },
  });
  await dataSource.initialize();
  addTransactionalDataSource(dataSource);
});

after(async () => {
  await dataSource.destroy();
  await db.close();
});

/** The database and transaction this query runs in, as `a:742`. */
async function whoami(): Promise<string> {
  const rows: { id: string }[] = await dataSource.query(WHOAMI);
  return String(rows[0]?.id);
}

/** Whether typeorm-transactional hands out a transaction's EntityManager here. */
function inTransaction(): boolean {
  return dataSource.manager.queryRunner !== undefined;
}

/** A barrier for pairs: each caller waits for the next, and the two go on together. */
function pairs(): () => Promise<void> {
  let waiting: (() => void) | undefined;
  return () =>
    new Promise<void>((resolve) => {
      if (waiting === undefined) {
        waiting = resolve;
        return;
      }
      waiting();
      waiting = undefined;
      resolve();
    });
}

const user = new ContextVar<string>("user", { default: "<none>" });

describe("typeorm-transactional 0.5 beside contextvars, over PGlite", {
  timeout: 60_000,
}, () => {
  it("inside runInTransaction, gather and createTask tasks and an early callSoon query in its transaction", async () => {
    const soon = signal<{ user: string; id: string }>();
    const seen = await user.run("ada", () =>
      runInTransaction(async () => {
        const start = await whoami();
        // A callSoon callback that runs while the body waits for it.
        callSoon(async () => soon.resolve({ user: user.get(), id: await whoami() }));
        const fromSoon = await soon.promise;
        const [first, second] = await gather(whoami, async () => {
          await sleep(1);
          return whoami();
        });
        const task = await createTask(async () => ({ user: user.get(), id: await whoami() }));
        await dataSource.getRepository(EntrySchema).insert({ request: "tx-1", note: "repository" });
        return { start, fromSoon, first, second, task, end: await whoami() };
      }),
    );
    assert.match(seen.start, /^[ab]:\d+$/);
    assert.deepEqual(seen, {
      start: seen.start,
      fromSoon: { user: "ada", id: seen.start },
      first: seen.start,
      second: seen.start,
      task: { user: "ada", id: seen.start },
      end: seen.start,
    });
    assert.deepEqual(await db.notesOf("tx-1"), ["repository"]);
    // Outside it, each query is a transaction of its own.
    assert.notEqual(await whoami(), seen.start);
    assert.equal(inTransaction(), false);
  });

  it("a callSoon callback or a task that queries after the commit finds no transaction", async () => {
    const committed = signal();
    const soon = signal<{ user: string; inTransaction: boolean; id: string }>();
    let task: Promise<{ user: string; inTransaction: boolean; id: string }> | undefined;
    const inside = await user.run("grace", () =>
      runInTransaction(async () => {
        callSoon(async () => {
          await committed.promise;
          soon.resolve({ user: user.get(), inTransaction: inTransaction(), id: await whoami() });
        });
        task = createTask(async () => {
          await committed.promise;
          return { user: user.get(), inTransaction: inTransaction(), id: await whoami() };
        });
        await dataSource.getRepository(EntrySchema).insert({ request: "tx-2", note: "inside" });
        return whoami();
      }),
    );
    // The body returned and its transaction committed: the row is there.
    assert.deepEqual(await db.notesOf("tx-2"), ["inside"]);
    committed.resolve();
    const [fromSoon, fromTask] = [await soon.promise, await (task as NonNullable<typeof task>)];
    for (const late of [fromSoon, fromTask]) {
      assert.equal(late.user, "grace"); // this package's Context, copied inside
      assert.equal(late.inTransaction, false);
      assert.notEqual(late.id, inside);
    }
    assert.notEqual(fromSoon.id, fromTask.id); // each query a transaction of its own
  });

  it("a function bound inside runs in its bound Context, in typeorm-transactional's store of the caller", async () => {
    let later: () => Promise<{ user: string; inTransaction: boolean; id: string }> = async () => {
      throw new Error("not bound");
    };
    const inside = await user.run("linus", () =>
      runInTransaction(async () => {
        later = bind(async () => ({
          user: user.get(),
          inTransaction: inTransaction(),
          id: await whoami(),
        }));
        return whoami();
      }),
    );
    // Called outside any transaction: none, though bound inside one.
    const outside = await later();
    assert.equal(outside.user, "linus");
    assert.equal(outside.inTransaction, false);
    assert.notEqual(outside.id, inside);
    // Called inside another transaction, in another Context: the caller's transaction.
    const [callerId, called] = await user.run("margaret", () =>
      runInTransaction(async () => [await whoami(), await later()] as const),
    );
    assert.equal(called.user, "linus");
    assert.equal(called.inTransaction, true);
    assert.equal(called.id, callerId);
    assert.notEqual(called.id, inside);
  });

  it("@Transactional() methods run their tasks in the method's transaction, nested calls in the same", async () => {
    class Ledger {
      async record(request: string): Promise<string[]> {
        await dataSource.getRepository(EntrySchema).insert({ request, note: "record" });
        const [first, nested] = await gather(whoami, () => this.audit(request));
        return [first, ...nested, await whoami()];
      }
      async audit(request: string): Promise<string[]> {
        await dataSource.getRepository(EntrySchema).insert({ request, note: "audit" });
        return [await whoami(), await createTask(whoami)];
      }
    }
    // What `@Transactional()` on each method compiles to under experimentalDecorators.
    for (const method of ["record", "audit"] as const) {
      const descriptor = Object.getOwnPropertyDescriptor(Ledger.prototype, method);
      assert.ok(descriptor);
      Transactional()(Ledger.prototype, method, descriptor);
      Object.defineProperty(Ledger.prototype, method, descriptor);
    }
    const ids = await new Ledger().record("tx-4");
    assert.equal(ids.length, 4);
    assert.equal(new Set(ids).size, 1, ids.join(" "));
    assert.deepEqual(await db.notesOf("tx-4"), ["record", "audit"]);
    assert.equal(inTransaction(), false);
  });

  it("requests at once under withContext: each pair's two transactions open together, every query in its own", async () => {
    const REQUESTS = 12;
    const meet = pairs();
    /** Each request's id at the barrier, in the order they met. */
    const met: { request: string; id: string }[] = [];
    const server = createServer(
      withContext(async (_req, res) => {
        const request = requestId.get();
        user.set(`user-${request}`);
        const fails = Number(request.split("-")[1]) % 3 === 2;
        const ids: string[] = [];
        const vars: string[] = [];
        const note = (id: string) => {
          ids.push(id);
          vars.push(`${requestId.get()}/${user.get()}`);
        };
        try {
          await runInTransaction(async () => {
            const start = await whoami();
            note(start);
            await dataSource.getRepository(EntrySchema).insert({ request, note: "start" });
            met.push({ request, id: start });
            await meet(); // the other transaction of the pair is open too
            await gather(
              async () => note(await whoami()),
              async () => {
                await sleep(1);
                note(await whoami());
              },
            );
            await createTask(async () => {
              note(await whoami());
              await dataSource.getRepository(EntrySchema).insert({ request, note: "task" });
            });
            note(await whoami());
            if (fails) throw new Error("rolled back");
          });
          res.end(JSON.stringify({ ids, vars, threw: false }));
        } catch {
          res.end(JSON.stringify({ ids, vars, threw: true }));
        }
      }),
    );
    const base = await listen(server);
    const agent = keepAliveAgent(REQUESTS);
    try {
      const replies = await Promise.all(
        Array.from({ length: REQUESTS }, (_, i) =>
          send(base, "/", { agent, headers: { "x-request-id": `req-${i}` } }),
        ),
      );
      const transactions = new Set<string>();
      for (const [i, reply] of replies.entries()) {
        const request = `req-${i}`;
        assert.equal(reply.status, 200, reply.body);
        const body = JSON.parse(reply.body) as { ids: string[]; vars: string[]; threw: boolean };
        assert.equal(body.ids.length, 5, reply.body);
        assert.equal(new Set(body.ids).size, 1, `${request}: ${reply.body}`);
        transactions.add(body.ids[0] as string);
        assert.deepEqual(body.vars, Array(5).fill(`${request}/user-${request}`));
        assert.equal(body.threw, i % 3 === 2);
        assert.deepEqual(await db.notesOf(request), body.threw ? [] : ["start", "task"]);
      }
      assert.equal(transactions.size, REQUESTS);
      // Each pair that met held both connections: one transaction on each database.
      assert.equal(met.length, REQUESTS);
      for (let i = 0; i < REQUESTS; i += 2) {
        const names = [met[i]?.id[0], met[i + 1]?.id[0]].sort();
        assert.deepEqual(names, ["a", "b"], JSON.stringify(met.slice(i, i + 2)));
      }
    } finally {
      agent.destroy();
      await close(server);
    }
  });

  it("the cls-hooked driver: tasks, callbacks and binds see what they see with AsyncLocalStorage", async () => {
    const [clsHooked, asyncLocalStorage] = await driversSeen;
    const expected = {
      body: "tx",
      gather: "tx",
      gatherAfterTimer: "tx",
      createTask: "tx",
      callSoonWhileOpen: "tx",
      taskAfterCommit: "none",
      callSoonAfterCommit: "none",
      boundOutside: "ada/none",
      boundInAnother: "ada/tx",
    };
    assert.deepEqual(clsHooked, expected);
    assert.deepEqual(asyncLocalStorage, expected);
  });
});
