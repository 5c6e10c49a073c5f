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
 * of whatever runs then. Measured here with such a transport and 200
 * concurrent tasks, a format alone put the wrong request's values on most
 * entries. `contextMeta` is read when the entry is built (winston copies its
 * `defaultMeta` into the entry in `logger.info()` itself), so it is right
 * whatever the transports do; `contextFormat` then keeps those values.
 */
import winston from "winston";
import { checkFields, type LogFields, writeFields } from "./log-fields.ts";

export type { LogFields };

// An import type, not `winston.Logform`: the declarations then hold no
// default import of winston, which TypeScript 5 refuses without
// esModuleInterop (a CommonJS project, moduleResolution node10).
/**
 * A winston (logform) format, as `winston.format.json()` returns.
 *
 * @example
 * const format: ContextFormat = contextFormat({ requestId });
 */
export type ContextFormat = import("winston").Logform.Format;

/**
 * A winston format that adds `fields` to every log entry (`info`): for each
 * name, the var's value in the current Context (else its default; a var
 * with neither is left out), or the value of a function read per entry. A
 * field the entry already has (from the log call's meta, `defaultMeta`, a
 * child logger's metadata) is kept as it is, as pino keeps the log call's
 * own fields; what this format wrote into an object logged before
 * (`logger.info(object)` formats your object itself) is not, so the object
 * logged again gets fresh values; a copy of it (a child logger's entry, or
 * the object given as meta) keeps them as its own, so don't pass an object
 * logged as an entry to a child or as meta from another Context. Put it before the format that serialises
 * (`json()`, `printf()`). With a transport that can fall behind, also give
 * the logger `defaultMeta: contextMeta(fields)` (see the module comment):
 * the format then keeps the values read when each entry was made. Child
 * loggers go through the same format. It never throws: a field function
 * that throws is left out of that entry.
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
 * @throws {TypeError} if fields is not an object or is an array, or a field is neither a ContextVar nor a function.
 */
export function contextFormat(fields: LogFields): ContextFormat {
  const checked = checkFields(fields);
  // `logger.info(object)` formats the caller's own object, which may be logged again from
  // another Context: what this format wrote into it then is not a field the entry has, so
  // it is taken out first, unless the caller has changed it since.
  const written = entryRecord<unknown[]>();
  const transform = winston.format(function contextFormat(info) {
    const line = info as Record<string, unknown>;
    const before = written.get(info);
    if (before !== undefined) {
      for (let i = 0; i < before.length; i += 2) {
        const key = before[i] as string;
        if (Object.hasOwn(line, key) && Object.is(line[key], before[i + 1])) delete line[key];
      }
    }
    const wrote: unknown[] = [];
    writeFields(checked, line, true, wrote);
    if (wrote.length > 0 || before !== undefined) written.set(info, wrote);
    return info;
  });
  return transform();
}

/**
 * A constructor that returns the object it is given: `new` on a subclass
 * then adds the subclass's private fields to that object.
 */
class OnEntry {
  constructor(entry: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the object is the point, see entryRecord
    return entry;
  }
}

/**
 * A value kept on entry objects themselves, one private field per call, so
 * no format, transport or `inspect` sees it. Measured on a whole winston
 * line with three fields: 7–10% over no record, where a WeakMap keyed by
 * entry (every entry an ephemeron for the garbage collector) cost 10–22%.
 */
function entryRecord<T>(): {
  get(entry: object): T | undefined;
  set(entry: object, value: T): void;
} {
  class Stamp extends OnEntry {
    #value: T | undefined;
    static get(entry: object): T | undefined {
      return #value in entry ? (entry as Stamp).#value : undefined;
    }
    static set(entry: object, value: T): void {
      if (#value in entry) (entry as Stamp).#value = value;
      else new Stamp(entry).#value = value;
    }
  }
  return Stamp;
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
