/**
 * No public export of any entry point takes or gives `any`: for every
 * exported function, its parameters, its result and what the result awaits
 * to; for every class, its constructor's parameters and each member of its
 * instances, the same way. Generic signatures are read with their type
 * parameters at their constraints, overloaded ones by their last overload.
 * Two members are left out, whose types are not this package's: the
 * OpenTelemetry ContextManager interface's own `with` signature, and the
 * members Worker inherits from node:worker_threads (`postMessage(value: any)`).
 * Only typechecked: nothing is called.
 */
import type * as core from "contextvars";
import type * as asyncContext from "contextvars/async-context";
import type * as express from "contextvars/express";
import type * as fastify from "contextvars/fastify";
import type * as fetch from "contextvars/fetch";
import type * as hono from "contextvars/hono";
import type * as http from "contextvars/http";
import type * as koa from "contextvars/koa";
import type * as otel from "contextvars/otel";
import type * as pino from "contextvars/pino";
import type * as socketIo from "contextvars/socket.io";
import type * as winston from "contextvars/winston";
import type * as worker from "contextvars/worker";
import { type Equal, expectType, type IsAny } from "./expect.ts";

type SignatureHasAny<F> = F extends (...args: infer A) => infer R
  ? IsAny<A[number] | R | Awaited<R>>
  : false;
type ConstructorHasAny<C> = C extends abstract new (
  ...args: infer A
) => infer I
  ? IsAny<A[number]> extends true
    ? true
    : [MembersWithAny<I>] extends [never]
      ? false
      : true
  : false;
type HasAny<T> =
  IsAny<T> extends true ? true : SignatureHasAny<T> extends true ? true : ConstructorHasAny<T>;
/** The names of T's members that take or give `any` (never when none does). */
type MembersWithAny<T> = { [K in keyof T]-?: HasAny<T[K]> extends true ? K : never }[keyof T];

export function noAnyInTheEntryPoints(): void {
  expectType<Equal<MembersWithAny<typeof core>, never>>();
  expectType<Equal<MembersWithAny<typeof asyncContext>, never>>();
  expectType<Equal<MembersWithAny<typeof asyncContext.AsyncContext>, never>>();
  expectType<Equal<MembersWithAny<typeof http>, never>>();
  expectType<Equal<MembersWithAny<typeof fetch>, never>>();
  expectType<Equal<MembersWithAny<typeof express>, never>>();
  expectType<Equal<MembersWithAny<typeof fastify>, never>>();
  expectType<Equal<MembersWithAny<typeof hono>, never>>();
  expectType<Equal<MembersWithAny<typeof koa>, never>>();
  expectType<Equal<MembersWithAny<typeof pino>, never>>();
  expectType<Equal<MembersWithAny<typeof socketIo>, never>>();
  expectType<Equal<MembersWithAny<typeof winston>, never>>();
  expectType<Equal<MembersWithAny<Omit<typeof otel, "ContextVarsContextManager">>, never>>();
  expectType<Equal<MembersWithAny<Omit<otel.ContextVarsContextManager, "with">>, never>>();
  expectType<Equal<MembersWithAny<Omit<typeof worker, "Worker">>, never>>();
  expectType<
    Equal<MembersWithAny<Omit<worker.Worker, keyof import("node:worker_threads").Worker>>, never>
  >();

  // The generic classes at a concrete type too.
  expectType<Equal<MembersWithAny<core.ContextVar<number>>, never>>();
  expectType<Equal<MembersWithAny<core.Token<number>>, never>>();
  expectType<Equal<MembersWithAny<core.Task<number>>, never>>();
  expectType<Equal<MembersWithAny<core.Context>, never>>();
  expectType<Equal<MembersWithAny<core.TaskGroup>, never>>();
  expectType<Equal<MembersWithAny<worker.ContextPool<string, number>>, never>>();
  expectType<Equal<MembersWithAny<asyncContext.Variable<number>>, never>>();
  expectType<Equal<MembersWithAny<asyncContext.Snapshot>, never>>();

  // The check itself finds an `any` where there is one.
  // biome-ignore lint/suspicious/noExplicitAny: the `any`s the check must find
  expectType<Equal<MembersWithAny<{ f(x: any): void; g(): Promise<any>; h: number }>, "f" | "g">>();
}
