/**
 * `contextvars/pino`: ContextVars on every pino log line.
 *
 * Where the values are read
 * -------------------------
 * pino calls its `mixin` inside `logger.info()` itself, while it builds the
 * line and before the line reaches any destination: the values are those of
 * the caller's Context, whatever the destination does afterwards (an
 * asynchronous `pino.destination({ sync: false })`, a transport on a worker
 * thread). No second hook is needed, unlike winston's formats, which a slow
 * transport can delay (see `contextvars/winston`).
 */
import { checkFields, type LogFields, writeFields } from "./log-fields.ts";

export type { LogFields };

/**
 * A pino `mixin` that adds `fields` to every log line: for each name, the
 * var's value in the Context the line is logged from (else its default; a
 * var with neither is left out), or the value of a function read per line.
 * Child loggers inherit the mixin, so `logger.child({ module: "db" })`
 * lines carry the fields too. Fields given in the log call itself win over
 * the mixin's (pino's default merge); reading one costs about one
 * `ContextVar#get` (see docs/observability-benchmarks.md).
 *
 * Pass it as pino's `mixin` option, or call it from your own mixin to
 * combine it with other fields. It never throws: a field function that
 * throws is left out of that line.
 *
 * @example
 * import pino from "pino";
 * import { ContextVar } from "contextvars";
 * import { requestId } from "contextvars/http";
 * import { contextMixin } from "contextvars/pino";
 *
 * const user = new ContextVar<string>("user");
 * const logger = pino({ mixin: contextMixin({ requestId, user }) });
 * user.run("alice", () => logger.info("hello"));
 * // {"level":30,…,"user":"alice","msg":"hello"}: requestId, with no value outside a request, is left out
 * @example
 * // With the active trace id (from @opentelemetry/api) beside the vars:
 * import { trace } from "@opentelemetry/api";
 * const traced = pino({
 *   mixin: contextMixin({ requestId, traceId: () => trace.getActiveSpan()?.spanContext().traceId }),
 * });
 * @throws {TypeError} if fields is not an object or is an array, or a field is neither a ContextVar nor a function;
 *   or when given to pino uncalled (`mixin: contextMixin`): then at each log call.
 */
export function contextMixin(fields: LogFields): () => Record<string, unknown> {
  // `mixin: contextMixin`: pino calls it with (mergeObject, level, logger),
  // and the log call's own object would be taken for the fields (a line
  // without them, or a TypeError naming one of the call's keys).
  // biome-ignore lint/complexity/noArguments: a mixin given uncalled shows only in its argument count
  if (arguments.length > 1) {
    throw new TypeError(
      "contextMixin was called as pino's mixin, with (mergeObject, level, logger): it makes the mixin, so pass mixin: contextMixin(fields), not contextMixin itself",
    );
  }
  const checked = checkFields(fields);
  return function contextMixin(): Record<string, unknown> {
    // A fresh object per line: pino merges the log call's own fields into it.
    const line: Record<string, unknown> = {};
    writeFields(checked, line, false);
    return line;
  };
}
