/**
 * Every public function and method of `contextvars`, fed a wrong-typed
 * argument, throws a TypeError whose message names that argument as p-map
 * writes it (``Expected `fn` to be a function, got …``), and leaves the
 * current Context exactly as it was. A fast-check property per argument:
 * wrong values come from `fc.anything()` plus look-alikes (objects shaped
 * like a Token, a Context, a ContextVar, a thenable, boxed primitives).
 * `taskGroup`, an async function, rejects with the TypeError instead.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import {
  bind,
  bindEmitter,
  Context,
  ContextVar,
  callLater,
  callSoon,
  createTask,
  gather,
  isolated,
  run,
  TaskGroup,
  Token,
  taskGroup,
  timeout,
} from "contextvars";
import fc from "fast-check";
import { pinContext } from "../helpers/pin-context.ts";

const v = new ContextVar<number>("v");
const ctx = new Context();
const noop = () => {};

// Values that look right at a glance and are not.
const lookAlikes: unknown[] = [
  { var: v, oldValue: 1, used: false },
  { run: noop, copy: noop, get: noop },
  { name: "v", get: noop, set: noop },
  // biome-ignore lint/suspicious/noThenProperty: a not-quite-thenable on purpose
  { then: 1 },
  { on: 1 },
  Object.create(null),
  // Pass instanceof, but are not what they claim: told apart by brand.
  Object.create(Context.prototype),
  new Proxy(ctx, {}),
  Object.create(ContextVar.prototype),
  Object.create(Token.prototype),
  new String("fn"),
  new Number(1),
  [noop],
  new Map(),
  Symbol("x"),
  10n,
  Number.NaN,
];

const anyValue = fc.oneof(fc.anything(), fc.constantFrom(...lookAlikes));
const notA = (accept: (x: unknown) => boolean) => anyValue.filter((x) => !accept(x));
const isFunction = (x: unknown) => typeof x === "function";
const isString = (x: unknown) => typeof x === "string";
const isUndefined = (x: unknown) => x === undefined;
const isOptionsObject = (x: unknown) => x === undefined || (typeof x === "object" && x !== null);
const isDelay = (x: unknown) => typeof x === "number" && x >= 0 && x <= 2 ** 31 - 1;
const isThenable = (x: unknown) =>
  typeof x === "function" ||
  (typeof x === "object" && x !== null && typeof (x as { then?: unknown }).then === "function");

/** [what is called, the argument's name in the message, wrong values, the call] */
type Case = readonly [string, string, fc.Arbitrary<unknown>, (bad: unknown) => unknown];
type Loose = (...args: unknown[]) => unknown;
const loose = <F>(fn: F) => fn as unknown as Loose;
const Var = ContextVar as unknown as new (...args: unknown[]) => unknown;
const Group = TaskGroup as unknown as new (...args: unknown[]) => TaskGroup;

const cases: readonly Case[] = [
  ["new ContextVar(name)", "name", notA(isString), (bad) => new Var(bad)],
  ["new ContextVar(name, options)", "options", notA(isOptionsObject), (bad) => new Var("x", bad)],
  [
    "new ContextVar(name, { transfer })",
    "options.transfer",
    notA((x) => x === undefined || typeof x === "boolean"),
    (bad) => new Var("x", { transfer: bad }),
  ],
  ["ContextVar#reset(token)", "token", anyValue, (bad) => loose(v.reset).call(v, bad)],
  ["ContextVar#run(value, fn)", "fn", notA(isFunction), (bad) => loose(v.run).call(v, 1, bad)],
  ["Context#run(fn)", "fn", notA(isFunction), (bad) => loose(ctx.run).call(ctx, bad)],
  ["Context#get(var)", "var", anyValue, (bad) => loose(ctx.get).call(ctx, bad)],
  ["Context#has(var)", "var", anyValue, (bad) => loose(ctx.has).call(ctx, bad)],
  ["Context#forEach(fn)", "fn", notA(isFunction), (bad) => loose(ctx.forEach).call(ctx, bad)],
  ["bind(fn)", "fn", notA(isFunction), (bad) => loose(bind)(bad)],
  ["bind(fn, context)", "context", notA(isUndefined), (bad) => loose(bind)(noop, bad)],
  ["bindEmitter(emitter)", "emitter", anyValue, (bad) => loose(bindEmitter)(bad)],
  [
    "bindEmitter(emitter, context)",
    "context",
    notA(isUndefined),
    (bad) => loose(bindEmitter)(new EventEmitter(), bad),
  ],
  ["createTask(fn)", "fn", notA(isFunction), (bad) => loose(createTask)(bad)],
  [
    "createTask(fn, options)",
    "options",
    notA(isOptionsObject),
    (bad) => loose(createTask)(noop, bad),
  ],
  [
    "createTask(fn, { name })",
    "options.name",
    notA((x) => x === undefined || isString(x)),
    (bad) => loose(createTask)(noop, { name: bad }),
  ],
  [
    "createTask(fn, { context })",
    "options.context",
    notA(isUndefined),
    (bad) => loose(createTask)(noop, { context: bad }),
  ],
  [
    "createTask(fn, { signal })",
    "options.signal",
    notA(isUndefined),
    (bad) => loose(createTask)(noop, { signal: bad }),
  ],
  ["gather(item)", "items[0]", notA(isThenable), (bad) => loose(gather)(bad)],
  ["gather(fn, item)", "items[1]", notA(isThenable), (bad) => loose(gather)(noop, bad)],
  ["isolated(fn)", "fn", notA(isFunction), (bad) => loose(isolated)(bad)],
  ["run(main)", "main", notA(isFunction), (bad) => loose(run)(bad)],
  ["callSoon(fn)", "fn", notA(isFunction), (bad) => loose(callSoon)(bad)],
  ["callLater(delayMs, fn)", "delayMs", notA(isDelay), (bad) => loose(callLater)(bad, noop)],
  [
    "callLater(delayMs, fn) with a bad fn",
    "fn",
    notA(isFunction),
    (bad) => loose(callLater)(1, bad),
  ],
  ["new TaskGroup(options)", "options", notA(isOptionsObject), (bad) => new Group(bad)],
  [
    "new TaskGroup({ name })",
    "options.name",
    notA((x) => x === undefined || isString(x)),
    (bad) => new Group({ name: bad }),
  ],
  [
    "new TaskGroup({ signal })",
    "options.signal",
    notA(isUndefined),
    (bad) => new Group({ signal: bad }),
  ],
  [
    "TaskGroup#createTask(fn)",
    "fn",
    notA(isFunction),
    (bad) => loose(new TaskGroup().createTask)(bad),
  ],
  [
    "TaskGroup#createTask(fn, options)",
    "options",
    notA(isOptionsObject),
    (bad) => new TaskGroup().createTask(noop, bad as never),
  ],
  [
    "TaskGroup#createTask(fn, { signal })",
    "options.signal",
    notA(isUndefined),
    (bad) => new TaskGroup().createTask(noop, { signal: bad as never }),
  ],
  ["taskGroup(body)", "body", notA(isFunction), (bad) => loose(taskGroup)(bad)],
  [
    "taskGroup(body, options)",
    "options",
    notA(isOptionsObject),
    (bad) => taskGroup(noop, bad as never),
  ],
  [
    "taskGroup(body, { signal })",
    "options.signal",
    notA(isUndefined),
    (bad) => taskGroup(noop, { signal: bad as never }),
  ],
  ["timeout(ms, fn)", "ms", notA(isDelay), (bad) => loose(timeout)(bad, noop)],
  ["timeout(ms, fn) with a bad fn", "fn", notA(isFunction), (bad) => loose(timeout)(1, bad)],
  [
    "timeout(ms, fn, options)",
    "options",
    notA(isOptionsObject),
    (bad) => loose(timeout)(1, noop, bad),
  ],
  [
    "timeout(ms, fn, { name })",
    "options.name",
    notA((x) => x === undefined || isString(x)),
    (bad) => loose(timeout)(1, noop, { name: bad }),
  ],
];

/** Calls `call(bad)`; returns the error it throws or rejects with (undefined if none). */
async function failureOf(call: () => unknown): Promise<unknown> {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    return error;
  }
  if (result instanceof Promise)
    return result.then(
      () => undefined,
      (error: unknown) => error,
    );
  return undefined;
}

describe("wrong-typed arguments: a TypeError that names the argument, and no Context change", () => {
  for (const [api, param, wrong, call] of cases) {
    it(api, async () => {
      await fc.assert(
        fc.asyncProperty(wrong, async (bad) => {
          const pin = pinContext();
          const error = await failureOf(() => call(bad));
          pin.check(api);
          assert.ok(
            error instanceof TypeError,
            `${api} with ${String(typeof bad)}: ${String(error)}`,
          );
          assert.ok(
            error.message.includes(`\`${param}\``),
            `${api}: the message names \`${param}\`: ${error.message}`,
          );
        }),
        { numRuns: 60 },
      );
    });
  }
});
