"""Usage: python benchmarks/sweep_times.py RUN_DIR --export-dir DIR [--time-v FILE] [--command TEXT]
[--output benchmarks/RESULTS.md] [--note TEXT]

Writes the time a `keras-uap sweep` spent per model and training range
(training, attack directions, universal curves and measures, both test sets
together), from the lineage records its runner wrote beside each stage's
output, into a section of RESULTS.md; with `--time-v`, the output of
`/usr/bin/time -v` around the sweep, also its wall time and peak memory.
"""

import argparse
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import machine_info, machine_lines, update_results_file  # noqa: E402
from stage_times import whole_process  # noqa: E402

KINDS = ("train", "directions", "universal", "measures")
_CELL = re.compile(r"^(?P<model>[a-z0-9]+)-rot(?P<range>[0-9.]+)")


def _lineage(folder):
    with open(os.path.join(folder, "lineage.json")) as f:
        return json.load(f)


def _duration(folder):
    return float(_lineage(folder)["duration_s"])


def sweep_times(run_dir, export_dir):
    """({(model, range): {kind: seconds}}, {other stage: seconds})."""
    cells, other = {}, {}
    for kind in KINDS[1:]:
        for folder in glob.glob(os.path.join(run_dir, "sweep", kind, "*", "")):
            folder = os.path.dirname(folder)
            found = _CELL.match(os.path.basename(folder))
            key = (found["model"], float(found["range"]))
            cells.setdefault(key, {}).setdefault(kind, 0.0)
            cells[key][kind] += _duration(folder)
    for folder in glob.glob(os.path.join(export_dir, "*-rot*", "")):
        folder = os.path.dirname(folder)
        found = _CELL.match(os.path.basename(folder).split("-", 1)[1])
        if found and (found["model"], float(found["range"])) in cells:
            cells[found["model"], float(found["range"])]["train"] = _duration(folder)
    for name in ("data", os.path.join("sweep", "upright_test"), "report"):
        other[os.path.basename(name)] = _duration(os.path.join(run_dir, name))
    return dict(sorted(cells.items())), other


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--export-dir", required=True, help="where the sweep exported its models")
    parser.add_argument("--output", default="benchmarks/RESULTS.md")
    parser.add_argument("--note", default=None, help="a paragraph to keep under the table (what ran, why)")
    parser.add_argument("--time-v", default=None, help="the `/usr/bin/time -v` report of the sweep")
    parser.add_argument("--command", default=None, help="the command that was timed")
    args = parser.parse_args()
    cells, other = sweep_times(args.run_dir, args.export_dir)
    # The machine as it is now; its load then is the note's to state.
    machine = [line.split("; load average")[0] + ("." if "; load average" in line else "")
               for line in machine_lines(machine_info(), None, None)]
    started = _lineage(os.path.join(args.run_dir, "data"))["started"]
    lines = ["## keras-uap sweep stage times (default profile)", "",
             f"- Started: {started}; run directory `{os.path.relpath(args.run_dir)}`.",
             *([f"- Command: `{args.command}`."] if args.command else []),
             *machine, "",
             "Seconds per model and training range r; directions, universal and measures add up both test sets "
             "(upright and rotated).", "",
             "| model | r | " + " | ".join(KINDS) + " | total |", "| --- | ---: |" + " ---: |" * (len(KINDS) + 1)]
    total = sum(other.values())
    for (model, rotation), times in cells.items():
        row = [times.get(kind, 0.0) for kind in KINDS]
        total += sum(row)
        lines.append(f"| {model} | {rotation:g} | " + " | ".join(f"{t:.1f}" for t in row) + f" | {sum(row):.1f} |")
    lines += ["", "Other stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in other.items()) + ".",
              "", f"All stages: {total:.0f} s ({total / 60:.1f} min).", ""]
    if args.time_v:
        wall, peak = whole_process(args.time_v)
        lines += [f"Whole process (`/usr/bin/time -v`): wall {wall:.0f} s ({wall / 60:.1f} min), "
                  f"peak resident memory {peak:.2f} GiB.", ""]
    if args.note:
        lines.append(args.note)
    update_results_file(args.output, "\n".join(lines) + "\n")
    print(f"sweep: {total:.1f} s over {len(cells)} model-range cells")


if __name__ == "__main__":
    main()
