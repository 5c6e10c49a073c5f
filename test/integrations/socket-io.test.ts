/**
 * socket.io 4 on a real server (127.0.0.1) with real socket.io-client
 * clients, over the websocket transport, the polling one, and polling
 * upgraded to websocket (the client's default), with `withSocketContext`
 * from contextvars/socket.io, as docs/integrations.md#socketio describes.
 *
 * socket.io runs middleware, `connection` and every event from the
 * transport that delivered the packet: a polling POST, or the WebSocket's
 * socket. `withSocketContext` gives each engine.io request and upgrade its
 * Context (`withContext`, `withUpgradeContext`), runs every packet of a
 * connection in a copy of the handshake request's Context, and binds each
 * socket before the app's `connection` listeners: each event runs in a
 * fresh copy of the Context `connection` ran in. Acknowledgement callbacks
 * and packet middleware are bound by the app.
 */
import assert from "node:assert/strict";
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { bind, ContextVar } from "contextvars";
import { requestId, withContext } from "contextvars/http";
import { withSocketContext } from "contextvars/socket.io";
import { Server, type Socket } from "socket.io";
import { type Socket as ClientSocket, io as connectClient } from "socket.io-client";
import { close, listen, randomDelay, send, UUID } from "../helpers/http.ts";

const user = new ContextVar<string>("socket.io.user");
/** Each event adds one; a fresh copy per event never sees another's. */
const count = new ContextVar<number>("socket.io.count");
/** Set in the Context the servers are made and listen in, and nowhere else. */
const where = new ContextVar<string>("socket.io.where");

type Transport = "websocket" | "polling";
/** How socket.io gets its server. */
type Made = "new Server(httpServer)" | "io.attach(httpServer)" | "new Server(port)";

/** `<id>|<user>|<count>|<where>` */
function values(): string {
  return `${requestId.get("-")}|${user.get("-")}|${count.get(0)}|${where.get("-")}`;
}

interface Seen {
  /** requestId at engine.io's `connection`, by the client's user. */
  handshake: Map<string, string>;
  /** tag -> user -> what each call saw */
  calls: Map<string, Map<string, string[]>>;
}

function record(into: Seen, tag: string, who: string): void {
  const byUser = into.calls.get(tag) ?? new Map<string, string[]>();
  into.calls.set(tag, byUser);
  byUser.set(who, [...(byUser.get(who) ?? []), values()]);
}

/** `withSocketContext` as docs/integrations.md#socketio shows it, on a server that also serves an app. */
function buildWithHelper(seen: Seen, made: Made): { server: HttpServer; io: Server } {
  const options = { connectionStateRecovery: {} };
  const { server, io } = where.run("server", () => {
    if (made === "new Server(port)") {
      // socket.io makes the server and listens on it (on every interface).
      const io = new Server(0, options);
      return { server: io.httpServer as HttpServer, io };
    }
    const server = createServer(
      withContext((_req, res) => {
        res.end(`app ${requestId.get()}`);
      }),
    );
    if (made === "new Server(httpServer)") return { server, io: new Server(server, options) };
    const io = new Server(options);
    io.attach(server);
    return { server, io };
  });
  withSocketContext(io);
  io.engine.on("connection", (conn: { request: { headers: Record<string, unknown> } }) => {
    seen.handshake.set(String(conn.request.headers["x-user"]), requestId.get("-"));
  });
  io.use(async (socket, next) => {
    await randomDelay();
    user.set(String(socket.handshake.auth.user));
    socket.data.user = user.get();
    record(seen, "io.use", user.get());
    next();
  });
  io.on("connection", onConnection);
  function onConnection(socket: Socket): void {
    // A recovered session skips io.use: its user comes back from socket.data.
    if (socket.recovered) user.set(socket.data.user);
    const who = user.get("-");
    record(seen, "connection", who);
    socket.use(
      bind((_packet, next) => {
        count.set(count.get(0) + 1); // in the event's own copy: the handler must not see it
        record(seen, "socket.use", who);
        next();
      }),
    );
    socket.join("room");
    socket.on("work", async (n: number, ack: (reply: string) => void) => {
      count.set(count.get(0) + 1);
      await randomDelay();
      await new Promise((resolve) => setTimeout(resolve, n % 3));
      await new Promise((resolve) => setImmediate(resolve));
      record(seen, "work", who);
      ack(values());
    });
    socket.on("shout", async (ack: (replies: string[]) => void) => {
      // A broadcast's acks come back on the other clients' transports: the
      // callback runs where the last one arrived, unless it is bound.
      const broadcast = (wrap: (callback: () => void) => () => void) =>
        new Promise<string>((resolve) =>
          socket.broadcast.timeout(5_000).emit(
            "shouted",
            who,
            wrap(() => resolve(values())),
          ),
        );
      ack([await broadcast(bind), await broadcast((callback) => callback)]);
    });
    socket.on("disconnect", () => record(seen, "disconnect", who));
    socket.emit(
      "hello",
      bind(() => record(seen, "hello ack", who)),
    );
    // Unbound, an ack callback runs in a copy of the handshake's Context: its id, not what io.use set.
    socket.emit("hello", () => record(seen, "plain hello ack", who));
  }
  return { server, io };
}

function freshSeen(): Seen {
  return { handshake: new Map(), calls: new Map() };
}

async function connect(
  base: string,
  who: string,
  transports: Transport[],
  id: string | undefined,
): Promise<ClientSocket> {
  const client = connectClient(base, {
    transports,
    forceNew: true,
    reconnection: false,
    auth: { user: who },
    extraHeaders: { "x-user": who, ...(id === undefined ? {} : { "x-request-id": id }) },
  });
  client.on("hello", (ack: () => void) => ack());
  client.on("shouted", (_from: string, ack: () => void) => ack());
  await new Promise<void>((resolve, reject) => {
    client.once("connect", resolve);
    client.once("connect_error", reject);
  });
  return client;
}

/** Polls until `check` holds, for up to 20 s (a loaded machine is slow): the assertions after it say what is missing. */
async function waitFor(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check() && Date.now() < deadline) await sleep(10);
}

const TRANSPORTS: [string, Transport[]][] = [
  ["websocket", ["websocket"]],
  ["polling", ["polling"]],
  ["polling upgraded to websocket", ["polling", "websocket"]],
];

const SUITES: [string, Transport[], Made][] = [
  ...TRANSPORTS.map(([name, transports]): [string, Transport[], Made] => [
    name,
    transports,
    "new Server(httpServer)",
  ]),
  ["polling upgraded to websocket", ["polling", "websocket"], "io.attach(httpServer)"],
  ["polling upgraded to websocket", ["polling", "websocket"], "new Server(port)"],
];

async function listening(server: HttpServer): Promise<string> {
  if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

for (const [name, transports, made] of SUITES) {
  describe(`socket.io 4 with withSocketContext, ${made}, ${name}`, { timeout: 60_000 }, () => {
    const seen = freshSeen();
    const { server, io } = buildWithHelper(seen, made);
    let base = "";
    before(async () => {
      base =
        made === "new Server(port)"
          ? await listening(server)
          : await where.run("listen", () => listen(server));
    });
    after(async () => {
      io.close();
      await close(server).catch(() => {});
    });

    it("12 clients, 6 interleaved events each: every event sees its connection's handshake id and user, in its own copy", async () => {
      const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
      // Half send an id; the others get a UUID at the handshake, and each
      // later polling request gets one of its own that no event may see.
      const ids = users.map((who, i) => (i % 2 === 0 ? `sio-${who}` : undefined));
      const clients = await Promise.all(
        users.map((who, i) => connect(base, who, transports, ids[i])),
      );
      try {
        const replies = await Promise.all(
          clients.map((client) =>
            Promise.all(
              Array.from({ length: 6 }, async (_, n) => {
                await randomDelay();
                return client.emitWithAck("work", n) as Promise<string>;
              }),
            ),
          ),
        );
        const shouts = await Promise.all(
          clients.slice(0, 3).map((client) => client.emitWithAck("shout") as Promise<string[]>),
        );
        await Promise.all(clients.map((client) => client.disconnect()));
        await waitFor(() => seen.calls.get("disconnect")?.size === users.length);

        users.forEach((who, i) => {
          const id = seen.handshake.get(who) ?? "";
          if (ids[i] === undefined) assert.match(id, UUID);
          else assert.equal(id, ids[i]);
          const connection = `${id}|${who}|0|-`;
          assert.deepEqual(replies[i], Array(6).fill(`${id}|${who}|1|-`), `${who}'s events`);
          if (i < 3) {
            const [bound, plain] = shouts[i] ?? [];
            assert.equal(bound, connection, `${who}'s bound broadcast ack callback`);
            assert.notEqual(
              plain?.split("|")[0],
              id,
              "a plain one runs in another client's request",
            );
            assert.equal(plain?.split("|")[1], "-");
          }
          assert.deepEqual(seen.calls.get("io.use")?.get(who), [connection]);
          assert.deepEqual(seen.calls.get("connection")?.get(who), [connection]);
          assert.deepEqual(seen.calls.get("hello ack")?.get(who), [connection]);
          assert.deepEqual(seen.calls.get("plain hello ack")?.get(who), [`${id}|-|0|-`]);
          assert.deepEqual(seen.calls.get("disconnect")?.get(who), [connection]);
          const packets = seen.calls.get("socket.use")?.get(who) ?? [];
          assert.equal(packets.length, i < 3 ? 7 : 6);
          assert.deepEqual(new Set(packets), new Set([`${id}|${who}|1|-`]));
        });
      } finally {
        for (const client of clients) client.disconnect();
      }
    });

    // Over polling alone a dropped connection is noticed only at the ping timeout.
    const dropped = transports.includes("websocket") ? it : it.skip;
    dropped(
      "a session recovered after its connection dropped skips io.use: connection restores the user, in the new handshake's Context",
      async () => {
        const sockets = new Set<Duplex>();
        const track = (socket: Duplex) => sockets.add(socket);
        server.on("connection", track);
        const client = connectClient(base, {
          transports,
          forceNew: true,
          reconnectionDelay: 20,
          auth: { user: "phoenix" },
          extraHeaders: { "x-user": "phoenix" },
        });
        try {
          client.on("hello", (ack: () => void) => ack());
          await new Promise((resolve) => client.once("connect", () => resolve(null)));
          const first = seen.handshake.get("phoenix");
          // Dropped while still polling, it would be noticed only at the ping timeout.
          if (client.io.engine.transport.name !== "websocket") {
            await new Promise((resolve) => client.io.engine.once("upgrade", resolve));
          }
          // Recovery replays what was broadcast since: the client needs an offset.
          const ticked = new Promise((resolve) => client.once("tick", resolve));
          io.emit("tick");
          await ticked;
          const reconnected = new Promise((resolve) => client.once("connect", () => resolve(null)));
          for (const socket of sockets) socket.destroy();
          await reconnected;
          assert.equal(client.recovered, true);
          const second = seen.handshake.get("phoenix") ?? "";
          assert.notEqual(second, first);
          assert.match(second, UUID);
          assert.equal(await client.emitWithAck("work", 0), `${second}|phoenix|1|-`);
        } finally {
          server.off("connection", track);
          client.disconnect();
        }
      },
    );

    const served = made === "new Server(port)" ? it.skip : it;
    served("the app's own requests beside it still get their Context", async () => {
      const reply = await send(base, "/app", { headers: { "x-request-id": "app-1" } });
      assert.equal(reply.body, "app app-1");
      assert.equal(reply.headers["x-request-id"], "app-1");
      // engine.io's own polling handshake echoes its id, as withContext does.
      const handshake = await send(base, "/socket.io/?EIO=4&transport=polling", {
        headers: { "x-request-id": "handshake-1" },
      });
      assert.match(handshake.body, /^0\{"sid":/);
      assert.equal(handshake.headers["x-request-id"], "handshake-1");
    });
  });
}

describe("socket.io-client 4", { timeout: 30_000 }, () => {
  const server = createServer();
  const io = new Server(server);
  io.on("connection", (socket) => {
    socket.emit("tick");
    socket.on("ask", (ack: (reply: string) => void) => setTimeout(() => ack("ok"), 2));
  });
  let base = "";
  before(async () => {
    base = await listen(server);
  });
  after(async () => {
    io.close();
    await close(server).catch(() => {});
  });

  for (const [name, transports] of TRANSPORTS.slice(0, 2)) {
    it(`${name}: listeners and ack callbacks run in the Context the client was made in; await emitWithAck keeps the caller's`, async () => {
      const ticks: string[] = [];
      const clients = ["a", "b"].map((who) =>
        where.run(who, () => {
          const client = connectClient(base, { transports, forceNew: true, reconnection: false });
          client.on("tick", () => ticks.push(`${who}:${where.get("-")}`));
          return client;
        }),
      );
      try {
        await waitFor(() => ticks.length === 2);
        assert.deepEqual(ticks.sort(), ["a:a", "b:b"]);
        const callbacks = await Promise.all(
          clients.map((client, i) =>
            where.run(`caller ${i}`, () => {
              const plain = new Promise<string>((done) =>
                client.emit("ask", () => done(where.get("-"))),
              );
              const bound = new Promise<string>((done) =>
                client.emit(
                  "ask",
                  bind(() => done(where.get("-"))),
                ),
              );
              const awaited = client.emitWithAck("ask").then(() => where.get("-"));
              return Promise.all([plain, bound, awaited]);
            }),
          ),
        );
        assert.deepEqual(callbacks, [
          ["a", "caller 0", "caller 0"],
          ["b", "caller 1", "caller 1"],
        ]);
      } finally {
        for (const client of clients) client.disconnect();
      }
    });
  }
});

describe("withSocketContext and namespaces", { timeout: 30_000 }, () => {
  it("a namespace made before the call, one made after, and a dynamic one's children: each event sees its own connection's user", async () => {
    const server = createServer();
    const io = new Server(server);
    const before = io.of("/before");
    withSocketContext(io);
    const later = io.of("/after");
    const dynamic = io.of(/^\/dyn-\d+$/);
    for (const namespace of [before, later, dynamic]) {
      namespace.use(async (socket, next) => {
        await randomDelay();
        user.set(`${socket.nsp.name}:${String(socket.handshake.auth.user)}`);
        next();
      });
      namespace.on("connection", (socket) => {
        socket.on("ask", async (ack: (reply: string) => void) => {
          await randomDelay();
          ack(values());
        });
      });
    }
    const base = await listen(server);
    const clients: ClientSocket[] = [];
    try {
      const asks = ["/before", "/after", "/dyn-1", "/dyn-2"].flatMap((name) =>
        ["a", "b"].map(async (who) => {
          const client = connectClient(`${base}${name}`, {
            transports: ["websocket"],
            forceNew: true,
            reconnection: false,
            auth: { user: who },
            extraHeaders: { "x-request-id": `${name.slice(1)}-${who}` },
          });
          clients.push(client);
          await new Promise<void>((resolve, reject) => {
            client.once("connect", resolve);
            client.once("connect_error", reject);
          });
          return [name, who, await client.emitWithAck("ask")];
        }),
      );
      for (const [name, who, reply] of await Promise.all(asks)) {
        assert.equal(reply, `${name?.slice(1)}-${who}|${name}:${who}|0|-`);
      }
    } finally {
      for (const client of clients) client.disconnect();
      io.close();
      await close(server).catch(() => {});
    }
  });
});

describe("withSocketContext and a later engine", { timeout: 30_000 }, () => {
  it("io.attach to a second server, and io.listen after io.close(): their connections get their Contexts too", async () => {
    const io = new Server();
    io.use((socket, next) => {
      user.set(String(socket.handshake.auth.user));
      next();
    });
    io.on("connection", (socket) => {
      socket.on("ask", (ack: (reply: string) => void) => ack(values()));
    });
    const servers = [createServer(), createServer(), createServer()];
    io.attach(servers[0]);
    withSocketContext(io);
    const ask = async (base: string, who: string): Promise<string> => {
      const client = connectClient(base, {
        transports: ["websocket"],
        forceNew: true,
        reconnection: false,
        auth: { user: who },
        extraHeaders: { "x-request-id": `later-${who}` },
      });
      try {
        await new Promise<void>((resolve, reject) => {
          client.once("connect", resolve);
          client.once("connect_error", reject);
        });
        return (await client.emitWithAck("ask")) as string;
      } finally {
        client.disconnect();
      }
    };
    try {
      const first = await listen(servers[0]);
      assert.equal(await ask(first, "a"), "later-a|a|0|-");
      // socket.io makes a new engine.io server for each attach.
      io.attach(servers[1]);
      const second = await listen(servers[1]);
      assert.equal(await ask(second, "b"), "later-b|b|0|-");
      assert.equal(await ask(first, "c"), "later-c|c|0|-");
      await io.close();
      // io.listen is io.attach by another name.
      io.listen(servers[2]);
      assert.equal(await ask(await listen(servers[2]), "d"), "later-d|d|0|-");
      assert.equal(user.get("-"), "-", "nothing reached the test's Context");
      assert.throws(() => withSocketContext(io), /already called for this socket.io Server/);
    } finally {
      await io.close();
      for (const server of servers) await close(server).catch(() => {});
    }
  });
});

describe("withSocketContext refuses", () => {
  it("a Server with no engine yet, anything but a Server, and a second call", () => {
    const io = new Server();
    assert.throws(
      () => withSocketContext(io),
      (error: Error) =>
        error instanceof TypeError &&
        /no engine yet: call it after new Server\(httpServer\), new Server\(port\) or io.attach\(httpServer\)$/.test(
          error.message,
        ),
    );
    for (const value of [undefined, {}, createServer()]) {
      assert.throws(
        () => withSocketContext(value as never),
        (error: Error) =>
          error instanceof TypeError &&
          /^Expected `io` to be a socket.io Server, got /.test(error.message),
      );
    }
    const server = createServer();
    io.attach(server);
    assert.throws(() => withSocketContext(io, { echo: "yes" as never }), TypeError);
    withSocketContext(io);
    assert.throws(() => withSocketContext(io), /already called for this socket.io Server/);
    io.close();
  });
});

// Last in the file: over websocket, what io.use sets lands in the root Context.
describe("socket.io 4 without withSocketContext", { timeout: 30_000 }, () => {
  for (const [name, transports, runsIn] of [
    ["polling", ["polling"], "listen"],
    ["websocket", ["websocket"], "-"],
  ] as const) {
    it(`${name}: io.use runs in ${runsIn === "-" ? "the root Context" : "the Context the server listens in"}, and a user set there reaches another client's connection and events`, async () => {
      const server = createServer();
      const io = new Server(server);
      const saw: string[] = [];
      const tokens: ReturnType<typeof user.set>[] = [];
      io.use((socket, next) => {
        saw.push(`io.use:${where.get("-")}:${user.get("-")}`);
        if (socket.handshake.auth.user !== undefined) {
          tokens.push(user.set(String(socket.handshake.auth.user)));
        }
        next();
      });
      io.on("connection", (socket) => {
        saw.push(`connection:${user.get("-")}`);
        socket.on("ask", (ack: (reply: string) => void) => ack(user.get("-")));
      });
      const base = await where.run("listen", () => listen(server));
      const first = await connect(base, "alice", [...transports], undefined);
      const second = connectClient(base, {
        transports: [...transports],
        forceNew: true,
        reconnection: false,
      });
      try {
        await new Promise<void>((resolve) => second.once("connect", resolve));
        assert.equal(await second.emitWithAck("ask"), "alice");
        assert.deepEqual(saw, [
          `io.use:${runsIn}:-`,
          "connection:alice",
          `io.use:${runsIn}:alice`,
          "connection:alice",
        ]);
        if (runsIn === "-") {
          // node:test runs a test in the root Context: it sees the leak too.
          assert.equal(user.get("-"), "alice");
          for (const token of tokens.reverse()) user.reset(token);
        }
        assert.equal(user.get("-"), "-");
      } finally {
        first.disconnect();
        second.disconnect();
        io.close();
        await close(server).catch(() => {});
      }
    });
  }
});
