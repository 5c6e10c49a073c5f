/**
 * What differs between runtimes, pinned per runtime: the Context that
 * callbacks the runtime itself calls (not code the library wraps) run in.
 * Each expectation is a table by runtime; Node's entry holds for Node 20,
 * 22, 24 and 26 with AsyncContextFrame on and off (the matrix runs this file
 * in every mode and fails if the two modes differ). docs/runtimes.md has a
 * line for each row, and scripts/runtimes/skips.ts lists the Node-pinned
 * tests elsewhere that these differences make fail on Bun or Deno.
 *
 * The two EventEmitter and thenable cases at the end are the same
 * everywhere, and pinned so that a runtime that changes them shows here.
 */
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import { bind, ContextVar } from "contextvars";
import { withUpgradeContext } from "contextvars/http";
import { WebSocket, WebSocketServer } from "ws";
import {
  asyncContextFrame,
  type RuntimeName,
  runFixture,
  runtime,
  runtimeLabel,
} from "./runtime.ts";

const v = new ContextVar<string>("v", { default: "root" });

function expectOn<T>(actual: T, table: Record<RuntimeName, T>): void {
  assert.deepEqual(actual, table[runtime], `on ${runtimeLabel}`);
}

describe("runtime differences", () => {
  it("a MessagePort listener runs in the creating Context (Node), the registering one (Deno), none (Bun)", async () => {
    const channel = v.run("created", () => new MessageChannel());
    const seen = new Promise<string>((resolve) => {
      v.run("registered", () => {
        channel.port2.onmessage = () => resolve(v.get());
      });
    });
    v.run("posted", () => channel.port1.postMessage("x"));
    const got = await seen;
    channel.port1.close();
    expectOn(got, { node: "created", bun: "root", deno: "registered" });
  });

  it("a BroadcastChannel listener runs in the Context of new BroadcastChannel (Node), of postMessage (Deno), none (Bun)", async () => {
    const receiver = v.run("created", () => new BroadcastChannel("contextvars-differences"));
    const sender = new BroadcastChannel("contextvars-differences");
    try {
      const seen = new Promise<string>((resolve) => {
        v.run("registered", () => {
          receiver.onmessage = () => resolve(v.get());
        });
      });
      v.run("posted", () => sender.postMessage("x"));
      expectOn(await seen, { node: "created", bun: "root", deno: "posted" });
    } finally {
      receiver.close();
      sender.close();
    }
  });

  it("an AbortSignal.timeout() signal's abort listener runs in the Context that made the signal (Node), in none (Bun, Deno)", async () => {
    // AbortSignal.timeout's timer does not keep the event loop alive: with
    // nothing else pending the runner would end the file before it fires.
    const keepAlive = setTimeout(() => {}, 10_000);
    try {
      const signal = v.run("created", () => AbortSignal.timeout(1));
      const seen = await new Promise<string>((resolve) => {
        v.run("registered", () => {
          signal.addEventListener("abort", () => resolve(v.get()));
        });
      });
      expectOn(seen, { node: "created", bun: "root", deno: "root" });
    } finally {
      clearTimeout(keepAlive);
    }
  });

  it("a worker_threads Worker's 'message' and 'exit' listeners run in the Context that created the Worker (Node, Deno), in none (Bun)", async () => {
    const worker = v.run(
      "created",
      () =>
        new Worker("require('node:worker_threads').parentPort.postMessage('hi')", { eval: true }),
    );
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      v.run("registered", () => {
        worker.on("message", () => seen.push(`message: ${v.get()}`));
        worker.on("exit", () => {
          seen.push(`exit: ${v.get()}`);
          resolve();
        });
      });
    });
    expectOn(seen, {
      node: ["message: created", "exit: created"],
      bun: ["message: root", "exit: root"],
      deno: ["message: created", "exit: created"],
    });
  });

  it("a web ReadableStream's pull, started by a read() after the stream went idle, runs in the reader's Context (Node, Deno), the creator's (Bun)", async () => {
    const pulled: string[] = [];
    const stream = v.run(
      "created",
      () =>
        new ReadableStream<number>(
          {
            pull(controller) {
              pulled.push(v.get());
              controller.enqueue(pulled.length);
            },
          },
          { highWaterMark: 0 },
        ),
    );
    const reader = stream.getReader();
    try {
      for (const at of ["read 1", "read 2"]) {
        await sleep(5); // idle: no pull is pending when read() asks for one
        await v.run(at, () => reader.read());
      }
      expectOn(pulled, {
        node: ["read 1", "read 2"],
        bun: ["created", "created"],
        deno: ["read 1", "read 2"],
      });
    } finally {
      await reader.cancel();
    }
  });

  it("node:http: the request listener and a later chunk's 'data' listener run in the listen() Context (Node, Bun), in none (Deno)", async () => {
    const seen: string[] = [];
    const secondChunk = new Promise<void>((resolve) => {
      const server = http.createServer((req, res) => {
        seen.push(`handler:${v.get()}`);
        v.run("handler's run", () => {
          let chunks = 0;
          req.on("data", () => {
            chunks++;
            if (chunks === 2) {
              seen.push(`later chunk:${v.get()}`);
              resolve();
            }
          });
          req.on("end", () => res.end("ok"));
        });
      });
      v.run("listen", () => server.listen(0, "127.0.0.1"));
      void (async () => {
        await once(server, "listening");
        const { port } = server.address() as AddressInfo;
        const req = http.request({ host: "127.0.0.1", port, method: "POST" });
        req.write("first");
        // The second chunk arrives in a later socket read, after the handler ran.
        await sleep(50);
        req.write("second");
        req.end();
        const [res] = (await once(req, "response")) as [http.IncomingMessage];
        res.resume();
        await once(res, "end");
        server.close();
      })();
    });
    await secondChunk;
    expectOn(seen, {
      node: ["handler:listen", "later chunk:listen"],
      bun: ["handler:listen", "later chunk:listen"],
      deno: ["handler:root", "later chunk:root"],
    });
  });

  it("node:net: a client socket's 'data' listener, added later in another run, runs in the Context that made the socket (Node, Bun), in none (Deno)", async () => {
    const server = net.createServer((socket) => socket.end("hello"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const client = v.run("connect", () => net.connect(port, "127.0.0.1"));
    try {
      const seen = await v.run(
        "listener added",
        () =>
          new Promise<string>((resolve, reject) => {
            client.once("error", reject); // a failed connection fails the test, not the process
            client.once("data", () => resolve(v.get()));
          }),
      );
      expectOn(seen, { node: "connect", bun: "connect", deno: "root" });
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("node:http2: a server stream's 'close' listener (req.stream, not bound) runs in none (Node), the listen() Context (Bun), the one that ended the response (Deno)", async () => {
    let closed = (_context: string) => {};
    const seen = new Promise<string>((resolve) => {
      closed = resolve;
    });
    const server = http2.createServer((req, res) => {
      v.run("registered", () => req.stream.once("close", () => closed(v.get())));
      v.run("ended the response", () => res.end("ok"));
    });
    v.run("listen", () => server.listen(0, "127.0.0.1"));
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const stream = client.request({ ":path": "/" });
    stream.resume();
    stream.end();
    await once(stream, "end");
    const got = await seen;
    client.close();
    server.close();
    expectOn(got, { node: "root", bun: "listen", deno: "ended the response" });
  });

  it("ws under withUpgradeContext: a WebSocket's 'message' and 'pong' listeners run in the upgrade's Context (Node, Deno), the root Context (Bun, whose ws is its own); bound ones in the upgrade's", async () => {
    const wss = new WebSocketServer({ noServer: true });
    const seen: string[] = [];
    const server = v.run("created", () => http.createServer());
    const closed = new Promise<void>((resolve) => {
      const listener = withUpgradeContext(
        (req, socket, head) => {
          wss.handleUpgrade(req, socket, head, (ws) => {
            ws.on("pong", () => {
              seen.push(`pong:${v.get()}`);
              ws.send("hi");
            });
            ws.on("message", () => seen.push(`message:${v.get()}`));
            ws.on(
              "message",
              bind(() => seen.push(`bound message:${v.get()}`)),
            );
            ws.on("close", () => resolve());
            ws.ping();
          });
        },
        {
          seed: () => {
            v.set("upgrade");
          },
        },
      );
      server.on("upgrade", listener);
    });
    v.run("listen", () => server.listen(0, "127.0.0.1"));
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    client.on("message", () => client.send("back"));
    client.on("message", () => client.close());
    await closed;
    wss.close();
    server.close();
    const upgrade = ["pong:upgrade", "message:upgrade", "bound message:upgrade"];
    expectOn(seen, {
      node: upgrade,
      bun: ["pong:root", "message:root", "bound message:upgrade"],
      deno: upgrade,
    });
  });

  it("process 'unhandledRejection' and 'uncaughtException' listeners: per runtime, and per AsyncContextFrame mode on Node", async () => {
    const seen = await runFixture<Record<string, string>>("./fixtures/error-listeners.ts");
    // Node 20, and 22-26 with AsyncContextFrame off: the failing code's
    // Context; a rejection in the Context its promise was made in, not the
    // one that rejected it; a queueMicrotask throw in none; an unawaited
    // task's failure in its creator's Context (where its promise was made).
    const node = {
      "unhandledRejection:async": "async, after an await",
      "unhandledRejection:elsewhere": "created",
      "unhandledRejection:then": "then",
      "uncaughtException:timer": "timer",
      "uncaughtException:microtask": "root",
      "unhandledRejection:task": "task creator",
    };
    const expected = {
      node: asyncContextFrame
        ? // AsyncContextFrame: a rejection is reported in the Context that
          // rejected the promise, a microtask's throw in the Context it
          // happened in (a task is rejected in its creator's Context on purpose,
          // so its failure is reported there on every Node).
          {
            ...node,
            "unhandledRejection:elsewhere": "rejected",
            "uncaughtException:microtask": "set in the microtask",
          }
        : node,
      bun: {
        ...node,
        "unhandledRejection:async": "root",
        "unhandledRejection:elsewhere": "root",
        "unhandledRejection:then": "root",
        "unhandledRejection:task": "root",
        "uncaughtException:microtask": "root",
      },
      deno: {
        ...node,
        "unhandledRejection:elsewhere": "rejected",
        "uncaughtException:timer": "root",
        "uncaughtException:microtask": "set in the microtask",
      },
    };
    expectOn(seen, expected);
  });
});

describe("the same on every runtime", () => {
  it("a plain EventEmitter listener runs in the Context of the emit caller", () => {
    const emitter = new EventEmitter();
    const seen: string[] = [];
    v.run("registered", () => emitter.on("tick", () => seen.push(v.get())));
    v.run("emitter", () => emitter.emit("tick"));
    emitter.emit("tick");
    assert.deepEqual(seen, ["emitter", "root"]);
  });

  it("an awaited thenable's then() runs in the awaiting Context", async () => {
    const seen: string[] = [];
    const thenable = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose
      then(resolve: (value: string) => void) {
        seen.push(v.get());
        resolve(v.get());
      },
    };
    const got = await v.run("awaiting", async () => await thenable);
    assert.equal(got, "awaiting");
    assert.deepEqual(seen, ["awaiting"]);
  });
});
