/**
 * The transaction recipe (docs/recipes.md, "With Drizzle, Kysely,
 * TypeORM and Sequelize") with TypeORM over sql.js, SQLite compiled to WASM:
 * `dataSource.transaction(async (manager) => …)` with the manager in a
 * `ContextVar`, repository code reading it, under `contextvars/http`.
 *
 * TypeORM's SQLite drivers hand every caller one shared QueryRunner, so two
 * transactions at once are one SQLite transaction, the second a savepoint
 * of the first: pinned below, a transaction that "committed" is undone by
 * the other's rollback. That is TypeORM's (typeorm/typeorm#1884), not the
 * Context's, and a queue of top-level transactions avoids it. With the
 * queue, requests at once each commit or roll back alone; entity
 * subscribers run in the request whose save called them, with its
 * transaction in the var (on SQLite every QueryRunner is the one shared
 * runner, so `sameRunner` below only says the var was set); a nested
 * `transaction` is a savepoint; the
 * var is unset after the call, returned or thrown.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { ContextVar, gather } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import {
  DataSource,
  type EntityManager,
  EntitySchema,
  type EntitySubscriberInterface,
  type InsertEvent,
} from "typeorm";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

interface Account {
  name: string;
  balance: number;
}

const AccountSchema = new EntitySchema<Account>({
  name: "account",
  columns: { name: { type: String, primary: true }, balance: { type: Number } },
});

const current = new ContextVar<{ manager: EntityManager; open: boolean } | undefined>(
  "typeorm.tx",
  {
    default: undefined,
  },
);

const subscriberSaw: { requestId: string; name: string; sameRunner: boolean }[] = [];

/** Listens to every entity: the one table here. */
class AccountSubscriber implements EntitySubscriberInterface<Account> {
  afterInsert(event: InsertEvent<Account>) {
    subscriberSaw.push({
      requestId: requestId.get("<none>"),
      name: event.entity.name,
      sameRunner: event.queryRunner === current.get()?.manager.queryRunner,
    });
  }
}

async function newDataSource(): Promise<DataSource> {
  const dataSource = new DataSource({
    type: "sqljs",
    entities: [AccountSchema],
    synchronize: true,
    logging: false,
  });
  await dataSource.initialize();
  // The `subscribers` option takes classes decorated with @EventSubscriber(); an instance needs none.
  dataSource.subscribers.push(new AccountSubscriber());
  return dataSource;
}

describe("TypeORM over sql.js: the transaction in a ContextVar", { timeout: 60_000 }, () => {
  let dataSource: DataSource;
  let base: string;
  /** Top-level transactions, one at a time: SQLite's one QueryRunner can hold one. */
  let queue: Promise<unknown> = Promise.resolve();

  const m = (): EntityManager => {
    const entry = current.get();
    if (entry === undefined) return dataSource.manager;
    if (!entry.open) throw new Error("query after its transaction ended");
    return entry.manager;
  };

  const enter = async <T>(manager: EntityManager, fn: () => Promise<T>): Promise<T> => {
    const entry = { manager, open: true };
    try {
      return await current.run(entry, fn);
    } finally {
      entry.open = false;
    }
  };

  function transaction<T>(fn: () => Promise<T>): Promise<T> {
    const outer = current.get();
    // On the outer manager's QueryRunner, TypeORM makes a savepoint.
    if (outer?.open) return outer.manager.transaction((manager) => enter(manager, fn));
    const turn = queue.then(() => dataSource.transaction((manager) => enter(manager, fn)));
    queue = turn.catch(() => {});
    return turn;
  }

  const server = createServer(
    withContext(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const name = url.searchParams.get("name") ?? "";
      const requestIds: string[] = [];
      try {
        const counts = await transaction(async () => {
          await m().save(AccountSchema, { name, balance: 1 });
          await randomDelay();
          requestIds.push(requestId.get());
          const [count] = await gather(
            () => m().count(AccountSchema),
            async () => requestIds.push(requestId.get()),
          );
          // A savepoint that fails: its row is gone, the outer goes on.
          await transaction(async () => {
            await m().save(AccountSchema, { name: `${name}-savepoint`, balance: 1 });
            throw new Error("savepoint fails");
          }).catch(() => {});
          await new Promise((resolve) => setTimeout(resolve, 1));
          if (url.searchParams.has("fail")) throw new Error("payment provider down");
          return count;
        });
        res.end(JSON.stringify({ counts, requestIds, after: current.get() ?? null }));
      } catch (error) {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: (error as Error).message, after: current.get() ?? null }));
      }
    }),
  );

  before(async () => {
    dataSource = await newDataSource();
    base = await listen(server);
  });

  after(async () => {
    await close(server);
    await dataSource.destroy();
  });

  it("without a queue, two transactions at once are one: a commit is undone by the other's rollback", async () => {
    const shared = await newDataSource();
    const failing = shared
      .transaction(async (manager) => {
        await manager.insert(AccountSchema, { name: "a", balance: 1 });
        await new Promise((resolve) => setTimeout(resolve, 30));
        throw new Error("a fails");
      })
      .catch((error: Error) => error.message);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await shared.transaction(async (manager) => {
      assert.equal(manager.queryRunner, shared.createQueryRunner(), "the one shared QueryRunner");
      await manager.insert(AccountSchema, { name: "b", balance: 1 });
    });
    assert.equal(await failing, "a fails");
    assert.deepEqual(await shared.manager.find(AccountSchema), []); // b "committed", and is gone
    await shared.destroy();
  });

  it("runs each request's transaction alone, subscribers and savepoints included", async () => {
    subscriberSaw.length = 0;
    const agent = keepAliveAgent(4);
    const count = 12;
    const replies = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        send(base, `/?name=n${i}${i % 4 === 3 ? "&fail=1" : ""}`, {
          agent,
          headers: { "x-request-id": `req-${i}` },
        }),
      ),
    );
    agent.destroy();
    const committed: string[] = [];
    for (const [i, reply] of replies.entries()) {
      const body = JSON.parse(reply.body) as { requestIds?: string[]; after: unknown };
      assert.equal(body.after, null);
      if (i % 4 === 3) {
        assert.equal(reply.status, 500);
        continue;
      }
      assert.equal(reply.status, 200, reply.body);
      assert.deepEqual(body.requestIds, [`req-${i}`, `req-${i}`]);
      committed.push(`n${i}`);
    }
    const rows = await dataSource.manager.find(AccountSchema, { order: { name: "ASC" } });
    assert.deepEqual(
      rows.map((row) => row.name),
      committed.sort(),
    );
    // Two inserts per request (the savepoint's too), each in its request, with its transaction set.
    assert.equal(subscriberSaw.length, count * 2);
    for (const saw of subscriberSaw) {
      assert.equal(
        saw.requestId,
        `req-${saw.name.replace(/^n(\d+).*$/, "$1")}`,
        JSON.stringify(saw),
      );
      assert.ok(saw.sameRunner, JSON.stringify(saw));
    }
    assert.equal(current.get(), undefined);
  });
});
