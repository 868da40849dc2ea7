"""Usage: python benchmarks/stage_times.py RUN_DIR --profile default|quick [--time-v FILE] [--command TEXT]
[--started ISO --ended ISO] [--output benchmarks/RESULTS.md] [--note TEXT]

Writes the time each stage of a `keras-uap run-all` took (from the lineage
records its runner wrote, so a resumed run counts each stage once, as it ran)
into a section of RESULTS.md; with `--time-v`, the output of `/usr/bin/time -v`
around that run, also its wall time and peak memory as a whole process.
With `--started` and `--ended` (the run's UTC start and end), the section
gives the run's time span instead of the moment it is written, and no load
average: one read now would say nothing about the machine during the run.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import loadavg, machine_info, machine_lines, update_results_file  # noqa: E402


def stage_times(run_dir):
    """Stage label -> seconds, in the order the stages last ran."""
    times = {}
    metrics = os.path.join(run_dir, "metrics.json")
    with open(metrics) as f:
        times.update(json.load(f).get("timings", {}).get("stages", {}))
    with open(os.path.join(run_dir, "report", "lineage.json")) as f:
        times["report"] = json.load(f)["duration_s"]
    return times


def whole_process(path):
    """(wall seconds, peak resident GiB) from a `/usr/bin/time -v` report."""
    wall = peak = None
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            if key.startswith("Elapsed (wall clock) time"):
                parts = [float(p) for p in value.split(":")]
                wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
            elif key == "Maximum resident set size (kbytes)":
                peak = int(value) / 2 ** 20
    return wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--output", default="benchmarks/RESULTS.md")
    parser.add_argument("--budget-min", type=float, default=None, help="target for the total, in minutes")
    parser.add_argument("--note", default=None, help="a paragraph to keep under the table (what ran, why)")
    parser.add_argument("--time-v", default=None, help="the `/usr/bin/time -v` report of the run")
    parser.add_argument("--command", default=None, help="the command that was timed")
    parser.add_argument("--started", default=None, help="the run's start, UTC (e.g. 2026-12-05T03:54:11Z)")
    parser.add_argument("--ended", default=None, help="the run's end, UTC")
    args = parser.parse_args()
    times = stage_times(args.run_dir)
    total = sum(times.values())
    info = machine_info()
    if args.started and args.ended:
        when = f"{args.started} to {args.ended}"
        machine = [line.split("; load average")[0] + "." if line.startswith("- Machine:") else line
                   for line in machine_lines(info, None, None)]
    else:
        when, load = info["date"], loadavg()
        machine = machine_lines(info, load, load)
    lines = [f"## run-all stage times ({args.profile} profile)", "",
             f"- Date: {when}; run directory `{args.run_dir}`.",
             *([f"- Command: `{args.command}`."] if args.command else []),
             *machine, "",
             "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in times.items()]
    lines += [f"| **total** | **{total:.1f}** ({total / 60:.1f} min) |", ""]
    measured = total
    if args.time_v:
        wall, peak = whole_process(args.time_v)
        measured = wall
        lines.append(f"Whole process (`/usr/bin/time -v`): wall {wall:.0f} s ({wall / 60:.1f} min), "
                     f"peak resident memory {peak:.2f} GiB.")
        lines.append("")
    if args.budget_min:
        verdict = "within" if measured / 60 <= args.budget_min else "OVER"
        lines.append(f"Target: {args.budget_min:g} min wall; this run is {verdict} it.")
    if args.note:
        lines += ["", args.note]
    update_results_file(args.output, "\n".join(lines) + "\n")
    print(f"{args.profile}: {total:.1f} s over {len(times)} stages")


if __name__ == "__main__":
    main()
