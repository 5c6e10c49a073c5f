// The pool job of bench/threads.bench.ts (JavaScript: piscina's threads load
// it without tsx). It imports the built package named in workerData, reads
// its 10 vars, and returns how many have a value.
import { workerData } from "node:worker_threads";

const { ContextVar } = await import(workerData.dist);
const vars = Array.from({ length: 10 }, (_, i) => new ContextVar(`v${i}`));

export default function job(n) {
  let seen = 0;
  for (const v of vars) if (v.get(undefined) !== undefined) seen++;
  return n + seen;
}
