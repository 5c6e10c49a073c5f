/**
 * Type tests for `contextvars/pino` and `contextvars/winston`: the mixin,
 * format and defaultMeta fit the loggers' own (installed) option types, and
 * fields take ContextVars of any type or functions, nothing else. Only
 * typechecked: nothing is called.
 */
import { trace } from "@opentelemetry/api";
import { ContextVar } from "contextvars";
import { requestId } from "contextvars/http";
import { contextMixin, type LogFields } from "contextvars/pino";
import {
  type ContextFormat,
  contextFormat,
  contextMeta,
  type LogFields as WinstonLogFields,
} from "contextvars/winston";
import pino, { type LoggerOptions } from "pino";
import winston from "winston";
import { type Equal, expectType } from "./expect.ts";

const user = new ContextVar<string>("user");
const attempt = new ContextVar<number>("attempt", { default: 0 });
const session = new ContextVar<{ id: string } | undefined>("session");

export function pinoMixin(): void {
  const mixin = contextMixin({
    requestId,
    user,
    attempt,
    session,
    traceId: () => trace.getActiveSpan()?.spanContext().traceId,
  });
  expectType<Equal<typeof mixin, () => Record<string, unknown>>>();
  const logger = pino({ mixin });
  logger.child({ module: "db" }).info("hello");
  const options: LoggerOptions = { mixin: contextMixin({ user }) };
  pino(options);
  // Called from one's own mixin, beside other fields.
  const fields = contextMixin({ user });
  pino({ mixin: (merge, level) => ({ ...fields(), level, merged: merge }) });
  expectType<Equal<LogFields, WinstonLogFields>>();

  // @ts-expect-error a field is a ContextVar or a function, not a value
  contextMixin({ user: "alice" });
  // @ts-expect-error a field function takes no arguments
  contextMixin({ traceId: (span: string) => span });
  // @ts-expect-error fields are an object
  contextMixin([user]);
  // @ts-expect-error a field function is synchronous: the line would get a promise
  contextMixin({ traceId: async () => "t" });
  // @ts-expect-error a field function returning a PromiseLike
  contextMixin({ traceId: (): PromiseLike<string> => Promise.resolve("t") });
}

export function winstonFormat(): void {
  const fields: LogFields = { requestId, user, attempt };
  const format = contextFormat(fields);
  expectType<Equal<typeof format, ContextFormat>>();
  expectType<Equal<ContextFormat, winston.Logform.Format>>();
  const meta = contextMeta(fields);
  expectType<Equal<typeof meta, Readonly<Record<string, unknown>>>>();
  winston.createLogger({
    defaultMeta: meta,
    format: winston.format.combine(format, winston.format.json()),
    transports: [new winston.transports.Console()],
  });
  winston.createLogger({ format: contextFormat({ user, traceId: () => "t" }) });

  // @ts-expect-error a field is a ContextVar or a function
  contextFormat({ user: 1 });
  // @ts-expect-error a field is a ContextVar or a function
  contextMeta({ user: null });
  // @ts-expect-error a field function is synchronous
  contextFormat({ region: () => Promise.resolve("eu") });
  // Any other value goes: objects, null, a function's void.
  contextFormat({ span: () => ({ id: "s" }), none: () => null, nothing: () => {} });
}
