/**
 * One scenario every web integration is tested against. Each framework's
 * test file builds an app with the same routes, in its own idiom:
 *
 *   seed                sets `user` from the `x-user` header
 *   async middleware    awaits a random delay, then sets `stage` = "mw:<user>"
 *   GET  /concurrent    awaits, then answers `observe()` (values read at the
 *                       handler and three awaits deep in a "service layer")
 *   POST /body          a middleware sets `stage` before the body parser; answers
 *                       { id, user, stage, body } with the parsed JSON body
 *   POST /raw           listens on req "data"/"end" itself; answers what the
 *                       listeners saw: { events: ["<id>|<user>", ...] }
 *   GET  /id            answers requestId.get() as text
 *   GET  /throw         sets `leak`, then throws; the error handler answers
 *                       500 { id, leak } (it runs in the request's Context)
 *   GET  /reject        an async middleware sets `leak`, awaits, rejects; same
 *   GET  /peek          answers { leak: leak.get("unset") }
 *   GET  /stream        writes 5 chunks "<id>|<user>\n" with awaits between;
 *                       a res "finish" listener (or onResponse hook) pushes
 *                       requestId.get() onto `finished`
 */
import assert from "node:assert/strict";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { keepAliveAgent, randomDelay, send, sendJson, sendRaw, UUID } from "./http.ts";

export const user = new ContextVar<string>("user");
export const stage = new ContextVar<string>("stage");
export const leak = new ContextVar<string>("leak");

/** requestId values seen by "finish" listeners / onResponse hooks, in order. */
export const finished: string[] = [];

export interface Values {
  id: string;
  user: string;
  stage: string;
}

export interface Observed extends Values {
  deep: Values;
}

/** The seed every app passes: the user comes from the x-user header. */
export function seedUser(header: string | string[] | undefined | null): void {
  user.set(typeof header === "string" ? header : "anonymous");
}

/** What the async middleware does: await, then set (the set must reach the handler). */
export async function asyncStage(): Promise<void> {
  await randomDelay();
  stage.set(`mw:${user.get()}`);
}

/** What /throw does in every app: sets `leak`, then throws (the set must die with the request). */
export function setThenThrow(): never {
  leak.set("set by /throw");
  throw new Error("thrown");
}

/** What /reject does in every app: sets `leak`, awaits, then rejects. */
export async function setThenReject(): Promise<never> {
  leak.set("set by /reject");
  await asyncStage();
  throw new Error("rejected");
}

function values(): Values {
  return { id: requestId.get(), user: user.get(), stage: stage.get() };
}

// A service layer that takes no request parameter: it reads the vars.
async function repository(): Promise<Values> {
  await new Promise((resolve) => setImmediate(resolve));
  await randomDelay(2);
  return values();
}

async function service(): Promise<Values> {
  await randomDelay(2);
  const found = await repository();
  assert.deepEqual(values(), found);
  return found;
}

/** What GET /concurrent answers. */
export async function observe(): Promise<Observed> {
  await randomDelay();
  const here = values();
  return { ...here, deep: await service() };
}

/** Chunks for GET /stream, produced with awaits between them. */
export async function* streamChunks(): AsyncGenerator<string> {
  for (let i = 0; i < 5; i++) {
    await randomDelay(2);
    yield `${requestId.get()}|${user.get()}\n`;
  }
}

/** Records the requestId a "finish" listener or onResponse hook sees. */
export function recordFinish(): void {
  finished.push(requestId.get("<none>"));
}

/**
 * 1,000 requests at once, each with its own id and user: every value must be
 * its own. `sockets` caps the keep-alive agent's sockets, so that most
 * requests go out on a socket an earlier one used.
 */
export async function expectNoCrossTalk(
  base: string,
  count = 1000,
  sockets = Number.POSITIVE_INFINITY,
): Promise<void> {
  const agent = keepAliveAgent(sockets);
  try {
    const replies = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        send(base, "/concurrent", {
          agent,
          headers: { "x-request-id": `req-${i}`, "x-user": `user-${i}` },
        }),
      ),
    );
    replies.forEach((reply, i) => {
      assert.equal(reply.status, 200, reply.body);
      assert.equal(reply.headers["x-request-id"], `req-${i}`);
      const own: Values = { id: `req-${i}`, user: `user-${i}`, stage: `mw:user-${i}` };
      assert.deepEqual(JSON.parse(reply.body), { ...own, deep: own });
    });
  } finally {
    agent.destroy();
  }
}

/** POST bodies in several pieces: values set before the body parser reach the handler. */
export async function expectBodyKeepsContext(base: string): Promise<void> {
  const agent = keepAliveAgent(8);
  try {
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const got = await sendJson<Values & { body: unknown }>(base, "/body", {
          agent,
          chunks: 3,
          headers: {
            "content-type": "application/json",
            "x-request-id": `body-${i}`,
            "x-user": `poster-${i}`,
          },
          body: JSON.stringify({ n: i, pad: "x".repeat(2000) }),
        });
        assert.deepEqual(got, {
          id: `body-${i}`,
          user: `poster-${i}`,
          stage: `mw:poster-${i}`,
          body: { n: i, pad: "x".repeat(2000) },
        });
      }),
    );
  } finally {
    agent.destroy();
  }
}

/** req.on("data"|"end") listeners run in the request's Context, for every chunk. */
export async function expectDataListeners(base: string): Promise<void> {
  const replies = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      sendJson<{ events: string[] }>(base, "/raw", {
        chunks: 4,
        headers: { "content-type": "text/plain", "x-request-id": `raw-${i}`, "x-user": `u${i}` },
        body: "y".repeat(200_000),
      }),
    ),
  );
  replies.forEach(({ events }, i) => {
    assert.ok(events.length >= 2, "at least one data event and the end event");
    assert.deepEqual(new Set(events), new Set([`raw-${i}|u${i}`]));
  });
}

/** A throwing handler and a rejected middleware, then a request on the same socket. */
export async function expectNothingLeaks(base: string): Promise<void> {
  const agent = keepAliveAgent(1);
  try {
    for (const path of ["/throw", "/reject"]) {
      const reply = await send(base, path, { agent, headers: { "x-request-id": `fail${path}` } });
      assert.equal(reply.status, 500, path);
      assert.equal(reply.headers["x-request-id"], `fail${path}`, "the id is echoed on errors");
      assert.deepEqual(JSON.parse(reply.body), { id: `fail${path}`, leak: `set by ${path}` });
      assert.deepEqual(await sendJson(base, "/peek", { agent }), { leak: "unset" });
    }
  } finally {
    agent.destroy();
  }
  assert.equal(leak.get("unset"), "unset", "nothing reached the test's own Context");
  assert.equal(requestId.get("unset"), "unset");
}

/** Every chunk of a streamed body, and the finish listener, see the request's values. */
export async function expectStreaming(base: string, path = "/stream"): Promise<void> {
  const ids = Array.from({ length: 20 }, (_, i) => `stream-${i}`);
  const replies = await Promise.all(
    ids.map((id, i) => send(base, path, { headers: { "x-request-id": id, "x-user": `s${i}` } })),
  );
  replies.forEach((reply, i) => {
    assert.equal(reply.status, 200, reply.body);
    assert.equal(reply.body, `${ids[i]}|s${i}\n`.repeat(5));
  });
  for (let tries = 0; tries < 50 && !ids.every((id) => finished.includes(id)); tries++) {
    await randomDelay(10);
  }
  for (const id of ids) assert.ok(finished.includes(id), `finish listener saw ${id}`);
}

/**
 * Well-formed ids pass; too long, tab, space, quotes, non-ASCII, duplicates
 * and empty are replaced. (Node's parser itself answers 400 to CR, LF, NUL
 * and other control characters in a header; request-id.test.ts checks that
 * requestIdFor replaces them too, for runtimes that let them through.)
 */
export async function expectIdHandling(base: string, header = "X-Request-Id"): Promise<void> {
  const ok = ["abc-123", "0af7651916cd43dd8448eb211c80319c", "a.b:c=d+e/f_g", "x".repeat(200)];
  for (const id of ok) {
    const reply = await sendRaw(base, ["GET /id HTTP/1.1", "Host: t", `${header}: ${id}`]);
    assert.equal(reply.body, id);
    assert.equal(reply.headers[header.toLowerCase()], id);
  }
  const bad = [
    [`${header}: ${"x".repeat(201)}`],
    [`${header}: abc\tdef`],
    [`${header}: abc def`],
    [`${header}: "quoted"`],
    [`${header}: caf\xe9`],
    [`${header}: one`, `${header}: two`],
    [`${header}:`],
  ];
  for (const lines of bad) {
    const reply = await sendRaw(base, ["GET /id HTTP/1.1", "Host: t", ...lines]);
    assert.equal(reply.status, 200, JSON.stringify(lines));
    assert.match(reply.body, UUID, `replaced: ${JSON.stringify(lines)}`);
    assert.equal(reply.headers[header.toLowerCase()], reply.body);
  }
}

/**
 * The `generateId` the apps of expectGeneratedIds pass, reading the path from
 * the framework's own request object: `g-<path>-<n>`; for `/bad`, an id with
 * a space and a newline, which the integration must replace; for `/boom`, a
 * throw.
 */
export function pathGenerator<R>(pathOf: (request: R) => string): (request: R) => string {
  let count = 0;
  return (request) => {
    const path = pathOf(request);
    if (path === "/boom") throw new Error("generateId failed");
    return path === "/bad" ? "not an id\n" : `g-${path}-${++count}`;
  };
}

/**
 * For an app with `{ trustHeader: false, generateId: pathGenerator(...) }`
 * whose routes `/id`, `/bad` and `/boom` answer `requestId.get()`, and whose
 * error handler answers 500 with the error's message: every request gets a
 * generated id whatever it sends, echoed; a malformed generated id is
 * replaced by a UUID, as a malformed incoming one is; a throw from the
 * generator fails the request (unless `throws` is false: node:http has no
 * error handling to answer it) before any id is echoed.
 */
export async function expectGeneratedIds(base: string, throws = true): Promise<void> {
  const chosen = await send(base, "/id", { headers: { "x-request-id": "client-chosen" } });
  assert.equal(chosen.status, 200, chosen.body);
  assert.match(chosen.body, /^g-\/id-\d+$/);
  assert.equal(chosen.headers["x-request-id"], chosen.body);
  const none = await send(base, "/id");
  assert.match(none.body, /^g-\/id-\d+$/);
  assert.notEqual(none.body, chosen.body);
  assert.equal(none.headers["x-request-id"], none.body);
  const bad = await send(base, "/bad", { headers: { "x-request-id": "client-chosen" } });
  assert.equal(bad.status, 200, bad.body);
  assert.match(bad.body, UUID);
  assert.equal(bad.headers["x-request-id"], bad.body);
  if (!throws) return;
  const boom = await send(base, "/boom");
  assert.equal(boom.status, 500, boom.body);
  assert.match(boom.body, /generateId failed/);
  assert.equal(boom.headers["x-request-id"], undefined);
}
