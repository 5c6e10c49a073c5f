/**
 * `contextvars/winston`: ContextVars on every winston log entry.
 *
 * Where the values are read
 * -------------------------
 * A winston logger is an object-mode stream. `logger.info()` builds the
 * entry and writes it, and the logger's format runs inside that write, in
 * the caller's Context, as long as the stream is flowing. When a transport
 * is slower than the logging (its `log` callback comes later: a file under
 * load, a network transport), the stream pushes back and winston queues
 * entries, then formats them when the transport catches up: in the Context
 * of whatever runs then. Measured here with such a transport and 300
 * concurrent tasks, a format alone put the wrong request's values on most
 * entries. `contextMeta` is read when the entry is built (winston copies its
 * `defaultMeta` into the entry in `logger.info()` itself), so it is right
 * whatever the transports do; `contextFormat` then keeps those values.
 */
import winston from "winston";
import { checkFields, type LogFields, writeFields } from "./log-fields.ts";

export type { LogFields };

/**
 * A winston (logform) format, as `winston.format.json()` returns.
 *
 * @example
 * const format: ContextFormat = contextFormat({ requestId });
 */
export type ContextFormat = winston.Logform.Format;

/**
 * A winston format that adds `fields` to every log entry (`info`): for each
 * name, the var's value in the current Context (else its default; a var
 * with neither is left out), or the value of a function read per entry. A
 * field the entry already has (from the log call's meta, `defaultMeta`, a
 * child logger's metadata) is kept as it is, as pino keeps the log call's
 * own fields. Put it before the format that serialises (`json()`,
 * `printf()`). With a transport that can fall behind, also give the logger
 * `defaultMeta: contextMeta(fields)` (see the module comment): the format
 * then keeps the values read when each entry was made. Child loggers go
 * through the same format. It never throws: a field function that throws
 * is left out of that entry.
 *
 * @example
 * import winston from "winston";
 * import { ContextVar } from "contextvars";
 * import { requestId } from "contextvars/http";
 * import { contextFormat, contextMeta } from "contextvars/winston";
 *
 * const user = new ContextVar<string>("user");
 * const fields = { requestId, user };
 * const logger = winston.createLogger({
 *   defaultMeta: contextMeta(fields),
 *   format: winston.format.combine(contextFormat(fields), winston.format.json()),
 *   transports: [new winston.transports.File({ filename: "app.log" })],
 * });
 * user.run("alice", () => logger.info("hello")); // {"level":"info","message":"hello","user":"alice",…}
 * @example
 * // With the active trace id (from @opentelemetry/api):
 * import { trace } from "@opentelemetry/api";
 * const traced = contextFormat({ traceId: () => trace.getActiveSpan()?.spanContext().traceId });
 * @throws {TypeError} if fields is not an object, or a field is neither a ContextVar nor a function.
 */
export function contextFormat(fields: LogFields): ContextFormat {
  const checked = checkFields(fields);
  const transform = winston.format(function contextFormat(info) {
    writeFields(checked, info as Record<string, unknown>, true);
    return info;
  });
  return transform();
}

/**
 * An object for winston's `defaultMeta` option whose properties read
 * `fields` at the moment an entry is made: in `logger.info()` itself, in
 * the caller's Context, before any queueing. A field with no value reads as
 * `undefined`, which `json()` leaves out. Winston's own rules apply: for a
 * call with a single object (`logger.info({ message, user })`), defaultMeta
 * overrides the object's fields; for `logger.info(message, meta)`, `meta`
 * wins.
 *
 * @example
 * const logger = winston.createLogger({
 *   defaultMeta: contextMeta({ requestId, user }),
 *   format: winston.format.json(),
 *   transports: [new winston.transports.Console()],
 * });
 * @throws {TypeError} as contextFormat.
 */
export function contextMeta(fields: LogFields): Readonly<Record<string, unknown>> {
  const meta: Record<string, unknown> = {};
  for (const { key, read } of checkFields(fields)) {
    Object.defineProperty(meta, key, { get: read, enumerable: true });
  }
  return Object.freeze(meta);
}
