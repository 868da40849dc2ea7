"""Shared helpers of the benchmark scripts: machine description and RESULTS.md section replacement."""

import os
import platform
import re
import subprocess

__all__ = ["machine_info", "loadavg", "machine_lines", "update_results_file", "publish_section"]


def machine_info(extra_versions=None):
    """Date (`date -u`), CPU model, CPU counts, RAM and software versions, as a dict.

    `extra_versions` (name -> version string) is merged in, e.g. {"foolbox": "3.3.4"}.
    """
    import numpy as np
    import tensorflow as tf

    import keras

    info = {}
    info["date"] = subprocess.run(["date", "-u"], capture_output=True, text=True, check=False).stdout.strip()
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "unknown"
    info["cpu"] = cpu
    info["logical_cpus"] = os.cpu_count()
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cpus"] = os.cpu_count()
    ram = "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    ram = f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
                    break
    except OSError:
        pass
    info["ram"] = ram
    info["python"] = platform.python_version()
    info["tf"] = tf.__version__
    info["keras"] = keras.__version__
    info["backend"] = keras.backend.backend()
    info["numpy"] = np.__version__
    info.update(extra_versions or {})
    return info


def loadavg():
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_lines(info, load_start, load_end, extra_software=()):
    """Markdown bullet lines describing the machine and software of `info`.

    `extra_software`: further "Name version" strings for the software line.
    """
    software = [f"Python {info['python']}", f"TensorFlow {info['tf']}",
                f"Keras {info['keras']} (backend {info['backend']})", f"NumPy {info['numpy']}", *extra_software]
    return [
        f"- Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), "
        f"{info['ram']} RAM; load average 1/5/15 min: {load_start} at start, "
        f"{load_end} at end.",
        f"- Software: {', '.join(software)}; default TF thread pools.",
    ]


def update_results_file(path, section, heading=None):
    """Replaces the section of `path` that starts with `heading` (by default the
    first line of `section`) up to the next `## ` heading, or appends it; every
    other section is kept as it is. Written atomically (temporary file + rename)."""
    section = section.rstrip("\n") + "\n"
    if heading is None:
        heading = section.splitlines()[0].rstrip()
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    else:
        text = "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        if text and not text.endswith("\n\n"):
            text += "\n"
        text += section
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"## ", lines[i])), len(lines))
        after = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + after if after else "")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def publish_section(output, section, heading):
    """Writes `section` into the results file `output`, or prints it when no file is given."""
    if output:
        update_results_file(output, section, heading)
        print(f"wrote section '{heading}' to {output}")
    else:
        print(section)
