/** What the MCP tests read from a tool's result. */
import assert from "node:assert/strict";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";

/** The text of a tool result's first content part; fails unless it is text. */
export function textOf(result: unknown): string {
  const [first] = (result as CallToolResult).content;
  assert.equal(first?.type, "text");
  return first.text;
}
