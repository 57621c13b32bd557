"""`make bench`: run every benchmark module under bench/ and print its figures.

Each `bench/bench_*.py` exposes `run(args: list[str]) -> None` and prints its own results as lines
of text. Record figures worth keeping, with the command that produced them, in docs/benchmarks.md.
Usage: python -m bench [NAME ...]   (NAME is the part after `bench_`, e.g. `db`, `iso`, `hsm`)
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    wanted = [a for a in argv if not a.startswith("-")] or names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    if not names:
        print("no benchmarks yet")
        return 0
    for name in wanted:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"== bench {name} ==", flush=True)
        started = time.perf_counter()
        module.run([a for a in argv if a.startswith("-")])
        print(f"== bench {name} done in {time.perf_counter() - started:.1f} s ==\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
