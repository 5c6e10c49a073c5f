// isolated(fn): each call in a fresh copy of the caller's Context, so that
// Promise.all over plain async calls behaves like asyncio.gather.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { ContextVar, createTask, isolated, timeout } from "contextvars";
import { fixtureResult } from "../helpers/fixture-process.ts";
import { itFromEveryState } from "../helpers/starting-states.ts";

const user = new ContextVar<string>("user", { default: "nobody" });

describe("isolated: each call in its own copy", () => {
  itFromEveryState("concurrent calls with equal delays never see each other", async () => {
    user.set("caller");
    const worker = isolated(async (name: string) => {
      assert.equal(user.get(), "caller");
      user.set(name);
      await sleep(5);
      const mid = user.get();
      await sleep(5);
      return `${mid}/${user.get()}`;
    });
    assert.deepEqual(await Promise.all([worker("alice"), worker("bob")]), [
      "alice/alice",
      "bob/bob",
    ]);
    assert.equal(user.get(), "caller");
  });

  itFromEveryState("sets before the first await stay inside too", () => {
    user.set("caller");
    const setter = isolated((name: string) => {
      user.set(name);
      return user.get();
    });
    assert.equal(setter("inner"), "inner");
    assert.equal(user.get(), "caller");
  });

  itFromEveryState(
    "the copy is taken at the call: later sets by the caller are not seen",
    async () => {
      user.set("at call");
      const reader = isolated(async () => {
        await sleep(1);
        return user.get();
      });
      const pending = reader();
      user.set("later");
      assert.equal(await pending, "at call");
    },
  );

  itFromEveryState("nested isolated calls each get a copy of their caller's", async () => {
    const inner = isolated(async () => {
      const seen = user.get();
      user.set("inner");
      await sleep(1);
      return seen;
    });
    const outer = isolated(async () => {
      user.set("outer");
      const seen = await inner();
      return [seen, user.get()];
    });
    assert.deepEqual(await outer(), ["outer", "outer"]);
  });
});

describe("isolated: a transparent wrapper", () => {
  it("keeps this, the arguments, the return value and the name", () => {
    const obj = {
      base: 10,
      add: isolated(function add(this: { base: number }, a: number, b: number) {
        return this.base + a + b;
      }),
    };
    assert.equal(obj.add(1, 2), 13);
    assert.equal(obj.add.name, "add");
    assert.equal(obj.add.call({ base: 100 }, 1, 1), 102);
  });

  it('a name that is not a string (a Symbol, a number, an object, undefined) becomes "", as Function#bind has it, and runs no code', () => {
    const calls: string[] = [];
    const named = (name: unknown) => {
      const fn = () => "ran";
      Object.defineProperty(fn, "name", { value: name });
      return fn;
    };
    const objectName = {
      toString() {
        calls.push("toString");
        return "from toString";
      },
    };
    // A function as name, as a class with a static name() method has: not its source text.
    const method = function method() {};
    const names = [Symbol("sym"), 42, objectName, undefined, null, method];
    for (const [i, name] of names.entries()) {
      const wrapper = isolated(named(name));
      assert.equal(wrapper.name, "", `names[${i}]`);
      assert.equal(wrapper(), "ran");
    }
    assert.deepEqual(calls, []);
  });

  it("keeps fn's length: createTask passes the signal, Express sees a 4-argument error handler", async () => {
    const lengths = [() => 0, (_a: number) => 1, (_a: 1, _b: 2) => 2, (_a: 1, _b: 2, _c: 3) => 3];
    for (const fn of lengths) assert.equal(isolated(fn).length, fn.length);
    assert.equal(isolated((_a: 1, _b: 2, _c: 3, _d: 4) => 4).length, 4);
    assert.equal(isolated((_a: 1, _b: 2, _c: 3, _d: 4, _e: 5, _f: 6) => 6).length, 6);
    assert.equal(isolated((_a: 1, _b = 2) => 1).length, 1, "a default ends the count, as for fn");
    const task = createTask(isolated((signal: AbortSignal) => signal));
    assert.equal(await task, task.signal);
    const seenByTimeout = await timeout(
      1_000,
      isolated((signal: AbortSignal) => signal),
    );
    assert.ok(seenByTimeout instanceof AbortSignal);
    // Called with fewer or more arguments than declared: fn sees exactly those.
    const count = isolated(function (this: unknown, _a: unknown, _b: unknown) {
      // biome-ignore lint/complexity/noArguments: the count is what is under test
      return arguments.length;
    });
    const loose = count as unknown as (...args: unknown[]) => number;
    assert.deepEqual([loose(), loose(1), loose(1, 2, 3)], [0, 1, 3]);
  });

  it("passes a synchronous throw and a rejection through unchanged", async () => {
    const boom = new Error("boom");
    assert.throws(
      isolated(() => {
        throw boom;
      }),
      (e) => e === boom,
    );
    await assert.rejects(
      isolated(async () => {
        throw boom;
      })(),
      (e) => e === boom,
    );
  });

  it("works as a TypeScript method decorator (@isolated)", async () => {
    class Service {
      readonly prefix = "user:";
      @isolated
      async handle(name: string): Promise<string> {
        user.set(name);
        await sleep(2);
        return this.prefix + user.get();
      }
    }
    const service = new Service();
    user.set("caller");
    assert.deepEqual(await Promise.all([service.handle("a"), service.handle("b")]), [
      "user:a",
      "user:b",
    ]);
    assert.equal(user.get(), "caller");
    assert.equal(Service.prototype.handle.name, "handle");
  });
});

describe("isolated: bad input", () => {
  for (const value of [42, null, undefined, "fn", {}]) {
    it(`isolated(${String(value)}): TypeError naming fn`, () => {
      assert.throws(
        () => isolated(value as never),
        (e: unknown) => e instanceof TypeError && /`fn`/.test(e.message),
      );
    });
  }

  it("applied as a legacy decorator (experimentalDecorators) to a field, an accessor or a non-function: TypeError naming the member and saying what to do, not a silent no-op", () => {
    class Service {
      get value() {
        return 1;
      }
    }
    // What a legacy decorator call passes: the prototype (or the class), the
    // key, the descriptor (none for a field).
    const legacy = isolated as unknown as (...args: unknown[]) => unknown;
    const cases: [unknown, string, PropertyDescriptor | undefined, string][] = [
      [Service.prototype, "handler", undefined, "`handler = isolated(() => …)`"],
      [
        Service.prototype,
        "value",
        Object.getOwnPropertyDescriptor(Service.prototype, "value"),
        "accessor",
      ],
      [Service, "limit", { value: 3, writable: true }, "not a function"],
    ];
    for (const [target, key, descriptor, advice] of cases) {
      assert.throws(
        () => legacy(target, key, descriptor),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.includes(`\`Service.${key}\``) &&
          e.message.includes("@isolated decorates methods") &&
          e.message.includes(advice),
      );
    }
  });
  it("applied as a standard decorator to a field, an accessor, a getter, a setter or a class: TypeError naming the member, as the legacy form's, not a wrapped getter or `fn` undefined", () => {
    // What a standard decorator call passes, as a JavaScript caller (Babel) would
    // apply it without TypeScript's compile error: the value, then the context.
    const standard = isolated as unknown as (value: unknown, context: object) => unknown;
    const cases: [unknown, object, string, string][] = [
      [
        undefined,
        { kind: "field", name: "handler" },
        "`handler` is a field",
        "`handler = isolated(() => …)`",
      ],
      [
        { get() {}, set() {} },
        { kind: "accessor", name: "count" },
        "`count` is an accessor",
        "decorate a method",
      ],
      [
        function value() {},
        { kind: "getter", name: "value" },
        "`value` is an accessor",
        "a method",
      ],
      [
        function value() {},
        { kind: "setter", name: "value" },
        "`value` is an accessor",
        "a method",
      ],
      [
        Symbol.for("m"),
        { kind: "field", name: Symbol("secret") },
        "`[Symbol(secret)]` is a field",
        "field",
      ],
      [class Service {}, { kind: "class", name: "Service" }, "`Service` is a class", "its methods"],
    ];
    for (const [value, context, named, advice] of cases) {
      assert.throws(
        () => standard(value, context),
        (e: unknown) =>
          e instanceof TypeError &&
          e.message.startsWith("@isolated decorates methods, and ") &&
          e.message.includes(named) &&
          e.message.includes(advice),
        `${String((context as { kind: string }).kind)}`,
      );
    }
    // A method, as before.
    const method = standard(function work() {}, { kind: "method", name: "work" });
    assert.equal(typeof method, "function");
  });
});

describe("isolated as a legacy decorator (experimentalDecorators)", () => {
  const fixture = fileURLToPath(new URL("./fixtures/legacy-decorators.ts", import.meta.url));
  const legacyConfig = fileURLToPath(
    new URL("./fixtures/tsconfig.legacy-decorators.json", import.meta.url),
  );
  const runFixture = (env: NodeJS.ProcessEnv) => fixtureResult<unknown>(fixture, { env });

  it("compiled with experimentalDecorators, wraps instance and static methods as the standard form does", async () => {
    const expected = {
      handled: ["user:a", "user:b"],
      made: ["c#1", "d#2"],
      caller: "caller",
      name: "handle",
      length: 2,
      enumerable: false,
      writable: true,
    };
    const { TSX_TSCONFIG_PATH: _, ...env } = process.env;
    const [legacy, standard] = await Promise.all([
      runFixture({ ...env, TSX_TSCONFIG_PATH: legacyConfig }),
      runFixture(env),
    ]);
    assert.deepEqual(legacy, expected);
    assert.deepEqual(standard, expected);
  });

  it("returns the method's descriptor with the wrapper as its value, every other attribute kept", async () => {
    async function handle(name: string): Promise<string> {
      user.set(name);
      await sleep(1);
      return user.get();
    }
    const descriptor = { value: handle, writable: false, enumerable: true, configurable: false };
    const legacy = isolated as unknown as (...args: unknown[]) => PropertyDescriptor;
    const result = legacy({}, "handle", descriptor);
    assert.deepEqual(
      { ...result, value: undefined },
      { value: undefined, writable: false, enumerable: true, configurable: false },
    );
    assert.notEqual(result.value, handle);
    assert.equal(descriptor.value, handle, "the descriptor passed in is not changed");
    user.set("caller");
    assert.deepEqual(await Promise.all([result.value("a"), result.value("b")]), ["a", "b"]);
    assert.equal(user.get(), "caller");
  });
});

describe("isolated as a legacy decorator, under reflect-metadata", () => {
  // reflect-metadata's API as that package installs it on Reflect (NestJS and
  // TypeORM load it), which this repository does not depend on: metadata kept
  // per target object in a WeakMap, so it never shows as a property.
  type MetadataApi = {
    defineMetadata(key: unknown, value: unknown, target: object): void;
    getOwnMetadata(key: unknown, target: object): unknown;
    getOwnMetadataKeys(target: object): unknown[];
  };
  function withMetadataApi(body: (api: MetadataApi) => void): void {
    const store = new WeakMap<object, Map<unknown, unknown>>();
    const api: MetadataApi = {
      defineMetadata(key, value, target) {
        const own = store.get(target) ?? new Map();
        own.set(key, value);
        store.set(target, own);
      },
      getOwnMetadata: (key, target) => store.get(target)?.get(key),
      getOwnMetadataKeys: (target) => [...(store.get(target)?.keys() ?? [])],
    };
    const names = Object.keys(api) as (keyof MetadataApi)[];
    const before = names.map((name) => Object.getOwnPropertyDescriptor(Reflect, name));
    Object.assign(Reflect, api);
    try {
      body(api);
    } finally {
      names.forEach((name, i) => {
        const descriptor = before[i];
        if (descriptor === undefined) delete (Reflect as Record<string, unknown>)[name];
        else Object.defineProperty(Reflect, name, descriptor);
      });
    }
  }

  it("keeps what decorators below it recorded on the method (NestJS's @Get(), @UseGuards()): `@isolated @Get()` still declares the route", () => {
    withMetadataApi((api) => {
      // What `@isolated @Get("orders") handle() {…}` does: TypeScript applies
      // the decorators bottom up, and @Get records its path on the function.
      const handle = function handle(): string {
        return user.get();
      };
      const Get = (path: string) => (_target: object, _key: string, d: PropertyDescriptor) => {
        api.defineMetadata("path", path, d.value);
        api.defineMetadata("method", 0, d.value);
        return d;
      };
      const legacy = isolated as unknown as (...args: unknown[]) => PropertyDescriptor;
      const descriptor = Get("orders")({}, "handle", { value: handle, writable: true });
      const result = legacy({}, "handle", descriptor);
      assert.notEqual(result.value, handle);
      assert.equal(api.getOwnMetadata("path", result.value), "orders");
      assert.equal(api.getOwnMetadata("method", result.value), 0);
      assert.deepEqual(
        api.getOwnMetadataKeys(handle),
        ["path", "method"],
        "the original keeps its own",
      );
    });
  });
});

describe("isolated and generator functions", () => {
  // Calling a generator function runs none of its body: only that call is in
  // the copy. The body runs where next() is called, as any generator's does
  // (docs/semantics.md); iterate inside the isolated function instead.
  itFromEveryState("an isolated async generator's body runs in the iterating Context", async () => {
    user.set("caller");
    const lines = isolated(async function* () {
      user.set("inside");
      yield user.get();
    });
    const seen: string[] = [];
    for await (const line of lines()) seen.push(line);
    assert.deepEqual(seen, ["inside"]);
    assert.equal(user.get(), "inside", "the body's set reached the caller");
    user.set("caller");
    const iterateInside = isolated(async () => {
      const got: string[] = [];
      for await (const line of (async function* () {
        user.set("inside");
        yield user.get();
      })())
        got.push(line);
      return got;
    });
    assert.deepEqual(await iterateInside(), ["inside"]);
    assert.equal(user.get(), "caller", "iterated inside the isolated function, it stays there");
  });
});
