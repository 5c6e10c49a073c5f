/**
 * The two pure-JS resource pools under most Node database clients:
 * generic-pool and tarn (knex's pool). Requests share a pool smaller than
 * their number, so each waits for a resource another request releases. What
 * user code sees (docs/recipes.md, "With a real pool"):
 *
 *   - after `await pool.acquire()`, or in `acquire().then(cb)`, the
 *     acquiring request, whoever released the resource: an await resumes
 *     in the awaiter;
 *   - the factory's `create` runs in the request whose acquire made the
 *     resource, so whatever the resource starts (a socket, a timer) keeps
 *     that request's Context for as long as the resource lives;
 *   - the pool's own hooks run where the pool calls them (pinned below):
 *     generic-pool's `validate` for a waiter inside the releasing request,
 *     tarn's `destroy` of an idle resource in the request whose acquire
 *     started tarn's reaping timer, after that request has ended.
 *
 * Factory functions bound at startup (`create: bind(create)`) run outside
 * every request, and so does everything their resources start.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bind } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import genericPool from "generic-pool";
import { Pool as TarnPool } from "tarn";
import { close, keepAliveAgent, listen, randomDelay, send } from "../helpers/http.ts";

interface Resource {
  createdBy: string;
}

interface Hooks {
  create?: () => Promise<Resource>;
  destroy?: (resource: Resource) => Promise<void>;
  validate?: (resource: Resource) => Promise<boolean>;
}

interface AnyPool {
  acquire(): Promise<Resource>;
  release(resource: Resource): void;
  end(): Promise<void>;
}

const createHere = async (): Promise<Resource> => {
  const createdBy = requestId.get("<none>");
  await sleep(1); // "connecting"
  return { createdBy };
};

const pools = {
  "generic-pool": (max: number, hooks: Hooks = {}): AnyPool => {
    const pool = genericPool.createPool<Resource>(
      {
        create: hooks.create ?? createHere,
        destroy: hooks.destroy ?? (async () => {}),
        ...(hooks.validate && { validate: hooks.validate }),
      },
      { max, testOnBorrow: hooks.validate !== undefined },
    );
    return {
      acquire: () => pool.acquire(),
      release: (resource) => void pool.release(resource),
      end: async () => {
        await pool.drain();
        await pool.clear();
      },
    };
  },
  tarn: (max: number, hooks: Hooks = {}): AnyPool => {
    const pool = new TarnPool<Resource>({
      create: hooks.create ?? createHere,
      destroy: hooks.destroy ?? (async () => {}),
      min: 0,
      max,
      idleTimeoutMillis: 20,
      reapIntervalMillis: 5,
    });
    return {
      acquire: () => pool.acquire().promise,
      release: (resource) => void pool.release(resource),
      end: () => pool.destroy().then(() => {}),
    };
  },
};

interface Seen {
  own: string;
  afterAcquire: string;
  createdBy: string;
}

describe("resource pools: a resource another request releases", () => {
  let current: AnyPool;
  const server = createServer(
    withContext(async (req, res) => {
      const own = requestId.get();
      const resource =
        req.url === "/then"
          ? await current.acquire().then((r) => {
              seenInThen.set(own, requestId.get());
              return r;
            })
          : await current.acquire();
      const afterAcquire = requestId.get();
      if (req.url === "/hold") onHeld();
      await (req.url === "/hold" ? sleep(20) : randomDelay(3)); // held: later requests queue behind it
      current.release(resource);
      res.end(JSON.stringify({ own, afterAcquire, createdBy: resource.createdBy } satisfies Seen));
    }),
  );
  const seenInThen = new Map<string, string>();
  let onHeld = () => {};
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(() => close(server));

  for (const [name, make] of Object.entries(pools)) {
    it(`${name}: 80 requests over 2 resources each see their own id after acquire, with await or then(cb)`, async () => {
      current = make(2);
      seenInThen.clear();
      const agent = keepAliveAgent();
      try {
        const replies = await Promise.all(
          Array.from({ length: 80 }, (_, i) =>
            send(base, i % 2 ? "/then" : "/await", {
              agent,
              headers: { "x-request-id": `${name}-${i}` },
            }),
          ),
        );
        const seen = replies.map((reply) => JSON.parse(reply.body) as Seen);
        for (const [i, s] of seen.entries()) {
          assert.deepEqual([s.own, s.afterAcquire], [`${name}-${i}`, `${name}-${i}`]);
        }
        assert.equal(seenInThen.size, 40);
        for (const [own, inThen] of seenInThen) assert.equal(inThen, own);
        const handedOver = seen.filter((s) => s.createdBy !== s.own).length;
        assert.ok(handedOver >= 70, `resources were reused across requests (${handedOver} of 80)`);
        // create ran inside one of the requests: the resource carries that request's Context
        const creators = new Set(seen.map((s) => s.createdBy));
        assert.ok(creators.size <= 2 && [...creators].every((c) => c.startsWith(`${name}-`)));
      } finally {
        agent.destroy();
        await current.end();
      }
    });
  }

  it("pinned: generic-pool runs validate for a waiting request inside the releasing one", async () => {
    const validatedIn: string[] = [];
    current = pools["generic-pool"](1, {
      validate: async () => {
        validatedIn.push(requestId.get("<none>"));
        return true;
      },
    });
    const agent = keepAliveAgent();
    try {
      const held = new Promise<void>((resolve) => {
        onHeld = resolve;
      });
      const a = send(base, "/hold", { agent, headers: { "x-request-id": "holder" } });
      await held; // the holder has the only resource, for 20 ms
      const b = send(base, "/await", { agent, headers: { "x-request-id": "waiter" } });
      const [, waiter] = (await Promise.all([a, b])).map((r) => JSON.parse(r.body) as Seen);
      assert.deepEqual(waiter, { own: "waiter", afterAcquire: "waiter", createdBy: "holder" });
      assert.deepEqual(
        validatedIn,
        ["holder", "holder"],
        "the waiter's borrow was validated in the holder",
      );
    } finally {
      agent.destroy();
      await current.end();
    }
  });

  it("pinned: tarn destroys an idle resource in the request that started its reaping, after it ended", async () => {
    const destroyedIn: string[] = [];
    current = pools.tarn(1, {
      destroy: async () => void destroyedIn.push(requestId.get("<none>")),
    });
    try {
      const reply = await send(base, "/await", { headers: { "x-request-id": "long-gone" } });
      assert.equal(reply.status, 200);
      // idle for longer than idleTimeoutMillis: the next reap destroys it
      for (let waited = 0; destroyedIn.length === 0 && waited < 2_000; waited += 10)
        await sleep(10);
      assert.deepEqual(destroyedIn, ["long-gone"]);
    } finally {
      await current.end();
    }
  });

  for (const [name, make] of Object.entries(pools)) {
    it(`${name}: factory functions bound at startup run outside every request`, async () => {
      const destroyedIn: string[] = [];
      const validatedIn: string[] = [];
      current = make(1, {
        create: bind(createHere),
        destroy: bind(async () => void destroyedIn.push(requestId.get("<none>"))),
        validate: bind(async () => {
          validatedIn.push(requestId.get("<none>"));
          return true;
        }),
      });
      const agent = keepAliveAgent();
      try {
        const replies = await Promise.all(
          ["a", "b", "c"].map((id) =>
            send(base, "/await", { agent, headers: { "x-request-id": `${name}-${id}` } }),
          ),
        );
        for (const [i, reply] of replies.entries()) {
          const own = `${name}-${"abc"[i]}`;
          assert.deepEqual(JSON.parse(reply.body), { own, afterAcquire: own, createdBy: "<none>" });
        }
        await sleep(60);
        await current.end();
        assert.ok(
          destroyedIn.length > 0 && destroyedIn.every((c) => c === "<none>"),
          `${destroyedIn}`,
        );
        assert.ok(
          validatedIn.every((c) => c === "<none>"),
          `${validatedIn}`,
        );
      } finally {
        agent.destroy();
      }
    });
  }
});
