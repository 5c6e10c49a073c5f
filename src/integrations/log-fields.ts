/**
 * What `contextvars/pino` and `contextvars/winston` add to a log line: the
 * fields, checked once and read per line. Internal: the two subpaths
 * re-export the `LogFields` type.
 */
import { type ContextVar, isContextVar } from "../core/context-var.ts";
import { MISSING } from "../core/missing.ts";
import type { Synchronous } from "../core/then-of.ts";
import { argumentError } from "../errors.ts";

/**
 * Log field name → a ContextVar (its value in the current Context, else its
 * default; a var with neither is left out), or a synchronous function read
 * per line (left out when it returns undefined or throws), e.g. the active
 * trace id; one returning a promise does not compile, as the line would get
 * the promise and its rejection would go unhandled. The object is read
 * once, when the mixin or format is made.
 *
 * @example
 * const fields: LogFields = { requestId, user, traceId: () => trace.getActiveSpan()?.spanContext().traceId };
 */
export type LogFields = Readonly<Record<string, ContextVar<unknown> | (() => Synchronous)>>;

/** One field, checked: its name and how to read it now (undefined: leave it out). Internal. */
export interface Field {
  readonly key: string;
  /** The var, when the field is one: read with a direct `get`, no closure. */
  readonly var: ContextVar<unknown> | undefined;
  /** What `get` falls back to: the var's default, else undefined. */
  readonly fallback: unknown;
  readonly read: () => unknown;
}

/**
 * Checks `fields`: one Field per entry, in the fields' order. Internal.
 * @throws {TypeError} if fields is not an object, is an array, or a field is neither a ContextVar nor a function.
 */
export function checkFields(fields: LogFields): readonly Field[] {
  if (typeof fields !== "object" || fields === null) {
    throw argumentError("fields", "an object of ContextVars", fields);
  }
  // The types refuse an array, but JavaScript callers can pass one, and its
  // entries would become fields named "0", "1", …
  if (Array.isArray(fields)) {
    throw argumentError(
      "fields",
      "an object of ContextVars keyed by field name (`{ user }`), not an array",
      fields,
    );
  }
  return Object.entries(fields).map(([key, field]): Field => {
    if (isContextVar(field)) {
      const fallback = field.defaultValue === MISSING ? undefined : field.defaultValue;
      return { key, var: field, fallback, read: () => field.get(fallback) };
    }
    if (typeof field === "function") {
      const read = (): unknown => {
        try {
          return field();
        } catch {
          return undefined; // a log line is never lost to a field
        }
      };
      return { key, var: undefined, fallback: undefined, read };
    }
    throw argumentError(`fields[${JSON.stringify(key)}]`, "a ContextVar or a function", field);
  });
}

/**
 * Writes every present field into `line` as an own property; with `keep`, a
 * key `line` already has as its own is left as it is. With `wrote`, pushes
 * the key and the value of each field written. Vars are read with a direct
 * `get` rather than through their closure, the cheaper call per line.
 * Internal.
 */
export function writeFields(
  fields: readonly Field[],
  line: Record<string, unknown>,
  keep: boolean,
  wrote?: unknown[],
): void {
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i] as Field;
    // Own keys only: `in` would also find "constructor" or "toString" on Object.prototype.
    if (keep && Object.hasOwn(line, field.key)) continue;
    const v = field.var;
    const value = v === undefined ? field.read() : v.get(field.fallback);
    if (value === undefined) continue;
    // Assigning "__proto__" would set the line's prototype, not add a field.
    if (field.key === "__proto__") defineField(line, field.key, value);
    else {
      try {
        line[field.key] = value;
      } catch {
        // The line inherits the key as a getter without a setter or as a read-only
        // value (a class's `get user()` on an object winston formats as its entry):
        // assigning throws, out of a stream's drain for a queued entry. Defining adds it.
        defineField(line, field.key, value);
      }
    }
    wrote?.push(field.key, value);
  }
}

/** Adds `key` to `line` as an own field, whatever `line` inherits under that key. */
function defineField(line: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(line, key, { value, enumerable: true, writable: true, configurable: true });
}
