/**
 * Type tests for `contextvars/async-context`, the TC39 AsyncContext
 * proposal's API: Variable<T> (get is `T | undefined`, run's argument
 * inference), Snapshot's run and wrap (arguments, `this`, return, type
 * parameters and overloads kept), and the AsyncContext namespace (its
 * classes as values and as types). Only typechecked: nothing is called.
 */
import { AsyncContext, Snapshot, Variable, type VariableOptions } from "contextvars/async-context";
import { type Equal, expectType } from "./expect.ts";

export function variables(): void {
  const traceId = new AsyncContext.Variable<string>({ name: "traceId" });
  expectType<Equal<typeof traceId, Variable<string>>>();
  const current = traceId.get();
  expectType<Equal<typeof current, string | undefined>>();
  const withDefault = new Variable({ defaultValue: 0 });
  expectType<Equal<typeof withDefault, Variable<number>>>();
  expectType<Equal<typeof withDefault.name, string>>();
  // The namespace names the classes as types too, as the proposal's global does.
  const named: AsyncContext.Variable<string> = traceId;
  expectType<Equal<typeof named, Variable<string>>>();
  expectType<Equal<AsyncContext.Variable<number>, Variable<number>>>();
  expectType<Equal<AsyncContext.Snapshot, Snapshot>>();
  const options: VariableOptions<string> = { name: "x", defaultValue: "y" };
  new Variable(options);

  const length = traceId.run("t-1", (a: string, b: number) => a.length + b, "x", 1);
  expectType<Equal<typeof length, number>>();
  const later = traceId.run("t-1", async () => traceId.get());
  expectType<Equal<typeof later, Promise<string | undefined>>>();

  // @ts-expect-error the value must be a T
  traceId.run(1, () => {});
  // @ts-expect-error run needs a function
  traceId.run("t-1", "fn");
  // @ts-expect-error the arguments must fit fn
  traceId.run("t-1", (a: number) => a, "1");
  // @ts-expect-error the defaultValue must be a T
  new Variable<string>({ defaultValue: 1 });
  // @ts-expect-error fn is called without a `this`
  traceId.run("t-1", function (this: { n: number }) {
    return this.n;
  });
}

export function snapshots(): void {
  expectType<Equal<typeof AsyncContext.Snapshot, typeof Snapshot>>();
  const snapshot = new AsyncContext.Snapshot();
  const sum = snapshot.run((a: number, b: number) => a + b, 1, 2);
  expectType<Equal<typeof sum, number>>();

  const wrapped = Snapshot.wrap((name: string, times?: number) => name.repeat(times ?? 1));
  expectType<Equal<Parameters<typeof wrapped>, [name: string, times?: number]>>();
  expectType<Equal<ReturnType<typeof wrapped>, string>>();
  function describe(this: { id: number }, prefix: string): string {
    return `${prefix}${this.id}`;
  }
  const method = Snapshot.wrap(describe);
  expectType<Equal<ThisParameterType<typeof method>, { id: number }>>();
  expectType<Equal<ReturnType<typeof method>, string>>();

  // As bind's: a generic function stays generic, an overloaded one keeps
  // every overload.
  const identity = Snapshot.wrap(<T>(value: T): T => value);
  const same = identity(42 as const);
  expectType<Equal<typeof same, 42>>();
  function parse(text: string): number;
  function parse(bytes: Uint8Array): bigint;
  function parse(input: string | Uint8Array): number | bigint {
    return typeof input === "string" ? Number(input) : BigInt(input.length);
  }
  const wrappedParse = AsyncContext.Snapshot.wrap(parse);
  const fromText = wrappedParse("1");
  expectType<Equal<typeof fromText, number>>();
  const fromBytes = wrappedParse(new Uint8Array());
  expectType<Equal<typeof fromBytes, bigint>>();

  // @ts-expect-error run needs a function
  snapshot.run(1);
  // @ts-expect-error fn is called without a `this` (wrap keeps one)
  snapshot.run(method, "x");
  // @ts-expect-error wrap needs a function
  Snapshot.wrap("fn");
  // @ts-expect-error the wrapped function keeps its parameters
  wrapped(1);
  // @ts-expect-error the wrapped function keeps its `this` type
  method("x");
}
