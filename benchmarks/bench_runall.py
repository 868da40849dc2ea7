"""Usage: python benchmarks/bench_runall.py [--runs 3] [--data-dir DIR] [--output benchmarks/RESULTS.md] [--dry-run]

Times `keras-uap run-all --quick` as a whole process, start-up included,
over several runs, each in fresh run and export directories: min, median and
max wall seconds and each run's peak resident memory, written to a section
of RESULTS.md. The quick profile's bar is a median under 180 s.
"""

# The command is this checkout's CLI (`python -m keras_uap.cli`, with the
# checkout first on PYTHONPATH), not whatever `keras-uap` script is on PATH:
# that one may import another copy of the package. Peak memory is the child's
# ru_maxrss from wait4 (the largest resident set of the process and any
# child it waited for), so each run is measured on its own.

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import loadavg, machine_info, machine_lines, publish_section  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION_HEADING = "## run-all --quick as a whole process (bench_runall.py)"
BUDGET_S = 180.0


def runall_command(run_dir, export_dir, data_dir=None, models=None):
    """The argv of one quick run-all into `run_dir` and `export_dir`."""
    argv = [sys.executable, "-m", "keras_uap.cli", "run-all", "--quick", "--run-dir", run_dir,
            "--export-dir", export_dir]
    if data_dir:
        argv += ["--data-dir", data_dir]
    if models:
        argv += ["--models", models]
    return argv


def timed_run(argv, log_path):
    """Runs `argv` from the checkout's root, output to `log_path`.

    Returns:
        (exit status, wall seconds, peak resident memory in bytes).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, wall, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def summary(walls):
    """(min, median, max) of the wall times."""
    return min(walls), statistics.median(walls), max(walls)


def results_section(info, load_start, load_end, command, walls, peaks, budget_s):
    """The RESULTS.md section for the runs' wall times and peak memory."""
    low, median, high = summary(walls)
    verdict = "under" if median < budget_s else "OVER"
    lines = [SECTION_HEADING, "",
             f"- Date: {info['date']}; {len(walls)} run(s), each in fresh run and export directories.",
             *machine_lines(info, load_start, load_end),
             f"- Command (from the checkout's root, start-up included): `{command}`", "",
             "| run | wall s | peak RSS GiB |", "| ---: | ---: | ---: |"]
    lines += [f"| {i} | {wall:.1f} | {peak / 2 ** 30:.2f} |" for i, (wall, peak) in enumerate(zip(walls, peaks), 1)]
    lines += ["", f"Wall time min / median / max: {low:.1f} / {median:.1f} / {high:.1f} s; "
                  f"peak RSS at most {max(peaks) / 2 ** 30:.2f} GiB. "
                  f"Bar: median under {budget_s:g} s; this median is {verdict} it.", ""]
    return "\n".join(lines)


def _command_text(argv, base):
    """`argv` as the section shows it: the CLI module and the fresh directory named generically."""
    return "python -m keras_uap.cli " + " ".join(argv[3:]).replace(base, "<fresh dir>")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="number of fresh runs (default 3)")
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_UAP_DATA_DIR"),
                        help="the dataset's IDX files (default: $KERAS_UAP_DATA_DIR, else the CLI's default)")
    parser.add_argument("--models", default=None, help="passed to run-all --models (default: all three)")
    parser.add_argument("--workdir", default=None,
                        help="where the runs' directories and logs go (default: a new temporary directory)")
    parser.add_argument("--output", default="benchmarks/RESULTS.md",
                        help="results file whose section is replaced; '' prints the section instead")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="the bar for the median (default 180)")
    parser.add_argument("--dry-run", action="store_true", help="print the command of each run and stop")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1. Received: {args.runs}")
    if args.workdir:
        workdir = os.path.abspath(args.workdir)
    else:
        workdir = "<new temporary directory>" if args.dry_run else tempfile.mkdtemp(prefix="bench_runall_")
    runs = []
    for i in range(1, args.runs + 1):
        base = os.path.join(workdir, f"run{i}")
        if os.path.exists(base):
            parser.error(f"{base} already exists: every run needs fresh directories (choose another --workdir)")
        data_dir = args.data_dir and os.path.abspath(args.data_dir)  # the runs start in the checkout's root
        argv = runall_command(os.path.join(base, "run"), os.path.join(base, "export"), data_dir, args.models)
        runs.append((base, argv))
    command = _command_text(runs[0][1], os.path.join(workdir, "run1"))
    if args.dry_run:
        for _, argv in runs:
            print(" ".join(argv))
        return
    load_start, walls, peaks = loadavg(), [], []
    for i, (base, argv) in enumerate(runs, 1):
        os.makedirs(base)
        log_path = os.path.join(base, "run-all.log")
        status, wall, peak = timed_run(argv, log_path)
        if status != 0:
            sys.exit(f"run {i} failed (exit status {status}); its output: {log_path}")
        walls.append(wall)
        peaks.append(peak)
        print(f"run {i}: {wall:.1f} s wall, peak RSS {peak / 2 ** 30:.2f} GiB (log: {log_path})", flush=True)
    section = results_section(machine_info(), load_start, loadavg(), command, walls, peaks, args.budget_s)
    publish_section(args.output, section, SECTION_HEADING)
    low, median, high = summary(walls)
    print(f"min / median / max: {low:.1f} / {median:.1f} / {high:.1f} s")


if __name__ == "__main__":
    main()
