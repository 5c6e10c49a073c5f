/**
 * Every misuse error of the core: class, stable code, `instanceof
 * ContextError`, a message naming the var or Context, CPython's check order
 * (Python/context.c), the TypeErrors, and the rule that a throwing call leaves
 * the current Context as it was. Ported from Lib/test/test_context.py.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  bind,
  bindEmitter,
  Context,
  ContextEnteredError,
  ContextError,
  ContextVar,
  callLater,
  callSoon,
  copyContext,
  createTask,
  type ErrorCode,
  gather,
  LookupError,
  run,
  TaskGroup,
  TaskGroupClosedError,
  TimeoutError,
  Token,
  TokenMismatchError,
  TokenUsedError,
  TransferError,
  timeout,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

type ErrorClass = new (...args: never[]) => ContextError;

/** fn throws an ErrorClass with `code` whose message contains every one of `names`. */
function throwsContextError(
  fn: () => unknown,
  Class: ErrorClass,
  code: ErrorCode,
  names: string[],
) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Class, `expected ${Class.name}, got ${String(err)}`);
    assert.ok(err instanceof ContextError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code);
    assert.equal(err.name, Class.name);
    for (const name of names) assert.ok(err.message.includes(name), `${err.message} ∌ ${name}`);
    return true;
  });
}

describe("error names", () => {
  it("are spelled out, not taken from the class's name, and can be assigned as Error's can", () => {
    const classes = {
      ContextError,
      LookupError,
      TokenUsedError,
      TokenMismatchError,
      ContextEnteredError,
      TaskGroupClosedError,
      TimeoutError,
      TransferError,
    };
    for (const [name, Class] of Object.entries(classes)) {
      const original = Class.name;
      // What a minifier does to class names.
      Object.defineProperty(Class, "name", { value: "b", configurable: true });
      try {
        const error = new (Class as unknown as new (code: string, message: string) => Error)(
          "ERR_X",
          "m",
        );
        assert.equal(error.name, name);
        assert.match(String(error.stack), new RegExp(`^${name}: m`));
        error.name = "Renamed";
        assert.equal(error.name, "Renamed");
        assert.equal(Object.keys(error).includes("name"), true, "an own property once assigned");
        assert.deepEqual(Object.getOwnPropertyDescriptor(Class.prototype, "name"), {
          ...Object.getOwnPropertyDescriptor(Error.prototype, "name"),
          value: name,
        });
      } finally {
        Object.defineProperty(Class, "name", { value: original, configurable: true });
      }
    }
  });
});

/** fn throws `expected`, and the current Context holds exactly what it held before. */
function unchangedAfterThrow(fn: () => unknown, expected: RegExp | Function) {
  const before = [...copyContext()];
  assert.throws(fn, expected);
  const after = [...copyContext()];
  assert.equal(after.length, before.length);
  after.forEach(([key, value], i) => {
    assert.equal(key, before[i]?.[0]);
    assert.equal(value, before[i]?.[1]);
  });
}

const unsafe = <T>(value: unknown) => value as T;

const probe = new ContextVar<number>("probe");
const AnyVarCtor = ContextVar as unknown as new (...args: unknown[]) => unknown;
const AnyTokenCtor = Token as unknown as new (...args: unknown[]) => unknown;
function setThenThrow(): never {
  probe.set(99);
  throw new RangeError("after a set");
}

describe("errors", () => {
  it("every class extends ContextError extends Error and is named for itself", () => {
    for (const Class of [LookupError, TokenUsedError, TokenMismatchError, ContextEnteredError]) {
      assert.ok(Class.prototype instanceof ContextError);
      assert.ok(ContextError.prototype instanceof Error);
    }
  });

  it("new ContextError(code, message, { cause }) keeps the cause, as new Error does", () => {
    const cause = new RangeError("underneath");
    const error = new ContextError("ERR_APP", "on top", { cause });
    assert.equal(error.cause, cause);
    assert.equal(error.code, "ERR_APP");
    assert.equal(error.message, "on top");
    assert.equal(Object.hasOwn(new ContextError("ERR_APP", "m"), "cause"), false);
  });

  itFromEveryState("test_context_getset_1: get() of an unset var is LookupError", () => {
    const c = new ContextVar<number>("name");
    throwsContextError(() => c.get(), LookupError, "ERR_CONTEXTVAR_UNSET", ['ContextVar("name")']);
  });

  itFromEveryState("test_context_getset_1: a token reset twice is TokenUsedError", () => {
    const c = new ContextVar<string>("c");
    const t = c.set("spam");
    c.reset(t);
    c.set("spam2");
    throwsContextError(() => c.reset(t), TokenUsedError, "ERR_TOKEN_USED", ['ContextVar("c")']);
    assert.equal(c.get(), "spam2");
  });

  itFromEveryState("test_context_getset_2: a token of another var is TokenMismatchError", () => {
    const v1 = new ContextVar<number>("v1");
    const v2 = new ContextVar<number>("v2");
    const t1 = v1.set(42);
    throwsContextError(() => v2.reset(t1), TokenMismatchError, "ERR_TOKEN_VAR_MISMATCH", [
      'ContextVar("v1")',
      'ContextVar("v2")',
    ]);
    assert.equal(t1.used, false);
    v1.reset(t1);
    assert.equal(v1.get(undefined), undefined);
  });

  itFromEveryState(
    "test_context_getset_4: a token of another Context is TokenMismatchError",
    () => {
      const c = new ContextVar<number>("c", { default: 42 });
      const ctx = new Context();
      const tok = ctx.run(c.set.bind(c), 1);
      const code = "ERR_TOKEN_CONTEXT_MISMATCH";
      throwsContextError(() => c.reset(tok), TokenMismatchError, code, ['ContextVar("c")']);
      const here = c.set(2);
      throwsContextError(
        () => copyContext().run(() => c.reset(here)),
        TokenMismatchError,
        code,
        [],
      );
      assert.equal(tok.used, false);
      assert.equal(here.used, false);
      ctx.run(() => c.reset(tok));
      assert.equal(ctx.has(c), false);
    },
  );

  itFromEveryState(
    "test_context_getset_4: a sibling task's token is TokenMismatchError",
    async () => {
      const c = new ContextVar<string>("c");
      const made = await createTask(() => c.set("in a"));
      const code = "ERR_TOKEN_CONTEXT_MISMATCH";
      await createTask(async () => {
        await sleep(1);
        throwsContextError(() => c.reset(made), TokenMismatchError, code, ['ContextVar("c")']);
      });
      assert.equal(made.used, false);
    },
  );

  itFromEveryState("Python/context.c order: TypeError, then used, then var, then Context", () => {
    const a = new ContextVar<number>("a");
    const b = new ContextVar<number>("b");
    const elsewhere = new Context();
    const usedElsewhere = elsewhere.run(() => {
      const t = a.set(1);
      a.reset(t);
      return t;
    });
    const freshElsewhere = elsewhere.run(() => a.set(2));
    throwsContextError(() => b.reset(usedElsewhere), TokenUsedError, "ERR_TOKEN_USED", []);
    const varCode = "ERR_TOKEN_VAR_MISMATCH";
    throwsContextError(() => b.reset(freshElsewhere), TokenMismatchError, varCode, []);
    const ctxCode = "ERR_TOKEN_CONTEXT_MISMATCH";
    throwsContextError(() => a.reset(freshElsewhere), TokenMismatchError, ctxCode, []);
    assert.throws(() => b.reset(unsafe<Token<number>>(null)), TypeError);
  });

  itFromEveryState("test_context_run_7: running an entered Context is ContextEnteredError", () => {
    const ctx = new Context();
    const fun = () => {
      throwsContextError(() => ctx.run(fun), ContextEnteredError, "ERR_CONTEXT_ENTERED", [
        String(ctx),
      ]);
      // The failed attempt does not leave ctx: it is still entered.
      assert.throws(() => ctx.run(() => 1), ContextEnteredError);
      assert.throws(() => new Context().run(() => ctx.run(() => 1)), ContextEnteredError);
      return "done";
    };
    assert.equal(ctx.run(fun), "done");
    assert.equal(
      ctx.run(() => "again"),
      "again",
    );
  });

  itFromEveryState(
    "Python/context.c order for run: a missing fn, then an entered Context, then a fn that cannot be called",
    () => {
      const ctx = new Context();
      const anyRun = unsafe<(...args: unknown[]) => unknown>(ctx.run.bind(ctx));
      ctx.run(() => {
        // context_run checks the argument count, enters, and only then calls.
        assert.throws(() => anyRun(), TypeError);
        throwsContextError(() => anyRun(42), ContextEnteredError, "ERR_CONTEXT_ENTERED", []);
        throwsContextError(() => anyRun(undefined), ContextEnteredError, "ERR_CONTEXT_ENTERED", []);
      });
      assert.throws(() => anyRun(42), /Expected `fn` to be a function, got `42` \(number\)/);
    },
  );

  itFromEveryState(
    "test_context_manager_is_not_reentrant: a continuation may run its own Context, but not recursively",
    async () => {
      const ctx = new Context();
      const v = new ContextVar<string>("v", { default: "unset" });
      await ctx.run(async () => {
        v.set("before the await");
        await sleep(1);
        // Nothing runs ctx synchronously now: the run only makes current what
        // already is, and its sets land in ctx itself.
        assert.equal(
          ctx.run(() => {
            const seen = v.get();
            v.set("set by the inner run");
            throwsContextError(() => ctx.run(() => 1), ContextEnteredError, "ERR_CONTEXT_ENTERED", [
              String(ctx),
            ]);
            return seen;
          }),
          "before the await",
        );
        assert.equal(v.get(), "set by the inner run");
      });
      assert.equal(ctx.get(v), "set by the inner run");
      assert.equal(
        ctx.run(() => "after"),
        "after",
      );
    },
  );
});

describe("TypeErrors", () => {
  const AnyVar = ContextVar as unknown as new (...args: unknown[]) => ContextVar<unknown>;

  it("test_context_var_new_1: a name is required and must be a string", () => {
    assert.throws(() => new AnyVar(), TypeError);
    for (const name of [1, null, {}, Symbol("s")]) {
      assert.throws(() => new AnyVar(name), /Expected `name` to be a string/);
    }
    assert.throws(() => new AnyVar("a", 5), TypeError);
    assert.throws(() => new AnyVar("a", null), TypeError);
  });

  it("the message says what was expected, and a Token cannot be made by hand", () => {
    const cases: [() => unknown, string][] = [
      [() => new AnyVar("a", 5), "Expected `options` to be an object, got `5` (number)"],
      [
        () => new AnyVar("a", { transfer: "no" }),
        'Expected `options.transfer` to be a boolean, got `"no"` (string)',
      ],
      [() => bindEmitter(5 as never), "Expected `emitter` to be an EventEmitter, got `5` (number)"],
      [
        () => bindEmitter(null as never),
        "Expected `emitter` to be an EventEmitter, got `null` (null)",
      ],
      [
        () => bindEmitter(Object.assign(() => {}, { on() {} }) as never),
        "Expected `emitter` to be an EventEmitter, got `[Function]` (function)",
      ],
      [
        () => bindEmitter({ emit() {} } as never),
        "Expected `emitter` to be an EventEmitter, got `[object Object]` (object)",
      ],
      [
        () => bindEmitter(new EventEmitter(), 5 as never),
        "Expected `context` to be a Context, got `5` (number)",
      ],
      [
        () => new (Token as unknown as new () => unknown)(),
        "Tokens can only be created by ContextVar.set(); call var.set(value)",
      ],
    ];
    for (const [call, message] of cases) assert.throws(call, new TypeError(message));
  });

  it("test_context_run_1: run needs a function", () => {
    const ctx = new Context();
    const anyRun = unsafe<(fn?: unknown) => unknown>(ctx.run.bind(ctx));
    assert.throws(() => anyRun(), TypeError);
    assert.throws(() => anyRun(42), /Expected `fn` to be a function, got `42` \(number\)/);
    const v = new ContextVar<number>("v");
    const anyVarRun = unsafe<(value: number, fn?: unknown) => unknown>(v.run.bind(v));
    assert.throws(() => anyVarRun(1), TypeError);
    assert.throws(() => anyVarRun(1, "fn"), TypeError);
  });

  it("a wrong argument to a var's or a Context's method: the message names the var or Context", () => {
    const v = new ContextVar<number>("userId");
    const ctx = new Context();
    const loose =
      (fn: Function, self: unknown, ...args: unknown[]) =>
      () =>
        Reflect.apply(fn, self, args);
    const expected: [() => unknown, string][] = [
      [
        loose(v.reset, v, 42),
        'Expected `token` to be a Token, got `42` (number), in ContextVar("userId").reset()',
      ],
      [
        loose(v.run, v, 1, "fn"),
        'Expected `fn` to be a function, got `"fn"` (string), in ContextVar("userId").run()',
      ],
      [
        loose(ctx.run, ctx, null),
        `Expected \`fn\` to be a function, got \`null\` (null), in ${ctx}.run()`,
      ],
      [
        loose(ctx.get, ctx, "userId"),
        `Expected \`var\` to be a ContextVar, got \`"userId"\` (string), in ${ctx}.get()`,
      ],
      [
        loose(ctx.has, ctx, 1),
        `Expected \`var\` to be a ContextVar, got \`1\` (number), in ${ctx}.has()`,
      ],
      [
        loose(ctx.forEach, ctx, 1),
        `Expected \`fn\` to be a function, got \`1\` (number), in ${ctx}.forEach()`,
      ],
    ];
    for (const [call, message] of expected) assert.throws(call, new TypeError(message));
    assert.match(String(ctx), /^<Context #\d+ size=0>$/);
  });

  it("reset needs a Token made by set()", () => {
    const v = new ContextVar<number>("v");
    const real = v.set(1);
    const fake = { var: v, oldValue: Token.MISSING, used: false };
    for (const token of [undefined, null, 1, fake, Object.create(Token.prototype)]) {
      assert.throws(() => v.reset(unsafe<Token<number>>(token)), /Expected `token` to be a Token/);
    }
    assert.equal(real.used, false);
    v.reset(real);
  });

  it("test_context_typerrors_1: Context.get and has need a ContextVar key", () => {
    const ctx = new Context();
    for (const key of [1, "v", null, {}, new Context()]) {
      assert.throws(() => ctx.get(unsafe<ContextVar<unknown>>(key)), /a ContextVar/);
      assert.throws(() => ctx.has(unsafe<ContextVar<unknown>>(key)), /a ContextVar/);
    }
    assert.throws(() => ctx.forEach(unsafe<() => void>(1)), TypeError);
  });
});

describe("a throwing call leaves the current Context as it was", () => {
  const throwing: [string, () => () => unknown, RegExp | Function][] = [
    ["get() of an unset var", () => () => new ContextVar("unset").get(), LookupError],
    [
      "reset of a used token",
      () => {
        const v = new ContextVar<number>("v");
        const t = v.set(1);
        v.reset(t);
        v.set(2);
        return () => v.reset(t);
      },
      TokenUsedError,
    ],
    [
      "reset through another var",
      () => {
        const t = new ContextVar<number>("a").set(1);
        return () => new ContextVar<number>("b").reset(t);
      },
      TokenMismatchError,
    ],
    [
      "reset in another Context",
      () => {
        const v = new ContextVar<number>("v");
        const t = new Context().run(() => v.set(1));
        return () => v.reset(t);
      },
      TokenMismatchError,
    ],
    ["reset of a non-Token", () => () => new ContextVar("v").reset(unsafe(0)), TypeError],
    ["new ContextVar(1)", () => () => new AnyVarCtor(1), TypeError],
    ["new Token()", () => () => new AnyTokenCtor(), TypeError],
    ["ctx.run(42)", () => () => new Context().run(unsafe(42)), TypeError],
    ["var.run(v, 42)", () => () => new ContextVar("v").run(1, unsafe(42)), TypeError],
    ["bind(42)", () => () => bind(unsafe(42)), TypeError],
    ["ctx.get(1)", () => () => new Context().get(unsafe(1)), TypeError],
    ["ctx.has(1)", () => () => new Context().has(unsafe(1)), TypeError],
    ["a set-then-throw inside ctx.run", () => () => new Context().run(setThenThrow), RangeError],
    ["a set-then-throw inside var.run", () => () => probe.run(9, setThenThrow), RangeError],
    ["a set-then-throw inside bind", () => bind(setThenThrow), RangeError],
  ];

  for (const [what, arrange, expected] of throwing) {
    itFromEveryState(what, () => {
      probe.set(1);
      const act = arrange();
      unchangedAfterThrow(act, expected);
      assert.equal(probe.get(), 1);
    });
  }

  itFromEveryState("ctx.run of the entered ctx, inside its run", () => {
    const ctx = new Context();
    ctx.run(() => {
      probe.set(1);
      unchangedAfterThrow(() => ctx.run(setThenThrow), ContextEnteredError);
      assert.equal(probe.get(), 1);
    });
  });
});

describe("messages: what they point to", () => {
  it("ERR_CONTEXTVAR_UNSET says the var has no default and the three ways out", () => {
    assert.throws(() => new ContextVar<number>("userId").get(), {
      name: "LookupError",
      message:
        'ContextVar("userId") has no value in the current Context and no default; set it first, pass a fallback to get(), or give the var a default',
    });
  });

  it("ERR_TOKEN_VAR_MISMATCH says which var to reset through", () => {
    const v1 = new ContextVar<number>("v1");
    const v2 = new ContextVar<number>("v2");
    const t1 = v1.set(1);
    assert.throws(() => v2.reset(t1), {
      code: "ERR_TOKEN_VAR_MISMATCH",
      message: /reset it through ContextVar\("v1"\), not ContextVar\("v2"\)/,
    });
  });

  it("ERR_TOKEN_CONTEXT_MISMATCH of a token set outside any run says to reset it there, not in a run", () => {
    const v = new ContextVar<number>("v");
    const token = v.set(1); // at the root of this test: no run set it
    assert.throws(() => new Context().run(() => v.reset(token)), {
      code: "ERR_TOKEN_CONTEXT_MISMATCH",
      message: /reset it where it was set: in the same run or task, or outside any run/,
    });
    v.reset(token);
  });

  it("ERR_TOKEN_VAR_MISMATCH between two vars of one name says so, not 'through x, not x'", () => {
    const mine = new ContextVar<number>("user");
    const theirs = new ContextVar<number>("user");
    const token = mine.set(1);
    assert.throws(
      () => theirs.reset(token),
      (err: unknown) => {
        assert.ok(err instanceof TokenMismatchError);
        assert.equal(err.code, "ERR_TOKEN_VAR_MISMATCH");
        assert.doesNotMatch(err.message, /through ContextVar\("user"\), not ContextVar\("user"\)/);
        assert.match(err.message, /another ContextVar also named "user"/);
        assert.match(err.message, /reset it through token\.var/);
        return true;
      },
    );
    mine.reset(token);
  });

  it("a function whose name is not a string is shown as [Function], not its source or a crash", () => {
    const symbolNamed = () => 0;
    Object.defineProperty(symbolNamed, "name", { value: Symbol("tag") });
    // As a class's `static name() {}` makes it: the name is a function.
    const methodNamed = () => 0;
    Object.defineProperty(methodNamed, "name", { value: () => "secret source" });
    const ctx = new Context();
    for (const fn of [symbolNamed, methodNamed]) {
      assert.throws(() => ctx.get(unsafe<ContextVar<unknown>>(fn)), {
        name: "TypeError",
        message: `Expected \`var\` to be a ContextVar, got \`[Function]\` (function), in ${ctx}.get()`,
      });
      assert.throws(() => new ContextVar(unsafe<string>(fn)), {
        name: "TypeError",
        message: "Expected `name` to be a string, got `[Function]` (function)",
      });
    }
  });

  it("gather([…]), an array as Promise.all takes one, says to spread it, and starts nothing", () => {
    let started = 0;
    const job = () => {
      started++;
    };
    assert.throws(() => gather(...([[job, job]] as unknown as [])), {
      name: "TypeError",
      message:
        "Expected `items[0]` to be a function or a PromiseLike, not an array (gather takes its items as arguments: spread an array, gather(...items)), got `[object Array]` (object)",
    });
    assert.throws(() => gather(job, ...([[Promise.resolve(1)]] as unknown as [])), {
      message: /^Expected `items\[1\]` .*gather\(\.\.\.items\)/,
    });
    assert.equal(started, 0);
  });

  it("createTask(work()), callSoon(work()) and run(main()), a promise as asyncio takes a coroutine, say to pass the function", async () => {
    const started = Promise.resolve(1);
    const group = new TaskGroup({ name: "g" });
    const cases: [() => unknown, string, string?][] = [
      [() => createTask(started as never), "createTask(() => work())"],
      [
        () => group.createTask(started as never),
        "group.createTask(() => work())",
        ', in TaskGroup("g").createTask()',
      ],
      [() => timeout(1000, started as never), "timeout(ms, () => work())"],
      [() => callSoon(started as never), "callSoon(() => work())"],
      [() => callLater(10, started as never), "callLater(ms, () => work())"],
    ];
    for (const [call, advice, where = ""] of cases) {
      assert.throws(call, {
        name: "TypeError",
        message: `Expected \`fn\` to be a function that starts the work, not a promise, which has started it in the caller's Context already: ${advice}, got \`[object Promise]\` (object)${where}`,
      });
    }
    // asyncio.run(main()).
    assert.throws(() => run(started as never), {
      name: "TypeError",
      message:
        "Expected `main` to be a function that starts the work, not a promise, which has started it in the caller's Context already: run(() => main()), got `[object Promise]` (object)",
    });
    await group.wait();
    // A group's createTask also names the group, as a var's or a Context's method does.
    const named = new TaskGroup({ name: "uploads" });
    assert.throws(() => named.createTask(42 as never), {
      name: "TypeError",
      message:
        'Expected `fn` to be a function, got `42` (number), in TaskGroup("uploads").createTask()',
    });
    await named.wait();
    // Anything else that is not a function is told only that.
    assert.throws(() => createTask(42 as never), {
      message: "Expected `fn` to be a function, got `42` (number)",
    });
  });

  it("a long string in a TypeError is cut at 40 characters", () => {
    assert.throws(() => createTask("x".repeat(50) as never), {
      message: `Expected \`fn\` to be a function, got \`"${"x".repeat(40)}…"\` (string)`,
    });
    assert.throws(() => createTask("x".repeat(41) as never), {
      message: `Expected \`fn\` to be a function, got \`"${"x".repeat(40)}…"\` (string)`,
    });
    assert.throws(() => createTask("x".repeat(40) as never), {
      message: `Expected \`fn\` to be a function, got \`"${"x".repeat(40)}"\` (string)`,
    });
  });

  it("a long string is not cut inside a surrogate pair: the pair goes whole or not at all", () => {
    // 39 units and an emoji (two units) straddle the cut at 40: the emoji goes.
    assert.throws(() => createTask(`${"x".repeat(39)}😀tail` as never), {
      message: `Expected \`fn\` to be a function, got \`"${"x".repeat(39)}…"\` (string)`,
    });
    // 38 units and the emoji end at 40: it stays, whole.
    assert.throws(() => createTask(`${"x".repeat(38)}😀tail` as never), {
      message: `Expected \`fn\` to be a function, got \`"${"x".repeat(38)}😀…"\` (string)`,
    });
  });

  it("a value that throws when read, or prints long, is shown safely, not thrown from or dumped", () => {
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const revokedFn = Proxy.revocable(() => {}, {});
    revokedFn.revoke();
    const trapping = new Proxy(
      {},
      {
        get() {
          throw new Error("trap");
        },
      },
    );
    const trappingFn = new Proxy(() => {}, {
      get() {
        throw new Error("trap");
      },
    });
    const throwingTag = {
      get [Symbol.toStringTag]() {
        throw new Error("tag");
      },
    };
    const x41 = "x".repeat(41);
    const x40 = "x".repeat(40);
    const cases: [unknown, string][] = [
      [revoked.proxy, "`[object]` (object)"],
      [trapping, "`[object]` (object)"],
      [throwingTag, "`[object]` (object)"],
      [revokedFn.proxy, "`[Function]` (function)"],
      [trappingFn, "`[Function]` (function)"],
      [
        Object.defineProperty(() => {}, "name", { value: x41 }),
        `\`[Function ${x40}…]\` (function)`,
      ],
      [{ [Symbol.toStringTag]: x41 }, `\`[object ${"x".repeat(32)}…\` (object)`],
      [Symbol(x41), `\`Symbol(${"x".repeat(33)}…\` (symbol)`],
      [10n ** 50n, `\`1${"0".repeat(39)}…\` (bigint)`],
      [Symbol(x40.slice(8)), `\`Symbol(${x40.slice(8)})\` (symbol)`],
      [Object.create(null), "`[object Object]` (object)"],
    ];
    const ctx = new Context();
    for (const [value, shown] of cases) {
      // A function goes where a ContextVar is expected; anything else where a function is.
      if (typeof value === "function") {
        assert.throws(() => ctx.get(unsafe<ContextVar<unknown>>(value)), {
          name: "TypeError",
          message: `Expected \`var\` to be a ContextVar, got ${shown}, in ${ctx}.get()`,
        });
      } else {
        assert.throws(() => createTask(value as never), {
          name: "TypeError",
          message: `Expected \`fn\` to be a function, got ${shown}`,
        });
      }
    }
  });

  it("a function in a TypeError is shown by its name", () => {
    const ctx = new Context();
    function userId() {}
    assert.throws(() => ctx.get(unsafe<ContextVar<unknown>>(userId)), {
      name: "TypeError",
      message: `Expected \`var\` to be a ContextVar, got \`[Function userId]\` (function), in ${ctx}.get()`,
    });
  });
});
