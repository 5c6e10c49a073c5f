"""CPython's contextvars, measured the way bench/*.bench.ts measures ours.

Prints one JSON object: nanoseconds per operation (median of several timeit
repeats) for ContextVar.get, ContextVar.set, copy_context, Context.run, and
asyncio.gather of 10,000 tasks that each set a var, yield once and read it
back (per task). bench/run.ts runs this with python3 and prints the figures
next to ours; run it alone with `python3 bench/cpython/contextvars_bench.py`.

The shapes match the JavaScript side: get and set in a Context with 10 vars
set, sets rotating over the 10 vars with a new value each time, run of a
trivial function in a Context that is not entered.
"""

import asyncio
import contextvars
import json
import platform
import statistics
import sys
import time
import timeit

REPEAT = 7
TASKS = 10_000


def per_op(stmt, namespace, number, ops_per_stmt=1):
    times = timeit.Timer(stmt, globals=namespace).repeat(repeat=REPEAT, number=number)
    return statistics.median(times) / (number * ops_per_stmt) * 1e9


def in_context_with_10_vars():
    vs = [contextvars.ContextVar(f"v{i}") for i in range(10)]
    ctx = contextvars.Context()

    def fill():
        for i, v in enumerate(vs):
            v.set(i)

    ctx.run(fill)
    return vs, ctx


def bench_sync():
    vs, ctx = in_context_with_10_vars()
    v = vs[3]
    # 20 sets per statement: values 0-9 then 10-19, so every set changes the value.
    sets = "; ".join(f"vs[{i % 10}].set({i})" for i in range(20))
    other = contextvars.Context()

    def f():
        return 1

    def measure():
        ns = {"v": v, "vs": vs, "copy_context": contextvars.copy_context}
        return {
            "get": per_op("v.get()", ns, 2_000_000),
            "set": per_op(sets, ns, 50_000, ops_per_stmt=20),
            "copy_context": per_op("copy_context()", ns, 1_000_000),
        }

    figures = ctx.run(measure)
    figures["ctx.run"] = per_op("other.run(f)", {"other": other, "f": f}, 1_000_000)
    return figures


async def gather_per_task():
    var = contextvars.ContextVar("v")

    async def worker(i):
        var.set(i)
        await asyncio.sleep(0)
        return var.get()

    samples = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(TASKS)))
        samples.append((time.perf_counter() - start) / TASKS * 1e9)
    return statistics.median(samples)


def main():
    figures = bench_sync()
    figures["gather set+get, per task"] = asyncio.run(gather_per_task())
    out = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "ns": figures,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
