/**
 * How a ContextVar's value becomes a W3C baggage value and back: a codec
 * per var, so values arrive typed. Re-exported by `contextvars/otel`.
 */
import { type ContextVar, isContextVar } from "../core/context-var.ts";
import { argumentError } from "../errors.ts";

/**
 * Turns a var's value into a baggage value (any string: OpenTelemetry
 * percent-encodes it) and back. `decode` throws to reject a value it cannot
 * read; the var is then left unset for that request, never failing it.
 *
 * @example
 * const dateCodec: BaggageCodec<Date> = {
 *   encode: (date) => date.toISOString(),
 *   decode(text) {
 *     const date = new Date(text);
 *     if (Number.isNaN(date.getTime())) throw new RangeError("not a date");
 *     return date;
 *   },
 * };
 */
export interface BaggageCodec<T> {
  encode(value: T): string;
  decode(text: string): T;
}

/**
 * A ContextVar with the codec its values cross services with; made by `baggageField`.
 *
 * @example
 * const field: BaggageField<number> = baggageField(attempt, codecs.integer);
 */
export interface BaggageField<T> {
  readonly var: ContextVar<T>;
  readonly codec: BaggageCodec<T>;
}

// encode refuses what decode rejects: such a value would arrive unset here
// and as "NaN" or "1.5" in a service that reads baggage as it is.
const number: BaggageCodec<number> = {
  encode(value) {
    if (!Number.isFinite(value)) throw new RangeError("not a finite number");
    return String(value);
  },
  decode(text) {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) throw new RangeError("not a finite number");
    return value;
  },
};

/**
 * The codecs for common types. `string` is what a field given as a bare
 * `ContextVar<string>` uses; `integer` rejects `1.5`, and `number` rejects
 * `NaN` and the infinities, on the way out as on the way in; `boolean` accepts only
 * `true` and `false`; `matching(pattern)` is a string that must match
 * (baggage comes from the caller: anything that reaches a log line or a
 * query should be checked); `json(isT)` parses and then checks with the
 * type guard, so a value that parses but has the wrong shape is rejected too.
 *
 * @example
 * const attempt = new ContextVar<number>("attempt");
 * const carry = contextPropagation({
 *   attempt: baggageField(attempt, codecs.integer),
 *   "request.id": baggageField(requestId, codecs.matching(/^[\w.:=+/-]{1,200}$/)),
 * });
 * @throws {TypeError} from `matching` if pattern is not a RegExp, from `json` if isT is not a
 *   function; a codec's `decode` throws on a value it rejects, which extraction catches,
 *   and `number`'s and `integer`'s `encode` on one their decode would reject, which
 *   injection catches (the value is not sent).
 */
export const codecs = {
  string: { encode: (value: string) => value, decode: (text: string) => text },
  number,
  integer: {
    encode(value: number): string {
      if (!Number.isSafeInteger(value)) throw new RangeError("not a safe integer");
      return String(value);
    },
    decode(text: string): number {
      const value = number.decode(text);
      if (!Number.isSafeInteger(value)) throw new RangeError("not a safe integer");
      return value;
    },
  },
  boolean: {
    encode: (value: boolean) => String(value),
    decode(text: string): boolean {
      if (text === "true") return true;
      if (text === "false") return false;
      throw new RangeError("not true or false");
    },
  },
  matching(pattern: RegExp): BaggageCodec<string> {
    if (!(pattern instanceof RegExp)) throw argumentError("pattern", "a RegExp", pattern);
    return {
      encode: (value) => value,
      decode(text) {
        pattern.lastIndex = 0;
        if (!pattern.test(text)) throw new RangeError(`does not match ${pattern}`);
        return text;
      },
    };
  },
  json<T>(isT: (value: unknown) => value is T): BaggageCodec<T> {
    if (typeof isT !== "function") throw argumentError("isT", "a function", isT);
    return {
      encode: (value) => JSON.stringify(value),
      decode(text) {
        const value: unknown = JSON.parse(text);
        if (!isT(value)) throw new TypeError("JSON value of the wrong shape");
        return value;
      },
    };
  },
} as const;

// T itself, but not a place T is inferred from: TypeScript's NoInfer, spelled
// so that TypeScript before 5.4 reads the declarations too.
type NoInference<T> = T extends unknown ? T : never;

/**
 * Pairs a var with its codec, checking that their types agree: T comes from
 * the var alone, so a codec of a wider type (`codecs.string` for a
 * `ContextVar<"on" | "off">`) is an error rather than a way to set values the
 * var does not allow.
 *
 * @example
 * const userId = new ContextVar<number>("userId");
 * const carry = contextPropagation({ "user.id": baggageField(userId, codecs.integer) });
 * @throws {TypeError} if v is not a ContextVar or codec has no encode and decode functions.
 */
export function baggageField<T>(
  v: ContextVar<T>,
  codec: BaggageCodec<NoInference<T>>,
): BaggageField<T> {
  if (!isContextVar(v)) throw argumentError("v", "a ContextVar", v);
  if (
    typeof codec !== "object" ||
    codec === null ||
    typeof codec.encode !== "function" ||
    typeof codec.decode !== "function"
  ) {
    throw argumentError("codec", "an object with encode and decode functions", codec);
  }
  return Object.freeze({ var: v, codec });
}
