/**
 * mongoose 9: a Query is a thenable, and a model used before its connection
 * is open buffers the operation until it opens (or `bufferTimeoutMS` runs
 * out). Eight requests at once, each with its own value of `v`:
 *
 * - buffered against a port where nothing listens, each request's
 *   rejection (after `bufferTimeoutMS`) reaches its own Context: through
 *   `await`, a Query's `then`, createTask and gather; a `pre("find")` hook
 *   runs in the request that ran the query;
 * - buffered, then run once a connection opened in another Context (a
 *   stand-in for mongod on 127.0.0.1, fixtures/mongo-wire.ts, answering in
 *   reverse order), each request gets its own document and resumes in its
 *   own Context, in `await`, `query.then` and `exec().then` callbacks and a
 *   `post("find")` hook; the connection's `connected` listener runs in the
 *   Context that opened it (an EventEmitter's listener runs where `emit` is
 *   called).
 *
 * Not tested here: a real mongod (none on this machine), replica sets,
 * change streams and cursors.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { Context, ContextVar, createTask, gather } from "contextvars";
import mongoose from "mongoose";
import { type MongoWire, startMongoWire } from "./fixtures/mongo-wire.ts";

const v = new ContextVar<string>("v", { default: "none" });
const REQUESTS = 8;

/** Runs `body(id)` in REQUESTS fresh Contexts at once, each with `v` set to its id. */
function requests<T>(body: (id: string) => Promise<T>): Promise<T[]> {
  return Promise.all(
    Array.from({ length: REQUESTS }, (_, i) =>
      new Context().run(() => {
        const id = `r${i}`;
        v.set(id);
        return body(id);
      }),
    ),
  );
}

/** A 127.0.0.1 port that was free a moment ago: nothing listens on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

describe("mongoose 9: buffered operations", () => {
  let wire: MongoWire;
  // Closed in after(), so that a failing test leaves no driver retrying a connection.
  const connections: mongoose.Connection[] = [];
  const connection = () => {
    const conn = mongoose.createConnection();
    connections.push(conn);
    return conn;
  };

  before(async () => {
    // r0 is answered last, r7 first.
    wire = await startMongoWire((comment) => 2 * (REQUESTS - Number(comment.slice(1))));
  });

  after(async () => {
    await Promise.all(connections.map((conn) => conn.close(true)));
    await wire.close();
  });

  it("buffered against a port where nothing listens: each request's rejection, and its pre hook, in its own Context", async () => {
    const conn = connection();
    const schema = new mongoose.Schema({ name: String }, { bufferTimeoutMS: 100 });
    const preSaw: boolean[] = [];
    schema.pre("find", function () {
      preSaw.push(v.get() === this.getOptions().comment);
    });
    const Item = conn.model("Item", schema);
    const port = await closedPort();
    const opening = new Context().run(() => {
      v.set("opener");
      return conn
        .openUri(`mongodb://127.0.0.1:${port}/test`, {
          serverSelectionTimeoutMS: 300,
        })
        .then(
          () => "opened",
          () => v.get(),
        );
    });
    const own = await requests(async (id) => {
      const checks: boolean[] = [];
      try {
        await Item.find().comment(id);
      } catch (error) {
        checks.push(/buffering timed out/.test(String(error)) && v.get() === id);
      }
      await Item.find()
        .comment(id)
        .then(
          () => checks.push(false),
          () => checks.push(v.get() === id),
        );
      await createTask(() => Item.find().comment(id)).catch(() => checks.push(v.get() === id));
      await gather(
        () => Item.find().comment(id),
        () => Item.countDocuments(),
      ).catch(() => checks.push(v.get() === id));
      return checks;
    });
    assert.deepEqual(own.flat(), Array(4 * REQUESTS).fill(true));
    assert.deepEqual(preSaw, Array(4 * REQUESTS).fill(true));
    assert.equal(await opening, "opener", "openUri rejects in the Context that called it");
  });

  it("buffered, then run on a connection opened in another Context: each request resumes in its own with its own document", async () => {
    const conn = connection();
    const schema = new mongoose.Schema({ name: String });
    const postSaw: boolean[] = [];
    schema.post("find", (docs: Array<{ name?: string | null }>) => {
      postSaw.push(docs[0]?.name === v.get());
    });
    const Item = conn.model("Item", schema);
    const connectedSaw: string[] = [];
    conn.on("connected", () => connectedSaw.push(v.get()));
    const findsBefore = wire.finds;

    const served = requests(async (id) => {
      const checks: boolean[] = [];
      const [doc] = await Item.find().comment(id);
      checks.push(doc?.name === id && v.get() === id);
      await Item.find()
        .comment(id)
        .then((docs) => checks.push(docs[0]?.name === id && v.get() === id));
      await Item.find()
        .comment(id)
        .exec()
        .then((docs) => checks.push(docs[0]?.name === id && v.get() === id));
      const [fromTask] = await createTask(() => Item.find().comment(id));
      checks.push(fromTask?.name === id && v.get() === id);
      return checks;
    });
    // Every request's first find is buffered before the connection opens.
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(wire.finds, findsBefore);
    await new Context().run(() => {
      v.set("opener");
      return conn.openUri(wire.uri, { serverSelectionTimeoutMS: 2_000 });
    });

    assert.deepEqual((await served).flat(), Array(4 * REQUESTS).fill(true));
    assert.deepEqual(postSaw, Array(4 * REQUESTS).fill(true));
    assert.deepEqual(connectedSaw, ["opener"]);
    assert.equal(wire.finds - findsBefore, 4 * REQUESTS);
  });
});
