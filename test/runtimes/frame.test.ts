/**
 * The matrix runs Node 22, 24 and 26 with AsyncContextFrame on and off
 * (scripts/runtimes/test-matrix.ts), through a flag in NODE_OPTIONS. This
 * file fails if the flag did not take: a mode that silently stayed the
 * default would make the on/off comparison compare a mode with itself.
 * Titles and outcomes are the same in both modes, since the matrix compares
 * the two runs test by test.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { asyncContextFrame, nodeMajor, runtime } from "./runtime.ts";

const expected = process.env.CONTEXTVARS_EXPECT_FRAME;

it("AsyncContextFrame is in the mode the matrix asked for", {
  skip: expected === undefined ? "not run by the matrix (no CONTEXTVARS_EXPECT_FRAME)" : false,
}, () => {
  assert.equal(runtime, "node");
  assert.equal(asyncContextFrame, expected === "on");
});

it("AsyncContextFrame: off by default before Node 24, on by default from Node 24; a flag switches it", {
  skip: nodeMajor === undefined ? "not Node" : false,
}, () => {
  const byDefault = (nodeMajor ?? 0) >= 24;
  const flagged = process.env.NODE_OPTIONS?.includes("async-context-frame") === true;
  assert.equal(asyncContextFrame, flagged ? !byDefault : byDefault);
});
