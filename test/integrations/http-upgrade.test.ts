/**
 * withUpgradeContext on a real node:http server (127.0.0.1) with a real
 * `ws` WebSocketServer({ noServer: true }) and real `ws` clients: every
 * upgrade runs in its own copy of the root Context, and the WebSocket's
 * `message`, `ping`, `pong`, `error` and `close` events, which `ws` emits
 * from the socket's own listeners, reach user listeners in it. One raw upgrade (no `ws`)
 * shows the socket's `data`, `end` and `close` listeners on their own.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { bind, type Context, ContextVar, copyContext, type Token } from "contextvars";
import { requestId, withUpgradeContext } from "contextvars/http";
import { WebSocket, WebSocketServer } from "ws";
import { close, listen, randomDelay, UUID } from "../helpers/http.ts";
import { leak, seedUser, setThenReject, setThenThrow, user } from "../helpers/request-scenario.ts";
import { listenWs } from "../helpers/websocket-scenario.ts";

// Set at the root before any server exists: every upgrade's Context is a copy of the root.
const service = new ContextVar<string>("service");
service.set("chat-api");

/** What a handler reads: `<id>|<user>|<service>|<leak>`. */
function values(): string {
  return `${requestId.get("<none>")}|${user.get("<none>")}|${service.get()}|${leak.get("unset")}`;
}

// Every client opened, terminated after each suite: one a failed test left open
// would otherwise keep its server from closing.
const opened = new Set<WebSocket>();

function terminateAll(wss: WebSocketServer): void {
  for (const ws of [...opened, ...wss.clients]) ws.terminate();
  opened.clear();
  wss.close();
}

/**
 * Opens a ws client; resolves once open, with the upgrade response's
 * x-request-id and the first message, which each server here sends from
 * handleUpgrade's callback: what that callback saw.
 */
async function open(url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers });
  opened.add(ws);
  const echoed = new Promise<string | undefined>((resolve) => {
    ws.once("upgrade", (res: IncomingMessage) => resolve(res.headers["x-request-id"] as string));
  });
  // Listened for before "open": the server may send it in the same packet as the 101.
  const greeting = new Promise<string>((resolve) => {
    ws.once("message", (data: Buffer) => resolve(String(data)));
  });
  await once(ws, "open");
  return { ws, echoed: await echoed, greeting: await greeting };
}

/** Sends `text` and resolves with the next message the server sends back. */
async function ask(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, "message");
  ws.send(text);
  const [data] = (await reply) as [Buffer];
  return String(data);
}

async function closeClient(ws: WebSocket): Promise<void> {
  const closed = once(ws, "close");
  ws.close();
  await closed;
}

describe("contextvars/http withUpgradeContext", { timeout: 120_000 }, () => {
  const wss = new WebSocketServer({ noServer: true });
  // Echoing the id: ws emits "headers" inside handleUpgrade, so in the upgrade's Context.
  wss.on("headers", (headers) => headers.push(`x-request-id: ${requestId.get()}`));
  const closes: { expected: string; seen: string }[] = [];
  const pongs: { expected: string; seen: string }[] = [];

  const upgrade = withUpgradeContext(
    (req, socket, head) => {
      const url = new URL(req.url ?? "/", "ws://x");
      // Half the clients name their user in the URL, set here rather than by seed.
      const fromUrl = url.searchParams.get("user");
      if (fromUrl !== null) user.set(fromUrl);
      // What this connection's listeners must see, taken from the request, not from the vars.
      const expected = `${req.headers["x-request-id"]}|${fromUrl ?? req.headers["x-user"]}|chat-api|unset`;
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(values());
        ws.on("message", async (data) => {
          const seen = [values()];
          await randomDelay();
          seen.push(values());
          await new Promise((resolve) => setImmediate(resolve));
          seen.push(values());
          // A timer started by the handler keeps the Context too.
          setTimeout(
            () => ws.send(JSON.stringify({ echo: String(data), seen: [...seen, values()] })),
            Math.random() * 3,
          );
        });
        ws.on("pong", () => pongs.push({ expected, seen: values() }));
        ws.on("close", () => closes.push({ expected, seen: values() }));
        if (url.pathname === "/ping") ws.ping();
      });
    },
    { seed: (req) => seedUser(req.headers["x-user"]) },
  );
  // Created inside a run with `leak` set: upgrades must not see it.
  const server = leak.run("the server's own Context", () => createServer());
  server.on("upgrade", upgrade);
  let base = "";
  before(async () => {
    base = await listenWs(server);
  });
  after(async () => {
    terminateAll(wss);
    await close(server);
  });

  it("200 concurrent connections: every message, timer, pong and close sees its own upgrade", async () => {
    const count = 200;
    const expectedOf = (i: number) => `conn-${i}|user-${i}|chat-api|unset`;
    const clients = Array.from({ length: count }, async (_, i) => {
      const path = i % 2 === 0 ? "/ping" : `/ping?user=user-${i}`;
      const headers: Record<string, string> = { "x-request-id": `conn-${i}` };
      if (i % 2 === 0) headers["x-user"] = `user-${i}`;
      const { ws, echoed, greeting } = await open(`${base}${path}`, headers);
      assert.equal(echoed, `conn-${i}`);
      assert.equal(greeting, expectedOf(i));
      const replies: Promise<string>[] = [];
      for (let m = 0; m < 5; m++) {
        await randomDelay();
        replies.push(ask(ws, `m${m}`));
        await replies[m];
      }
      for (const [m, reply] of (await Promise.all(replies)).entries()) {
        assert.deepEqual(JSON.parse(reply), { echo: `m${m}`, seen: Array(4).fill(expectedOf(i)) });
      }
      await closeClient(ws);
    });
    await Promise.all(clients);
    for (let tries = 0; tries < 100 && closes.length < count; tries++) await randomDelay(10);
    assert.equal(closes.length, count, "every server-side close listener ran");
    assert.equal(pongs.length, count, "every pong listener ran");
    for (const { expected, seen } of [...closes, ...pongs]) assert.equal(seen, expected);
    const seenIds = new Set(closes.map(({ seen }) => seen.split("|")[0]));
    assert.equal(seenIds.size, count);
    assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
  });

  it("no header: a fresh UUID; a malformed one is replaced; the echo carries it", async () => {
    const wellFormed = "a.b:c=d+e/f_g";
    const cases: Record<string, string>[] = [
      {},
      { "x-request-id": "x".repeat(201) },
      { "x-request-id": "has spaces" },
      { "x-request-id": '"quoted"' },
      { "x-request-id": wellFormed },
    ];
    const ids = new Set<string>();
    for (const headers of cases) {
      const { ws, echoed, greeting } = await open(`${base}/`, headers);
      const [id = ""] = greeting.split("|");
      if (headers["x-request-id"] === wellFormed) assert.equal(id, wellFormed);
      else assert.match(id, UUID, JSON.stringify(headers));
      assert.equal(echoed, id);
      ids.add(id);
      await closeClient(ws);
    }
    assert.equal(ids.size, cases.length, "each connection got its own id");
  });
});

describe("withUpgradeContext: failures, nesting, a raw upgrade", { timeout: 60_000 }, () => {
  it("a listener that throws or rejects leaves no Context behind", async () => {
    const wss = new WebSocketServer({ noServer: true });
    const failures: unknown[] = [];
    const outerSaw: string[] = [];
    const wrapped = withUpgradeContext(
      (req, socket, head) => {
        if (req.url === "/throw") setThenThrow();
        if (req.url === "/reject") return setThenReject();
        wss.handleUpgrade(req, socket, head, (ws) => ws.send(values()));
        return undefined;
      },
      { seed: (req) => seedUser(req.headers["x-user"]) },
    );
    // Listening at the root: a set that escaped the wrapper would land in the root Context.
    const server = createServer();
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      outerSaw.push(values());
      const fail = (error: unknown) => {
        failures.push(error);
        socket.destroy();
      };
      try {
        const result: unknown = wrapped(req, socket, head);
        if (result instanceof Promise) result.catch(fail);
      } catch (error) {
        fail(error);
      }
    });
    const base = (await listen(server)).replace("http", "ws");
    try {
      for (const path of ["/throw", "/reject"]) {
        const ws = new WebSocket(`${base}${path}`, { headers: { "x-request-id": "fails" } });
        const [error] = await once(ws, "error");
        assert.match(String(error), /socket hang up|ECONNRESET|closed/i);
        const { ws: next, greeting } = await open(`${base}/`, { "x-request-id": `after${path}` });
        assert.equal(greeting, `after${path}|anonymous|chat-api|unset`);
        await closeClient(next);
      }
      assert.deepEqual(
        failures.map((e) => (e as Error).message),
        ["thrown", "rejected"],
      );
      assert.deepEqual(
        outerSaw,
        Array(4).fill("<none>|<none>|chat-api|unset"),
        "the root Context is unchanged",
      );
      assert.equal(leak.get("unset"), "unset");
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("a WebSocket's ping and error listeners see the upgrade's values", async () => {
    const wss = new WebSocketServer({ noServer: true });
    const seen: string[] = [];
    let onError = () => {};
    const errored = new Promise<void>((resolve) => {
      onError = resolve;
    });
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (req, socket, head) => {
          wss.handleUpgrade(req, socket, head, (ws) => {
            ws.on("ping", () => {
              seen.push(`ping ${values()}`);
              ws.send("pinged");
            });
            // An unmasked frame from a client is a protocol error ws reports on the server's socket.
            ws.on("error", () => {
              seen.push(`error ${values()}`);
              onError();
            });
            ws.send(values());
          });
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const base = await listenWs(server);
    try {
      const { ws } = await open(base, { "x-request-id": "pings", "x-user": "pat" });
      const pinged = once(ws, "message");
      ws.ping();
      await pinged;
      // The raw socket under the client: one unmasked text frame, "hi".
      (ws as unknown as { _socket: Duplex })._socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]));
      await errored;
      assert.deepEqual(seen, ["ping pings|pat|chat-api|unset", "error pings|pat|chat-api|unset"]);
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("withUpgradeContext(withUpgradeContext(listener)) gives one Context per upgrade", async () => {
    const wss = new WebSocketServer({ noServer: true });
    const marker = new ContextVar<string>("marker");
    let token: Token<string> | undefined;
    const inner = withUpgradeContext((req, socket, head) => {
      marker.reset(token as Token<string>); // throws ERR_TOKEN_CONTEXT_MISMATCH if this is another Context
      wss.handleUpgrade(req, socket, head, (ws) =>
        ws.send(`${values()}|${copyContext().has(marker)}`),
      );
    });
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (req, socket, head) => {
          token = marker.set("outer");
          inner(req, socket, head);
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const base = await listenWs(server);
    try {
      const { ws, greeting } = await open(base, { "x-request-id": "twice", "x-user": "ann" });
      assert.equal(greeting, "twice|ann|chat-api|unset|false");
      await closeClient(ws);
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("a raw upgrade: the socket's data, end and close listeners see the upgrade's values, also after a prependListener", async () => {
    const seen: string[] = [];
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (_req, socket, head) => {
          // As stream.pipe(socket) does first; node:http's own prependListener
          // on the socket would put back the prototype's adders over the bound ones.
          socket.prependListener("error", () => {});
          socket.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
          );
          socket.write(`head:${head}|${values()}\n`);
          socket.on("data", (chunk) => socket.write(`${chunk}|${values()}\n`));
          socket.on("end", () => {
            seen.push(`end|${values()}`);
            socket.end();
          });
          socket.once("close", () => seen.push(`close|${values()}`));
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const { port } = new URL(await listenWs(server));
    try {
      const client = connect(Number(port), "127.0.0.1");
      let text = "";
      let answered: () => void = () => {};
      const headAnswered = new Promise<void>((resolve) => {
        answered = resolve;
      });
      client.setEncoding("utf8");
      client.on("data", (chunk: string) => {
        text += chunk;
        if (text.includes("head:") && text.endsWith("\n")) answered();
        if (text.includes("later|")) client.end();
      });
      const head =
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Request-Id: raw-1\r\nX-User: eve\r\n\r\n";
      client.write(`${head}early`); // bytes after the head reach the listener as `head`
      await once(client, "connect");
      // Only once the listener has answered the head: written earlier, the
      // bytes could reach the server in the same read as the head.
      await headAnswered;
      await randomDelay(10);
      client.write("later");
      await once(client, "close");
      for (let tries = 0; tries < 50 && seen.length < 2; tries++) await randomDelay(10);
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      assert.equal(body, "head:early|raw-1|eve|chat-api|unset\nlater|raw-1|eve|chat-api|unset\n");
      assert.deepEqual(seen, ["end|raw-1|eve|chat-api|unset", "close|raw-1|eve|chat-api|unset"]);
    } finally {
      await close(server);
    }
  });

  it("perMessageDeflate: messages ws inflates through its shared queue may reach a plain listener in another upgrade's Context; one made with bind() sees its own", async () => {
    // ws inflates every connection's messages through one queue per process
    // (concurrencyLimit, 10 by default): a message that waits is inflated,
    // and emitted, from the inflate of whichever connection finished first.
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: { threshold: 0 } });
    const plain: { expected: string; seen: string }[] = [];
    const bound: { expected: string; seen: string }[] = [];
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (req, socket, head) => {
          const expected = `${req.headers["x-request-id"]}|${req.headers["x-user"]}|chat-api|unset`;
          wss.handleUpgrade(req, socket, head, (ws) => {
            ws.on("message", () => plain.push({ expected, seen: values() }));
            ws.on(
              "message",
              bind(() => {
                bound.push({ expected, seen: values() });
                ws.send("ok");
              }),
            );
          });
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const base = await listenWs(server);
    try {
      const clients = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const ws = new WebSocket(base, {
            headers: { "x-request-id": `deflate-${i}`, "x-user": `u${i}` },
          });
          opened.add(ws);
          await once(ws, "open");
          assert.equal(ws.extensions, "permessage-deflate");
          return ws;
        }),
      );
      await Promise.all(
        clients.map(async (ws) => {
          for (let m = 0; m < 5; m++) {
            const reply = once(ws, "message");
            ws.send("x".repeat(1000));
            await reply;
          }
        }),
      );
      assert.equal(bound.length, 200);
      for (const { expected, seen } of bound) assert.equal(seen, expected);
      // How many plain listeners run elsewhere depends on the runtime's zlib
      // and on timing (docs/integrations.md has the figures): not asserted.
      assert.equal(plain.length, 200);
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("a send callback runs in the Context of the code that called send: a broadcast's callbacks see the sender's values, bind(cb, the receiver's Context) the receiver's", async () => {
    const wss = new WebSocketServer({ noServer: true });
    const contexts = new Map<WebSocket, Context>();
    const expectedOf = new Map<WebSocket, string>();
    const plain: { expected: string; seen: string }[] = [];
    const bound: { expected: string; seen: string }[] = [];
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (req, socket, head) => {
          wss.handleUpgrade(req, socket, head, (ws) => {
            // The receiver's Context, kept when its connection opens.
            contexts.set(ws, copyContext());
            expectedOf.set(
              ws,
              `${req.headers["x-request-id"]}|${req.headers["x-user"]}|chat-api|unset`,
            );
            ws.on("message", (data) => {
              const sender = expectedOf.get(ws) as string;
              for (const other of wss.clients) {
                if (other === ws) continue;
                const receiver = expectedOf.get(other) as string;
                other.send(`plain ${data}`, () => plain.push({ expected: sender, seen: values() }));
                other.send(
                  `bound ${data}`,
                  bind(
                    () => bound.push({ expected: receiver, seen: values() }),
                    contexts.get(other),
                  ),
                );
              }
            });
            ws.send("ready");
          });
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const base = await listenWs(server);
    const count = 10;
    try {
      const clients = await Promise.all(
        Array.from({ length: count }, async (_, i) => {
          const { ws } = await open(base, { "x-request-id": `bc-${i}`, "x-user": `u${i}` });
          return ws;
        }),
      );
      const received = clients.map((ws) => {
        let n = 0;
        return new Promise<void>((resolve) => {
          ws.on("message", () => {
            if (++n === 2 * (count - 1)) resolve();
          });
        });
      });
      for (const [i, ws] of clients.entries()) {
        await randomDelay();
        ws.send(`from ${i}`);
      }
      await Promise.all(received);
      const callbacks = 2 * count * (count - 1);
      for (let tries = 0; tries < 50 && bound.length + plain.length < callbacks; tries++) {
        await randomDelay(10);
      }
      assert.equal(plain.length, count * (count - 1));
      assert.equal(bound.length, count * (count - 1));
      for (const { expected, seen } of plain) assert.equal(seen, expected, "the sender's values");
      for (const { expected, seen } of bound) assert.equal(seen, expected, "the receiver's values");
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("perMessageDeflate: a send callback may run in another upgrade's Context, also when the listener that sent was made with bind(); bind(callback) runs it in its own", async () => {
    // ws compresses every connection's outgoing messages through the queue it
    // inflates through: a send that waits is compressed, and its callback
    // called, from whichever connection's deflate finished first.
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: { threshold: 0 } });
    const plain: { expected: string; seen: string }[] = [];
    const bound: { expected: string; seen: string }[] = [];
    const server = createServer();
    server.on(
      "upgrade",
      withUpgradeContext(
        (req, socket, head) => {
          const expected = `${req.headers["x-request-id"]}|${req.headers["x-user"]}|chat-api|unset`;
          wss.handleUpgrade(req, socket, head, (ws) => {
            ws.on(
              "message",
              bind(() => {
                ws.send("x".repeat(1000), () => plain.push({ expected, seen: values() }));
                ws.send(
                  "ok",
                  bind(() => bound.push({ expected, seen: values() })),
                );
              }),
            );
          });
        },
        { seed: (req) => seedUser(req.headers["x-user"]) },
      ),
    );
    const base = await listenWs(server);
    try {
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const ws = new WebSocket(base, {
            headers: { "x-request-id": `deflate-send-${i}`, "x-user": `u${i}` },
          });
          opened.add(ws);
          await once(ws, "open");
          assert.equal(ws.extensions, "permessage-deflate");
          for (let m = 0; m < 5; m++) {
            const replies = new Promise<void>((resolve) => {
              let n = 0;
              const onReply = () => {
                if (++n < 2) return;
                ws.off("message", onReply);
                resolve();
              };
              ws.on("message", onReply);
            });
            ws.send("x".repeat(1000));
            await replies;
          }
        }),
      );
      for (let tries = 0; tries < 50 && bound.length < 200; tries++) await randomDelay(10);
      assert.equal(bound.length, 200);
      for (const { expected, seen } of bound) assert.equal(seen, expected);
      // As for messages, how many plain callbacks run elsewhere depends on
      // the runtime's zlib and on timing (docs/integrations.md): not asserted.
      assert.equal(plain.length, 200);
    } finally {
      terminateAll(wss);
      await close(server);
    }
  });

  it("given to ws's 'connection' event, which passes (ws, req), the wrapper throws saying to wrap the upgrade listener", async () => {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    const wrapped = withUpgradeContext(() => {}) as unknown as (ws: unknown, req: unknown) => void;
    const thrown: unknown[] = [];
    wss.on("connection", (ws, req) => {
      try {
        wrapped(ws, req);
      } catch (error) {
        thrown.push(error);
      }
      ws.close();
    });
    try {
      const client = new WebSocket(await listenWs(server));
      await once(client, "close");
    } finally {
      wss.close();
      await close(server);
    }
    assert.equal(thrown.length, 1);
    assert.ok(thrown[0] instanceof TypeError);
    assert.match(
      thrown[0].message,
      /^withUpgradeContext\(listener\) was called with a first argument that is no request \(ws's "connection" event passes \(ws, req\)\): .*wss\.handleUpgrade\(req, socket, head, …\) from server\.on\("upgrade", withUpgradeContext\(listener, options\)\)$/,
    );
  });

  it("rejects bad options, echo: true and a non-function listener", () => {
    const listener = () => {};
    assert.throws(() => withUpgradeContext(42 as never), TypeError);
    assert.throws(() => withUpgradeContext(listener, 7 as never), /`options`/);
    assert.throws(() => withUpgradeContext(listener, { header: "bad header" }), TypeError);
    assert.throws(() => withUpgradeContext(listener, { header: "Upgrade" }), /options\.header/);
    assert.throws(
      () => withUpgradeContext(listener, { echo: "yes" as never }),
      /options\.echo.*a boolean/,
    );
    assert.throws(
      () => withUpgradeContext(listener, { echo: true as never }),
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /options\.echo.*"headers" event/);
        return true;
      },
    );
    assert.throws(() => withUpgradeContext(listener, { seed: "user" as never }), TypeError);
    assert.throws(
      () => withUpgradeContext(listener, { trustHeader: 0 as never }),
      /options\.trustHeader/,
    );
    assert.throws(
      () => withUpgradeContext(listener, { generateId: "uuid" as never }),
      /options\.generateId/,
    );
    assert.equal(
      typeof withUpgradeContext(listener, { echo: false, trustHeader: false }),
      "function",
    );
  });
});
