#!/usr/bin/env python3
"""Sorts the samples of a `perf script` dump by what each stack was doing.

Usage: perf script -i perf.data | bench/profile/shares.py bench/profile/<scenario>.rules

A rules file has one `name|pattern,pattern,...` per line, in priority order:
a sample goes to the first rule one of whose patterns occurs in one of its
frames (a pattern `a;b` needs both). Samples no rule takes count as "other".
Shares are of all samples, per thread name.
"""

import collections
import sys


def rules_from(path):
    rules = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                name, patterns = line.split("|", 1)
                rules.append((name, [p.split(";") for p in patterns.split(",") if p]))
    return rules


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rules = rules_from(sys.argv[1])
    shares = collections.Counter()
    threads = collections.Counter()
    for sample in sys.stdin.read().split("\n\n"):
        lines = sample.strip().split("\n")
        if len(lines) < 2:
            continue
        thread = lines[0].split()[0]
        stack = "\n".join(lines[1:])
        threads[thread] += 1
        taken = next(
            (name for name, patterns in rules if any(all(p in stack for p in both) for both in patterns)),
            "other",
        )
        shares[(thread, taken)] += 1
    total = sum(threads.values())
    if total == 0:
        sys.exit("no samples with stacks: record with --call-graph")
    print(f"{total} samples")
    for thread, count in threads.most_common():
        print(f"{thread}: {100 * count / total:.1f} %")
        for (of, name), n in shares.most_common():
            if of == thread:
                print(f"  {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
