/**
 * graphql-ws 6 (`useServer` from graphql-ws/use/ws) on a `ws` server under
 * `withUpgradeContext`, with graphql-ws's own client over real sockets on
 * 127.0.0.1. graphql-ws handles every message of a connection in `ws`'s
 * `message` listener, so every operation of that connection runs in the
 * upgrade's one Context: a var set for one operation (in the `context`
 * function) or by one message (in `onConnect`, which handles
 * `connection_init`) is read by the operations after it. `bindEmitter(ws)`
 * in the `handleUpgrade` callback, before `wss.emit("connection", ws, req)`,
 * runs each message in a fresh copy of the upgrade's Context instead.
 *
 * Each connection's two subscriptions are held until both have been set up,
 * so a set can only reach the other if the two share a Context.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString } from "graphql";
import { createClient } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocket, WebSocketServer } from "ws";
import { close, randomDelay } from "../helpers/http.ts";
import { barriers } from "../helpers/latch.ts";
import { leak, user } from "../helpers/request-scenario.ts";
import { listenWs, upgradeServer } from "../helpers/websocket-scenario.ts";

/** Set in the `context` function, for the operation it is called for. */
const operation = new ContextVar<string>("graphql-ws.operation");
/** Set in `onConnect`, while connection_init is handled. */
const connected = new ContextVar<string>("graphql-ws.connected");

/** What an event reads: `<id>|<user>|<operation>|<connected>|<leak>`. */
function values(): string {
  return [
    requestId.get("<none>"),
    user.get("<none>"),
    operation.get("<none>"),
    connected.get("<none>"),
    leak.get("unset"),
  ].join("|");
}

/** Per connection (by request id): both of its subscriptions have started. */
let bothStarted = barriers(2);

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: "Query",
    fields: { hello: { type: GraphQLString, resolve: () => "hello" } },
  }),
  subscription: new GraphQLObjectType({
    name: "Subscription",
    fields: {
      ticks: {
        type: GraphQLString,
        args: { name: { type: new GraphQLNonNull(GraphQLString) } },
        subscribe: async function* () {
          await bothStarted.arrive(requestId.get("<none>"));
          for (let n = 0; n < 3; n++) {
            await randomDelay();
            yield `${n}:${values()}`;
          }
        },
        resolve: (event: string) => event,
      },
    },
  }),
});

/**
 * graphql-ws on a `ws` server whose upgrades run under withUpgradeContext;
 * `bound` binds each socket before graphql-ws's connection listener adds
 * its `message` listener.
 */
function serve(bound: boolean): { readonly base: string } {
  const served = { base: "" };
  const wss = new WebSocketServer({ noServer: true });
  const graphqlWs = useServer(
    {
      schema,
      onConnect: () => {
        connected.set(`init:${requestId.get("<none>")}`);
        return true;
      },
      context: (_ctx, _id, payload) => {
        operation.set(String(payload.variables?.name));
        return {};
      },
    },
    wss,
    0,
  );
  const server = upgradeServer(wss, bound);
  before(async () => {
    served.base = await listenWs(server);
  });
  after(async () => {
    await graphqlWs.dispose();
    await close(server);
  });
  return served;
}

/** One connection: two subscriptions at once; resolves with each one's events. */
async function subscribeTwice(base: string, i: number): Promise<string[][]> {
  const headers = { "x-request-id": `conn-${i}`, "x-user": `user-${i}` };
  class WithHeaders extends WebSocket {
    constructor(address: string | URL, protocols?: string | string[]) {
      super(address, protocols, { headers });
    }
  }
  const client = createClient({ url: base, webSocketImpl: WithHeaders, retryAttempts: 0 });
  const query = "subscription Ticks($name: String!) { ticks(name: $name) }";
  const one = (name: string) =>
    new Promise<string[]>((resolve, reject) => {
      const events: string[] = [];
      client.subscribe<{ ticks: string }>(
        { query, variables: { name } },
        {
          next: ({ data, errors }) => {
            if (errors) reject(new Error(JSON.stringify(errors)));
            else if (data) events.push(data.ticks);
          },
          error: reject,
          complete: () => resolve(events),
        },
      );
    });
  try {
    return await Promise.all([one(`a-${i}`), one(`b-${i}`)]);
  } finally {
    await client.dispose();
  }
}

// Bound first: where `ws` is Bun's own, the unbound suite's messages are handled in the root
// Context, and onConnect's sets there would be read by whatever runs after them.
describe("graphql-ws on ws under withUpgradeContext, each socket bound with bindEmitter", {
  timeout: 60_000,
}, () => {
  const served = serve(true);

  it("50 connections, two subscriptions each: every message in a copy of the upgrade's Context; onConnect's set stays in its own", async () => {
    const count = 50;
    bothStarted = barriers(2);
    const seen = await Promise.all(
      Array.from({ length: count }, (_, i) => subscribeTwice(served.base, i)),
    );
    for (const [i, pair] of seen.entries()) {
      assert.deepEqual(
        pair,
        [`a-${i}`, `b-${i}`].map((own) =>
          [0, 1, 2].map((n) => `${n}:conn-${i}|user-${i}|${own}|<none>|unset`),
        ),
      );
    }
  });
});

describe("graphql-ws on ws under withUpgradeContext", { timeout: 60_000 }, () => {
  const served = serve(false);

  it("50 connections, two subscriptions each: both share the upgrade's Context; one reads the other's set", async () => {
    const count = 50;
    bothStarted = barriers(2);
    const seen = await Promise.all(
      Array.from({ length: count }, (_, i) => subscribeTwice(served.base, i)),
    );
    let events = 0;
    let others = 0;
    for (const [i, pair] of seen.entries()) {
      for (const [s, own] of [`a-${i}`, `b-${i}`].entries()) {
        const ticks = pair[s] ?? [];
        assert.equal(ticks.length, 3);
        for (const [n, event] of ticks.entries()) {
          events++;
          // Every event: its own connection, onConnect's set, and one of its two operations.
          const op = event.split("|")[2];
          assert.equal(event, `${n}:conn-${i}|user-${i}|${op}|init:conn-${i}|unset`);
          assert.ok(op === `a-${i}` || op === `b-${i}`, event);
          if (op !== own) others++;
        }
      }
      // Both read the one value set last: one subscription's events all read the other's.
      assert.equal(new Set(pair.flat().map((event) => event.split("|")[2])).size, 1);
    }
    assert.equal(events, count * 6);
    assert.equal(others, count * 3, "half the events read the other subscription's operation");
  });
});
