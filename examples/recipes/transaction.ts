// Recipe: the current database transaction in a ContextVar (docs/recipes.md).
// Repository functions call db() and get the transaction of whoever called
// them; a nested withTransaction() becomes a savepoint; two transfers run
// concurrently without seeing each other's transaction; a throw rolls back
// and leaves no transaction behind; work a transaction starts and leaves
// running finds it over, not still usable.
//
//   node --conditions=contextvars-source --import tsx examples/recipes/transaction.ts
import { ContextVar, createTask, gather, type Task } from "contextvars";

// ---- a small in-memory database: committed rows, transactions, savepoints ----

// One turn of the event loop, where a real driver would wait for the server.
const roundTrip = () => new Promise<void>((resolve) => setImmediate(resolve));

class Transaction {
  readonly #writes = new Map<string, number>();
  /** Set when it ends: a real driver hands the connection back to the pool then. */
  done: "committed" | "rolled back" | undefined;

  constructor(
    readonly name: string,
    readonly database: FakeDatabase,
    readonly parent?: Transaction,
  ) {}

  async read(key: string): Promise<number | undefined> {
    await roundTrip();
    return this.#read(key);
  }

  async write(key: string, value: number): Promise<void> {
    await roundTrip();
    this.#writes.set(key, value);
  }

  savepoint(): Transaction {
    return new Transaction(`${this.name}.sp${this.database.nextSavepoint()}`, this.database, this);
  }

  // A savepoint's writes go into its parent; a top-level transaction's into the tables.
  commit(): void {
    for (const [key, value] of this.#writes) {
      if (this.parent === undefined) this.database.rows.set(key, value);
      else this.parent.#writes.set(key, value);
    }
    this.done = "committed";
  }

  rollback(): void {
    this.#writes.clear();
    this.done = "rolled back";
  }

  #read(key: string): number | undefined {
    const own = this.#writes.get(key);
    if (own !== undefined) return own;
    if (this.parent !== undefined) return this.parent.#read(key);
    return this.database.rows.get(key);
  }
}

class FakeDatabase {
  readonly rows = new Map<string, number>();
  #transactions = 0;
  #savepoints = 0;

  begin(): Transaction {
    return new Transaction(`tx${++this.#transactions}`, this);
  }

  nextSavepoint(): number {
    return ++this.#savepoints;
  }
}

const database = new FakeDatabase();

// ---- the recipe: the transaction is a context value, not a parameter ---------

const currentTransaction = new ContextVar<Transaction | undefined>("transaction", {
  default: undefined,
});

/** The transaction the calling code runs in; a query outside one is a bug, so it throws. */
function db(): Transaction {
  const transaction = currentTransaction.get();
  if (transaction === undefined) throw new Error("db() called outside withTransaction()");
  // Work started inside withTransaction and left running (a task, a timer, a
  // bound listener) keeps the transaction in its copy of the Context after
  // the commit; with a real pool its query would run on a connection that
  // another request may hold by then.
  if (transaction.done !== undefined) {
    throw new Error(`db() called after ${transaction.name} was ${transaction.done}`);
  }
  return transaction;
}

/**
 * Runs fn in a transaction: a new one at the top, a savepoint of the caller's
 * when nested. Commits when fn resolves, rolls back when it throws.
 */
async function withTransaction<T>(fn: () => Promise<T>): Promise<T> {
  const outer = currentTransaction.get();
  // An outer that is over belongs to work that outlived it: that work's own
  // transaction is a new one, not a savepoint of a finished one.
  const transaction =
    outer === undefined || outer.done !== undefined ? database.begin() : outer.savepoint();
  // var.run gives fn a copy of the Context with the var set: everything fn
  // awaits sees this transaction, and the caller's Context never does.
  return currentTransaction.run(transaction, async () => {
    try {
      const result = await fn();
      transaction.commit();
      return result;
    } catch (error) {
      transaction.rollback();
      throw error;
    }
  });
}

// ---- repository and service code: no transaction parameter anywhere ---------

const accounts = {
  async open(name: string, balance: number): Promise<void> {
    await db().write(name, balance);
    console.log(`  ${db().name}: opened ${name} with ${balance}`);
  },
  async balance(name: string): Promise<number> {
    const balance = await db().read(name);
    if (balance === undefined) throw new Error(`no account ${name}`);
    return balance;
  },
  async add(name: string, amount: number): Promise<void> {
    const balance = await accounts.balance(name);
    if (balance + amount < 0) throw new Error(`${name} cannot go below 0`);
    await db().write(name, balance + amount);
    console.log(`  ${db().name}: ${name} ${balance} → ${balance + amount}`);
  },
};

async function transfer(from: string, to: string, amount: number): Promise<void> {
  await withTransaction(async () => {
    await accounts.add(from, -amount);
    await accounts.add(to, amount);
  });
}

const committed = () =>
  [...database.rows]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, balance]) => `${name}=${balance}`)
    .join(" ");

// ---- run it ------------------------------------------------------------------

await withTransaction(async () => {
  for (const [name, balance] of [
    ["alice", 100],
    ["bob", 50],
    ["carol", 0],
    ["dave", 0],
  ] as const) {
    await accounts.open(name, balance);
  }
});
console.log(`committed: ${committed()}`);

console.log("two transfers at once, each in its own transaction:");
await gather(
  () => transfer("alice", "carol", 30),
  () => transfer("bob", "dave", 20),
);
console.log(`committed: ${committed()}`);

console.log("a nested withTransaction is a savepoint of the outer one:");
await withTransaction(async () => {
  await accounts.add("alice", -10);
  try {
    await transfer("alice", "zoe", 25); // alice is debited, then zoe is not found
  } catch (error) {
    console.log(`  the savepoint rolled back (${(error as Error).message}); the outer goes on`);
  }
  await accounts.add("carol", 10);
});
console.log(`committed: ${committed()}`);

console.log("a throw rolls the whole transaction back:");
try {
  await withTransaction(async () => {
    await accounts.add("carol", -40);
    throw new Error("payment provider down");
  });
} catch (error) {
  console.log(`  failed: ${(error as Error).message}`);
}
console.log(`committed: ${committed()}`);
console.log(`transaction left behind: ${currentTransaction.get()?.name ?? "none"}`);
try {
  await accounts.balance("alice");
} catch (error) {
  console.log(`a query outside any transaction: ${(error as Error).message}`);
}

console.log("work a transaction starts and leaves running finds it over:");
const leftRunning: Task<void>[] = [];
const placed: Promise<void> = withTransaction(async () => {
  await accounts.add("dave", -5);
  // Not awaited: each runs once the order is placed, after the commit, in a
  // copy of the Context that still holds this transaction.
  leftRunning.push(
    createTask(async () => {
      await placed;
      await accounts.add("bob", 5).catch((error: Error) => {
        console.log(`  a bare query: ${error.message}`);
      });
    }),
    createTask(async () => {
      await placed;
      await withTransaction(() => accounts.add("bob", 5)); // a transaction of its own
    }),
  );
});
await placed;
await Promise.all(leftRunning); // only to print what follows after them
console.log(`committed: ${committed()}`);
