/**
 * Type tests for the task API of `contextvars`: createTask (Task<T> from a
 * sync function, an async one, one returning a PromiseLike; the signal
 * parameter; options), awaiting a Task, currentTask, gather's tuple of
 * awaited results, TaskGroup and taskGroup, isolated (also as a decorator),
 * callSoon/callLater, run and timeout. Only typechecked: nothing is called.
 */
import {
  type CallHandle,
  ContextVar,
  callLater,
  callSoon,
  copyContext,
  createTask,
  currentTask,
  type Gathered,
  type GatherItem,
  gather,
  isolated,
  run,
  Task,
  type TaskFunction,
  TaskGroup,
  type TaskGroupOptions,
  type TaskOptions,
  taskGroup,
  timeout,
} from "contextvars";
import { type Equal, type Extends, expectFalse, expectType, type IsAny } from "./expect.ts";

declare const thenable: PromiseLike<string>;

export async function createTaskInfersT(): Promise<void> {
  const sync = createTask(() => 42);
  expectType<Equal<typeof sync, Task<number>>>();
  const fromAsync = createTask(async () => "text");
  expectType<Equal<typeof fromAsync, Task<string>>>();
  const fromThenable = createTask(() => thenable);
  expectType<Equal<typeof fromThenable, Task<string>>>();
  const fromVoid = createTask(async () => {});
  expectType<Equal<typeof fromVoid, Task<void>>>();
  const nested = createTask(async () => Promise.resolve(1));
  expectType<Equal<typeof nested, Task<number>>>();
  const either = createTask((): number | Promise<number> => 1);
  expectType<Equal<typeof either, Task<number>>>();
  const explicit = createTask<number | null>(() => null);
  expectType<Equal<typeof explicit, Task<number | null>>>();

  // The function gets the task's AbortSignal.
  const fetched = createTask(async (signal) => {
    expectType<Equal<typeof signal, AbortSignal>>();
    return signal.aborted;
  });
  expectType<Equal<typeof fetched, Task<boolean>>>();

  // A sync function that takes the signal; one that only throws; one that
  // returns a Task (awaited, as a returned promise is); a literal widens.
  const syncSignal = createTask((signal: AbortSignal) => signal.reason as Error);
  expectType<Equal<typeof syncSignal, Task<Error>>>();
  const throws = createTask(() => {
    throw new Error("no");
  });
  expectType<Equal<typeof throws, Task<never>>>();
  const ofTask = createTask(() => createTask(async () => "inner"));
  expectType<Equal<typeof ofTask, Task<string>>>();
  const literal = createTask(() => "a");
  expectType<Equal<typeof literal, Task<string>>>();
  const kept = createTask(async () => [1, "a"] as const);
  expectType<Equal<typeof kept, Task<readonly [1, "a"]>>>();
  // As with Promise#then, T is inferred from `T | PromiseLike<T>`: a function
  // returning a value of one type or a promise of another needs T written.
  // @ts-expect-error number | Promise<string> infers T = string
  createTask(() => (Math.random() > 0.5 ? 1 : Promise.resolve("one")));
  const written = createTask<number | string>(() =>
    Math.random() > 0.5 ? 1 : Promise.resolve("one"),
  );
  expectType<Equal<typeof written, Task<number | string>>>();

  // Awaiting a Task gives T; it is a PromiseLike<T>.
  const n = await sync;
  expectType<Equal<typeof n, number>>();
  const text = await fromAsync;
  expectType<Equal<typeof text, string>>();
  expectType<Equal<Awaited<Task<Date>>, Date>>();
  expectType<Extends<Task<number>, PromiseLike<number>>>();
  const all = await Promise.all([sync, fromAsync]);
  expectType<Equal<typeof all, [number, string]>>();
  const chained = sync.then((value) => String(value));
  expectType<Equal<typeof chained, Promise<string>>>();
  const caught = sync.catch((reason) => {
    expectType<Equal<typeof reason, unknown>>();
    return "failed" as const;
  });
  expectType<Equal<typeof caught, Promise<number | "failed">>>();
  expectType<Equal<ReturnType<typeof sync.finally>, Promise<number>>>();

  expectType<Equal<typeof sync.name, string>>();
  expectType<Equal<typeof sync.signal, AbortSignal>>();
  expectType<Equal<typeof sync.done, boolean>>();
  expectType<Equal<typeof sync.cancelled, boolean>>();
  expectType<Equal<ReturnType<typeof sync.cancel>, boolean>>();
  sync.cancel();
  sync.cancel(new Error("stop"));

  const options: TaskOptions = {
    name: "fetch",
    context: copyContext(),
    signal: AbortSignal.timeout(10),
  };
  createTask(() => 1, options);
  const fn: TaskFunction<number> = async () => 1;
  expectType<Equal<ReturnType<typeof createTask<number>>, Task<number>>>();
  createTask(fn);

  const current = currentTask();
  expectType<Equal<typeof current, Task<unknown> | undefined>>();
  expectType<Extends<Task<number>, Task<unknown>>>();

  // @ts-expect-error createTask needs a function
  createTask(42);
  // @ts-expect-error a promise is not a task function: pass () => promise
  createTask(Promise.resolve(1));
  // @ts-expect-error the function's parameter is the AbortSignal
  createTask((name: string) => name);
  // @ts-expect-error the name is a string
  createTask(() => 1, { name: 1 });
  // @ts-expect-error the context must be a Context
  createTask(() => 1, { context: {} });
  // @ts-expect-error an unknown option
  createTask(() => 1, { timeout: 10 });
  // @ts-expect-error tasks come only from createTask
  new Task(() => 1);
  // @ts-expect-error the function is called without a `this`
  createTask(function (this: { url: string }) {
    return this.url;
  });
  // @ts-expect-error done is read-only
  sync.done = true;
}

export async function gatherGivesATuple(): Promise<void> {
  const task = createTask(async () => new Date());
  const mixed = await gather(
    () => 1,
    async () => "text",
    Promise.resolve(true),
    thenable,
    task,
    (signal) => signal,
    async () => {},
  );
  // biome-ignore lint/suspicious/noConfusingVoidType: what `await (async () => {})()` gives is void
  type Results = [number, string, boolean, string, Date, AbortSignal, void];
  expectType<Equal<typeof mixed, Results>>();

  const none = await gather();
  expectType<Equal<typeof none, []>>();

  // An array of unknown length gives an array.
  const jobs: Array<() => Promise<number>> = [];
  const many = await gather(...jobs);
  expectType<Equal<typeof many, number[]>>();

  const pending = gather(() => 1);
  expectType<Equal<typeof pending, Promise<[number]>>>();

  // Past a dozen items the tuple goes on (no overloads to run out of).
  const thirteen = await gather(
    () => 1,
    () => 2,
    () => 3,
    () => 4,
    () => 5,
    () => 6,
    () => 7,
    () => 8,
    () => 9,
    () => 10,
    () => 11,
    async () => "12",
    () => 13n,
  );
  type N = number;
  expectType<Equal<typeof thirteen, [N, N, N, N, N, N, N, N, N, N, N, string, bigint]>>();

  // A spread `as const` array or a tuple keeps its positions; a spread
  // array of a union gives an array of the union.
  const steps = [() => 1, async () => "two", Promise.resolve(true)] as const;
  const stepped = await gather(...steps);
  expectType<Equal<typeof stepped, [number, string, boolean]>>();
  const pair: [() => Date, PromiseLike<string>] = [() => new Date(), thenable];
  const paired = await gather(...pair);
  expectType<Equal<typeof paired, [Date, string]>>();
  const either: Array<(() => number) | Promise<string>> = [];
  const eithers = await gather(...either);
  expectType<Equal<typeof eithers, (number | string)[]>>();
  const head = await gather(() => new Date(), ...jobs);
  expectType<Equal<typeof head, [Date, ...number[]]>>();

  // Functions returning plain values, literals, undefined, never, a Task,
  // or taking the signal as optional.
  const plain = await gather(
    () => [1, 2],
    () => ({ id: "a" }),
    () => "lit" as const,
    () => undefined,
    () => createTask(async () => 1n),
    (signal?: AbortSignal) => signal?.aborted,
  );
  expectType<
    Equal<typeof plain, [number[], { id: string }, "lit", undefined, bigint, boolean | undefined]>
  >();
  const fails = await gather(() => {
    throw new Error("no");
  });
  expectType<Equal<typeof fails, [never]>>();

  expectType<Equal<Gathered<() => Promise<number>>, number>>();
  expectType<Equal<Gathered<PromiseLike<string>>, string>>();
  expectType<Extends<Task<number>, GatherItem>>();

  // The results are mutable, as Promise.all's are, and not `any`.
  const [first] = mixed;
  expectFalse<IsAny<typeof first>>();
  mixed[0] = 2;

  // @ts-expect-error a plain value is neither a function nor a PromiseLike (a TypeError at runtime)
  gather(() => 1, 42);
  // @ts-expect-error a function whose parameter is not the AbortSignal
  gather((name: string) => name);
  // @ts-expect-error a function is called without a `this`
  gather(function (this: { n: number }) {
    return this.n;
  });
  // @ts-expect-error the result's type is kept
  const wrong: [string] = await gather(() => 1);
  void wrong;
}

export async function taskGroups(): Promise<void> {
  const group = new TaskGroup({ name: "fetches", signal: AbortSignal.timeout(100) });
  const child = group.createTask(async () => 1, { name: "one" });
  expectType<Equal<typeof child, Task<number>>>();
  expectType<Equal<ReturnType<typeof group.wait>, Promise<void>>>();
  expectType<Equal<typeof group.name, string>>();
  expectType<Equal<typeof group.signal, AbortSignal>>();
  expectType<Extends<TaskGroup, AsyncDisposable>>();
  const options: TaskGroupOptions = { name: "x" };
  new TaskGroup(options);
  new TaskGroup();

  {
    await using tg = new TaskGroup();
    tg.createTask((signal) => signal.aborted);
  }

  // The group's createTask infers as createTask does.
  const syncChild = group.createTask(() => "now");
  expectType<Equal<typeof syncChild, Task<string>>>();
  const withSignal = group.createTask((signal) => {
    expectType<Equal<typeof signal, AbortSignal>>();
    return signal.aborted;
  });
  expectType<Equal<typeof withSignal, Task<boolean>>>();
  const voidChild = group.createTask(async () => {});
  expectType<Equal<typeof voidChild, Task<void>>>();
  const thenChild = group.createTask(() => thenable, { context: copyContext() });
  expectType<Equal<typeof thenChild, Task<string>>>();

  const users = await taskGroup(async (tg) => {
    expectType<Equal<typeof tg, TaskGroup>>();
    const a = tg.createTask(() => ({ id: 1 }));
    const b = tg.createTask(async () => ({ id: 2 }));
    return [await a, await b] as const;
  });
  expectType<Equal<typeof users, readonly [{ id: number }, { id: number }]>>();
  const syncBody = taskGroup(() => "done");
  expectType<Equal<typeof syncBody, Promise<string>>>();
  const withOptions = taskGroup(() => 1, { name: "fan-out", signal: AbortSignal.timeout(100) });
  expectType<Equal<typeof withOptions, Promise<number>>>();
  // @ts-expect-error taskGroup's options are a TaskGroup's
  taskGroup(() => 1, { signal: "abort" });

  // @ts-expect-error createTask needs a function
  group.createTask(1);
  // @ts-expect-error the body gets the group, not a string
  taskGroup((tg: string) => tg);
  // @ts-expect-error options are an object
  new TaskGroup("name");
  // @ts-expect-error the function is called without a `this`
  group.createTask(function (this: { n: number }) {
    return this.n;
  });
  // @ts-expect-error the body is called without a `this`
  taskGroup(function (this: { n: number }) {
    return this.n;
  });
}

export async function isolatedKeepsTheSignature(): Promise<void> {
  const user = new ContextVar<string>("user");
  const worker = isolated(async (name: string, delay?: number) => {
    user.set(name);
    return delay ?? 0;
  });
  expectType<Equal<typeof worker, (name: string, delay?: number) => Promise<number>>>();
  const results = await Promise.all([worker("alice"), worker("bob", 1)]);
  expectType<Equal<typeof results, [number, number]>>();

  function greet(this: { greeting: string }, name: string): string {
    return `${this.greeting} ${name}`;
  }
  expectType<Equal<ReturnType<typeof isolated<typeof greet>>, typeof greet>>();

  class Handler {
    prefix = "h";
    @isolated
    async handle(id: number): Promise<string> {
      user.set(`${this.prefix}${id}`);
      return user.get();
    }
  }
  const handled = await new Handler().handle(1);
  expectType<Equal<typeof handled, string>>();

  // Methods that declare their `this`, static ones, private ones, generic
  // ones, in a class with private fields: the decorator takes each.
  class Account {
    static opened = 0;
    #token = "t";
    @isolated
    async refresh(this: Account, attempt: number): Promise<string> {
      return `${this.#token}${attempt}${this.#sign()}`;
    }
    @isolated
    static async open(this: typeof Account): Promise<number> {
      return ++Account.opened;
    }
    @isolated
    echo<T>(value: T): T {
      return value;
    }
    @isolated
    #sign(): string {
      return this.#token;
    }
  }
  const refreshed = new Account().refresh(1);
  expectType<Equal<typeof refreshed, Promise<string>>>();
  const opened = Account.open();
  expectType<Equal<typeof opened, Promise<number>>>();
  const echoed = new Account().echo(7 as const);
  expectType<Equal<typeof echoed, 7>>();
  class Box<T> {
    constructor(readonly value: T) {}
    @isolated
    read(this: Box<T>): T {
      return this.value;
    }
  }
  expectType<Equal<ReturnType<Box<Date>["read"]>, Date>>();
  class NotMethods {
    // @ts-expect-error a field is not a method
    @isolated handler = () => 1;
    // @ts-expect-error a getter is not a method
    @isolated get value(): number {
      return 1;
    }
  }
  void NotMethods;

  // Generic and overloaded functions keep their type parameters and overloads.
  const first = isolated(async <T>(items: readonly T[]): Promise<T | undefined> => items[0]);
  const firstName = await first(["a", "b"] as const);
  expectType<Equal<typeof firstName, "a" | "b" | undefined>>();
  function load(id: number): Promise<{ id: number }>;
  function load(ids: number[]): Promise<{ id: number }[]>;
  async function load(arg: number | number[]): Promise<unknown> {
    return arg;
  }
  const loadIn = isolated(load);
  const many = await loadIn([1, 2]);
  expectType<Equal<typeof many, { id: number }[]>>();
  const single = await loadIn(1);
  expectType<Equal<typeof single, { id: number }>>();

  // @ts-expect-error isolated needs a function
  isolated("worker");
  // @ts-expect-error the wrapper takes fn's arguments
  worker(1);
}

export function scheduling(): void {
  const soon = callSoon((a: number, b: string) => a + b, 1, "x");
  expectType<Equal<typeof soon, CallHandle>>();
  expectType<Equal<ReturnType<CallHandle["cancel"]>, void>>();
  expectType<Equal<CallHandle["cancelled"], boolean>>();
  soon.cancel();
  const later = callLater(100, (name: string) => name.length, "x");
  expectType<Equal<typeof later, CallHandle>>();
  callLater(0, async () => {});
  // Optional and rest parameters, and generic functions, type the arguments.
  callSoon((a: number, b?: string) => a + (b ?? ""), 1);
  callLater(5, (...codes: number[]) => codes.length, 1, 2, 3);
  callSoon(<T>(value: T) => value, new Date());
  // @ts-expect-error a rest argument of the wrong type
  callLater(5, (...codes: number[]) => codes.length, 1, "2");
  // @ts-expect-error no arguments for a function that takes none
  callSoon(() => {}, 1);

  // @ts-expect-error callSoon needs a function
  callSoon("later");
  // @ts-expect-error the arguments must fit fn
  callSoon((a: number) => a, "1");
  // @ts-expect-error a missing argument
  callSoon((a: number) => a);
  // @ts-expect-error the delay comes first
  callLater(() => {}, 100);
  // @ts-expect-error the delay is a number
  callLater("100", () => {});
  // @ts-expect-error the arguments must fit fn
  callLater(1, (a: number) => a, "1");
  // @ts-expect-error cancelled is read-only
  soon.cancelled = true;
  // @ts-expect-error fn is called without a `this`
  callSoon(function (this: { n: number }) {
    return this.n;
  });
  // @ts-expect-error fn is called without a `this`
  callLater(1, function (this: { n: number }) {
    return this.n;
  });
}

export async function runAndTimeout(): Promise<void> {
  const main = run(async () => 1);
  expectType<Equal<typeof main, Promise<number>>>();
  const syncMain = run(() => "x");
  expectType<Equal<typeof syncMain, Promise<string>>>();
  const thenableMain = run(() => thenable);
  expectType<Equal<typeof thenableMain, Promise<string>>>();

  const limited = timeout(5_000, async (signal) => {
    expectType<Equal<typeof signal, AbortSignal>>();
    return new URL("https://example.com");
  });
  expectType<Equal<typeof limited, Task<URL>>>();
  const named = timeout(10, () => 1, { name: "quick" });
  expectType<Equal<Awaited<typeof named>, number>>();

  // @ts-expect-error run needs a function
  run(Promise.resolve(1));
  // @ts-expect-error main takes no arguments
  run((name: string) => name);
  // @ts-expect-error the milliseconds come first
  timeout(() => 1, 10);
  // @ts-expect-error timeout needs a function
  timeout(10, Promise.resolve(1));
  // @ts-expect-error main is called without a `this`
  run(function (this: { n: number }) {
    return this.n;
  });
  // @ts-expect-error fn is called without a `this`
  timeout(10, function (this: { n: number }) {
    return this.n;
  });
}
