/**
 * The marker for "no value": a token's `oldValue` when the var had no value
 * before its `set` (Python's `Token.MISSING`).
 */
export const MISSING: unique symbol = Symbol("contextvars.MISSING");
export type Missing = typeof MISSING;
