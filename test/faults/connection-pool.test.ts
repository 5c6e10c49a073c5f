/**
 * Reused resources: a connection created in request A and handed to
 * request B. The fake pool below works as node-postgres' pg-pool and
 * Node's http.Agent do: a waiter's callback is called from inside the
 * *releasing* request's `release()`, and a connection's I/O (here a timer
 * loop, in a real driver its socket) runs in the Context of the request
 * that *created* it. A plain callback therefore sees the wrong request;
 * the documented recipe (docs/guarantees.md, "Callbacks handed to pools")
 * fixes it:
 *
 *   pool.acquire(bind((conn) => …));            // bind at the hand-over
 *   conn.query(sql, bind((error, rows) => …));
 *   const conn = await acquire();              // or promisify: an await resumes in the awaiter
 *   conn.on("notice", bind(listener));         // a listener the request adds to the connection
 *
 * `bindEmitter(conn)` is no fix for a reused connection: it binds once, to
 * its first caller's Context (pinned at the end).
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, bindEmitter } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { close, keepAliveAgent, listen, send } from "../helpers/http.ts";

type Callback<T> = (value: T) => void;

class Connection {
  readonly createdBy = requestId.get("<none>");
  readonly #queue: Array<() => void> = [];
  // The connection's "socket": I/O callbacks run where it was opened.
  readonly #socket = setInterval(() => this.#queue.shift()?.(), 1);

  query(sql: string, callback: Callback<string>): void {
    this.#queue.push(() => callback(`rows for ${sql}`));
  }

  end(): void {
    clearInterval(this.#socket);
  }
}

class FakePool {
  readonly #idle: Connection[] = [];
  readonly #all: Connection[] = [];
  readonly #waiting: Callback<Connection>[] = [];
  constructor(readonly max: number) {}

  acquire(callback: Callback<Connection>): void {
    const idle = this.#idle.pop();
    if (idle !== undefined) process.nextTick(callback, idle);
    else if (this.#all.length < this.max) {
      const conn = new Connection();
      this.#all.push(conn);
      setTimeout(callback, 1, conn); // "connected"
    } else this.#waiting.push(callback);
  }

  release(conn: Connection): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined)
      waiter(conn); // called inside the releasing request
    else this.#idle.push(conn);
  }

  end(): void {
    for (const conn of this.#all) conn.end();
  }
}

type Style = "plain" | "bind" | "await";

/** What a request saw: its own id, and the id current in each pool callback. */
interface Seen {
  own: string;
  acquired: string;
  queried: string;
  createdBy: string;
}

async function handle(pool: FakePool, style: Style): Promise<Seen> {
  const own = requestId.get();
  let conn: Connection;
  let acquired: string;
  let queried: string;
  if (style === "await") {
    conn = await new Promise<Connection>((resolve) => pool.acquire(resolve));
    acquired = requestId.get();
    await new Promise((resolve) => conn.query("select 1", resolve));
    queried = requestId.get();
  } else {
    const wrap = <A extends unknown[]>(fn: (...args: A) => void) =>
      style === "bind" ? bind(fn) : fn;
    [conn, acquired] = await new Promise<[Connection, string]>((resolve) =>
      pool.acquire(wrap((c: Connection) => resolve([c, requestId.get()]))),
    );
    queried = await new Promise<string>((resolve) =>
      conn.query(
        "select 1",
        wrap(() => resolve(requestId.get())),
      ),
    );
  }
  setTimeout(() => pool.release(conn), 5); // held a little: the next request has to wait
  return { own, acquired, queried, createdBy: conn.createdBy };
}

describe("a pooled connection made in request A, handed to request B", () => {
  const pools = new Map<string, FakePool>();
  const server = createServer(
    withContext(async (req, res) => {
      const style = (req.url ?? "/plain").slice(1) as Style;
      res.end(JSON.stringify(await handle(pools.get(style) ?? new FakePool(1), style)));
    }),
  );
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(async () => {
    for (const pool of pools.values()) pool.end();
    await close(server);
  });

  /** A and B on a fresh pool of one connection: A creates it, B waits for it. */
  async function twoRequests(style: Style): Promise<[Seen, Seen]> {
    pools.set(style, new FakePool(1));
    const agent = keepAliveAgent();
    const ask = (id: string) =>
      send(base, `/${style}`, { agent, headers: { "x-request-id": `${style}-${id}` } });
    const a = ask("A");
    await sleep(2); // A has created the connection and holds it
    const b = ask("B");
    const replies = await Promise.all([a, b]);
    agent.destroy();
    return replies.map((reply) => JSON.parse(reply.body) as Seen) as [Seen, Seen];
  }

  it("pinned: plain callbacks in B see A (the bug this recipe exists for)", async () => {
    const [, b] = await twoRequests("plain");
    assert.equal(b.own, "plain-B");
    assert.equal(b.createdBy, "plain-A");
    assert.equal(b.acquired, "plain-A", "the waiter ran inside A's release()");
    assert.equal(b.queried, "plain-A", "the connection's I/O runs where A opened it");
  });

  const recipes = {
    bind: "bind() at every hand-over",
    await: "promisified acquire and query (an await resumes in the awaiter)",
  } as const;
  for (const [style, recipe] of Object.entries(recipes) as [keyof typeof recipes, string][]) {
    it(`${recipe}: B's callbacks see B, never A`, async () => {
      const [a, b] = await twoRequests(style);
      assert.equal(b.createdBy, `${style}-A`, "the connection really came from A");
      assert.deepEqual(b, {
        own: `${style}-B`,
        acquired: `${style}-B`,
        queried: `${style}-B`,
        createdBy: `${style}-A`,
      });
      assert.deepEqual(a, {
        own: `${style}-A`,
        acquired: `${style}-A`,
        queried: `${style}-A`,
        createdBy: `${style}-A`,
      });
    });
  }

  it("under load: 100 requests over 3 connections, bind() everywhere: no callback sees another request", async () => {
    const busy = new FakePool(3);
    const agent = keepAliveAgent();
    const server2 = createServer(
      withContext(async (_req, res) => res.end(JSON.stringify(await handle(busy, "bind")))),
    );
    const base2 = await listen(server2);
    try {
      const replies = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          send(base2, "/", { agent, headers: { "x-request-id": `load-${i}` } }),
        ),
      );
      const seen = replies.map((reply) => JSON.parse(reply.body) as Seen);
      for (const [i, s] of seen.entries()) {
        assert.deepEqual([s.own, s.acquired, s.queried], [`load-${i}`, `load-${i}`, `load-${i}`]);
      }
      assert.ok(
        seen.some((s) => s.createdBy !== s.own),
        "connections really were reused across requests",
      );
    } finally {
      agent.destroy();
      busy.end();
      await close(server2);
    }
  });
});

/** A pooled connection that is an EventEmitter: its "socket" emits notices where it was opened. */
class NoticeConnection extends EventEmitter {
  readonly #socket = setInterval(() => this.emit("notice"), 1);
  end(): void {
    clearInterval(this.#socket);
  }
}

describe("an EventEmitter owned by a pooled connection made in request A", () => {
  /** The id each listener B adds sees on the connection's next notice. */
  function listenInB(conn: NoticeConnection, bindTheEmitter: boolean): Promise<[string, string]> {
    return requestId.run("B", () => {
      if (bindTheEmitter) bindEmitter(conn);
      const plain = new Promise<string>((resolve) =>
        conn.once("notice", () => resolve(requestId.get("<none>"))),
      );
      const bound = new Promise<string>((resolve) =>
        conn.once(
          "notice",
          bind(() => resolve(requestId.get("<none>"))),
        ),
      );
      return Promise.all([plain, bound]);
    });
  }

  it("bind(listener) in B sees B; a plain listener sees A (pinned)", async () => {
    const conn = requestId.run("A", () => new NoticeConnection());
    try {
      assert.deepEqual(await listenInB(conn, false), ["A", "B"]);
    } finally {
      conn.end();
    }
  });

  it("pinned: bindEmitter(conn) binds once, to its first caller's Context: B's call keeps A's", async () => {
    const conn = requestId.run("A", () => bindEmitter(new NoticeConnection()));
    try {
      assert.deepEqual(await listenInB(conn, true), ["A", "B"]);
    } finally {
      conn.end();
    }
  });
});
