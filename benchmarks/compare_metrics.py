"""Lists where two runs' metrics.json differ, apart from timings and run paths.

    python benchmarks/compare_metrics.py RUN_DIR_A RUN_DIR_B

A refactoring that should not change what a run computes is checked by
running it before and after on the same settings: every number must agree
exactly. Wall-clock values (the `timings` section, the comparison's build
`seconds`) differ from run to run and are left out; paths under a run
directory are compared relative to it. Exit status 1 when anything else
differs.
"""

import json
import os
import sys

_TIMING_KEYS = {"timings", "seconds"}


def _leaves(value, path=()):
    """(path, value) of every leaf of a JSON value, timing keys left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _TIMING_KEYS:
                yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (str(i),))
    else:
        yield path, value


def differences(run_a, run_b):
    """[(key, value in a, value in b)] of the leaves that differ."""
    found = []
    for run in (run_a, run_b):
        with open(os.path.join(run, "metrics.json")) as f:
            found.append({".".join(p): (v.replace(os.path.abspath(run), "<run>") if isinstance(v, str) else v)
                          for p, v in _leaves(json.load(f))})
    a, b = found
    return [(key, a.get(key, "<absent>"), b.get(key, "<absent>")) for key in sorted(set(a) | set(b))
            if a.get(key, "<absent>") != b.get(key, "<absent>")]


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    diff = differences(*argv)
    for key, a, b in diff:
        print(f"{key}: {a!r} != {b!r}")
    print(f"{len(diff)} differing keys")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
