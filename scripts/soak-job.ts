/**
 * The worker job of `npm run soak` (scripts/soak.ts), run on piscina threads
 * through `contextPool`: it reads the caller's request id and user, which
 * arrive by var name, across an await and after a set of its own (which
 * must never reach the caller or the next job on the thread).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ContextVar } from "contextvars";

const requestId = new ContextVar<string>("requestId");
const user = new ContextVar<string>("soak.user");
const scratch = new ContextVar<string>("soak.scratch");

export interface SoakJobReply {
  id: string;
  user: string;
  /** What a set from an earlier job on this thread left behind (must be "none"). */
  leftOver: string;
}

export default async function soakJob(delay: number): Promise<SoakJobReply> {
  const leftOver = scratch.get("none");
  scratch.set(requestId.get("<none>"));
  await sleep(delay);
  return { id: requestId.get("<none>"), user: user.get("<none>"), leftOver };
}
