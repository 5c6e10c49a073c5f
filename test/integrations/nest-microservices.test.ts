/**
 * NestJS microservices (`@nestjs/microservices` 12, TCP transport) in a
 * hybrid app, as docs/integrations.md ("NestJS", "Microservices") says:
 *
 * - As it comes, every message and event runs in the Context the app was
 *   started in: each starts with what earlier ones set, on its own
 *   connection or another client's, reads other messages' values after an
 *   await, and leaves its own in the program's top-level Context.
 * - The transport server's `setOnProcessingStartHook`, running each message
 *   in `new Context()` seeded from the packet's metadata, gives every
 *   message, its guard, interceptor, pipe, handler and exception filter,
 *   and every event, a Context of its own, and nothing leaks.
 * - A pre-request hook that does the same works only where the hybrid
 *   microservice inherits the app's config with its initialization
 *   deferred; otherwise it is ignored, silently. An `APP_INTERCEPTOR` (as
 *   nestjs-cls's `ClsInterceptor`) comes after the guards, whose sets stay
 *   in the shared Context and never reach the handler.
 * - `client.send()` from an HTTP handler: a dispatch hook that writes
 *   `contextPropagation`'s `inject({})` into the packet's metadata, and the
 *   hook above, bring the request's id and user to the microservice's
 *   handler. An rxjs `map` piped after `send()` runs in the Context of the
 *   request that made the client connect; `map(bind(…))` runs in its own.
 * - The same hook does it on the MQTT transport, with aedes as the broker.
 *
 * Each case runs fixtures/nest-microservices/messages.ts (or mqtt.ts) in a
 * process of its own, compiled with experimentalDecorators as Nest apps are.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fixtureResult } from "../helpers/fixture-process.ts";

const mqttFixture = fileURLToPath(
  new URL("./fixtures/nest-microservices/mqtt.ts", import.meta.url),
);
const fixture = fileURLToPath(
  new URL("./fixtures/nest-microservices/messages.ts", import.meta.url),
);
const tsconfig = fileURLToPath(
  new URL("./fixtures/nest-microservices/tsconfig.json", import.meta.url),
);

type Counts = Record<string, number>;
interface Outcome {
  startedWith: { fresh: number; sameClient: number; otherClient: number; startup: number };
  checked: Counts;
  crossed: Counts;
  lost: Counts;
  replies: { ok: number; failed: number; wrongUser: number };
  events: { handled: number; startedWithValue: number; crossed: number };
  calls: {
    requests: number;
    handlerOwnId: number;
    inMapOwnId: number;
    inBoundMapOwnId: number;
    microserviceOwnId: number;
    microserviceOwnUser: number;
  };
  inMapIdsRead: number;
  topLevel: { user: string; order: string };
}

/** Runs `file` with `args`, compiled with the fixtures' tsconfig (experimentalDecorators). */
function runNest<T>(file: string, args: string[]): Promise<T> {
  return fixtureResult<T>(file, { args, env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig } });
}

function runApp(...args: string[]): Promise<Outcome> {
  return runNest<Outcome>(fixture, args);
}

const STAGES = ["guard", "interceptor", "pipe", "handler", "afterAwait", "interceptorTap"];
const none = (stages: readonly string[]): Counts =>
  Object.fromEntries(stages.map((stage) => [stage, 0]));

/** Every message and event had a Context of its own, through every stage. */
function assertIsolated(outcome: Outcome): void {
  assert.deepEqual(outcome.startedWith, { fresh: 180, sameClient: 0, otherClient: 0, startup: 0 });
  assert.deepEqual(outcome.checked, {
    ...Object.fromEntries(STAGES.map((s) => [s, 180])),
    filter: 18,
  });
  assert.deepEqual(outcome.crossed, none([...STAGES, "filter"]));
  assert.deepEqual(outcome.lost, none([...STAGES, "filter"]));
  assert.deepEqual(outcome.replies, { ok: 162, failed: 18, wrongUser: 0 });
  assert.deepEqual(outcome.events, { handled: 30, startedWithValue: 0, crossed: 0 });
  assert.deepEqual(outcome.topLevel, { user: "-", order: "-" });
}

// Each case is a process of its own, with its own ports: they run side by side.
describe("NestJS microservices: a Context per message", { concurrency: true }, () => {
  it("as it comes, messages share the Context the app was started in, across connections", async () => {
    const outcome = await runApp("none");
    const { startedWith, crossed, events, replies, topLevel } = outcome;
    assert.equal(startedWith.startup, 180, "every message sees what the top level set");
    // Those that started with a user: some with one from their own connection
    // (0 to 86 of 180 in 10 runs), some with another client's (77 to 120).
    assert.ok(startedWith.otherClient > 0, JSON.stringify(startedWith));
    for (const stage of STAGES)
      assert.ok((crossed[stage] as number) > 90, `${stage}: ${crossed[stage]}`);
    assert.ok(replies.wrongUser > 90, `${replies.wrongUser} replies named another user`);
    assert.equal(events.startedWithValue, 30);
    assert.notEqual(topLevel.user, "-", "a message's user stayed in the top-level Context");
    assert.notEqual(topLevel.order, "-");
  });

  it("setOnProcessingStartHook running each message in new Context(): guards to filters see only their own", async () => {
    assertIsolated(await runApp("processing-hook"));
  });

  it("a pre-request hook does the same with inheritAppConfig and deferInitialization", async () => {
    assertIsolated(await runApp("pre-request-hook", "inherit"));
  });

  it("a pre-request hook registered on a hybrid app's microservice without them is ignored", async () => {
    const { crossed, topLevel } = await runApp("pre-request-hook");
    assert.ok((crossed.handler as number) > 90, `handler: ${crossed.handler}`);
    assert.notEqual(topLevel.user, "-");
  });

  it("an APP_INTERCEPTOR comes after the guards: their sets stay shared and are lost to the handler", async () => {
    const { crossed, lost, events, topLevel } = await runApp("interceptor", "inherit");
    assert.ok((crossed.guard as number) > 90, `guard: ${crossed.guard}`);
    assert.equal(lost.guard, 0);
    for (const stage of STAGES.slice(1)) {
      assert.equal(crossed[stage], 0, stage);
      assert.equal(lost[stage], 180, stage);
    }
    assert.deepEqual(events, { handled: 30, startedWithValue: 0, crossed: 0 });
    assert.notEqual(topLevel.user, "-", "the guards' sets reached the top-level Context");
    assert.equal(topLevel.order, "-");
  });

  it("client.send() from an HTTP handler carries the request's id and user through packet metadata", async () => {
    const [plain, hooked] = await Promise.all([runApp("none"), runApp("processing-hook")]);
    assert.equal(plain.calls.microserviceOwnId, 0, "without the hook, the metadata is not read");
    assert.equal(plain.calls.microserviceOwnUser, 0);
    assert.deepEqual(hooked.calls, {
      requests: 60,
      handlerOwnId: 60,
      inMapOwnId: hooked.calls.inMapOwnId,
      inBoundMapOwnId: 60,
      microserviceOwnId: 60,
      microserviceOwnUser: 60,
    });
    // The client connects in the first request that sends, and its replies
    // arrive in that request's Context: a plain map reads that one id.
    assert.equal(hooked.inMapIdsRead, 1);
    assert.ok(hooked.calls.inMapOwnId <= 1);
  });

  it("on the MQTT transport (aedes), the same hook gives each message and event its own Context", async () => {
    const [plain, hooked] = await Promise.all([
      runNest<unknown>(mqttFixture, []),
      runNest<unknown>(mqttFixture, ["hook"]),
    ]);
    const counts = plain as { startedWithValue: number; crossed: number; topLevel: string };
    assert.ok(counts.startedWithValue > 100, JSON.stringify(plain));
    assert.ok(counts.crossed > 100, JSON.stringify(plain));
    assert.notEqual(counts.topLevel, "-");
    assert.deepEqual(hooked, {
      startedWithValue: 0,
      crossed: 0,
      handled: 200,
      evStarted: 0,
      evCrossed: 0,
      ev: 40,
      wrongReplies: 0,
      topLevel: "-",
    });
  });
});
