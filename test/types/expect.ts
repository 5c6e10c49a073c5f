/**
 * The assertion helpers of the type tests (test/types/*.types.ts), which are
 * only typechecked, never run: `expectType<Equal<A, B>>()` fails to compile
 * unless A and B are the same type (not merely assignable either way), and
 * `IsAny` catches an `any` that would satisfy any other check.
 */

/** true when A and B are identical types (`any` equals only `any`). */
export type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** true when A is assignable to B. */
export type Extends<A, B> = [A] extends [B] ? true : false;

/** true when T is `any`. */
export type IsAny<T> = 0 extends 1 & T ? true : false;

/** Compiles only when given `true`. */
export function expectType<_T extends true>(): void {}

/** Compiles only when given `false`. */
export function expectFalse<_T extends false>(): void {}
