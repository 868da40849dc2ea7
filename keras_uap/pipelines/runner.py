"""A lean TFX-style runner: caching, lineage and atomic publication of stages.

A stage is a plain function `fn(output_dir, **inputs, **params)` that writes
only into `output_dir` and returns a small JSON-able summary. The runner:

- computes a cache key from the stage's name and code version, its
  parameters, and the content fingerprints of its input artifacts (never
  from output paths);
- reuses a previous result when its lineage records a success under the
  same key and every file it listed still exists;
- otherwise runs the function into a temporary sibling directory and
  renames it into place, so an interrupted run never leaves a half-written
  artifact;
- writes `lineage.json` into the output and appends one line per run to
  `lineage.jsonl` beside it;
- runs every stage with TensorFlow's deterministic kernels
  (`tf.config.experimental.enable_op_determinism`). The switch is
  process-wide and some kernels round differently under it (RotEqNet's
  gradients do), so a stage must not depend on whether a stage that sets it
  (training) happened to run earlier in the same process, i.e. on what the
  cache held.
"""

import dataclasses
import fnmatch
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from typing import Callable

import keras_uap

__all__ = ["Stage", "StageResult", "run_stage", "fingerprint", "read_lineage", "publish_file", "publish_directory",
           "LINEAGE_FILE"]

LINEAGE_FILE = "lineage.json"
_SCRATCH_PREFIXES = (".tmp-", ".old-")
_HISTORY_FILE = "lineage.jsonl"


@dataclasses.dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name, code version, and the function doing its work.

    Attributes:
        name: short name, also the default output directory name.
        fn: `fn(output_dir, **inputs, **params) -> dict` (a JSON-able summary).
        version: a string that changes with the stage's code
            (`keras_uap.pipelines.code_versions.code_version`), or a function
            of the parameters returning one (a stage whose code depends on a
            parameter, e.g. which model it trains).
        inputs: names of the artifact paths the function may take (an input
            left out is the function's default, e.g. "download instead"); a
            name ending in "*" admits every input with that prefix.
        params: names of the parameters the function takes (all required).
        settings: names of keyword arguments that do not change the
            artifacts (verbosity, a log directory): passed on, never hashed.
    """

    name: str
    fn: Callable
    version: str | Callable
    inputs: tuple = ()
    params: tuple = ()
    settings: tuple = ()


@dataclasses.dataclass(frozen=True)
class StageResult:
    output_dir: str
    summary: dict
    cached: bool
    duration_s: float


_fingerprint_cache = {}


def _file_digest(path):
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _fingerprint_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _fingerprint_cache[key] = digest.hexdigest()
    return _fingerprint_cache[key]


def fingerprint(path):
    """Content hash of a file, or of every file below a directory (by relative
    path and content). Lineage files are left out, so that a directory's
    fingerprint is that of its artifacts alone."""
    path = str(path)
    if os.path.isfile(path):
        return _file_digest(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(_SCRATCH_PREFIXES))
        for name in sorted(files):
            if name in (LINEAGE_FILE, _HISTORY_FILE):
                continue
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode())
            digest.update(_file_digest(full).encode())
    return digest.hexdigest()


def _versions():
    import numpy
    import tensorflow as tf

    import keras

    return {
        "keras_uap": keras_uap.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def use_deterministic_kernels():
    """Switches TF's op determinism on for the process (idempotent)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def stage_version(stage, params):
    """The stage's version string for these parameters."""
    return stage.version(params) if callable(stage.version) else stage.version


def _cache_key(stage, input_fingerprints, params):
    record = {"stage": stage.name, "version": stage_version(stage, params), "inputs": input_fingerprints, "params": params}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def read_json(path):
    """The JSON document in a stage's output file `path`; None for None (an optional input)."""
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)


def read_lineage(output_dir):
    """The lineage record of a published stage output, or None."""
    try:
        return read_json(os.path.join(output_dir, LINEAGE_FILE))
    except (OSError, ValueError):
        return None


def _is_reusable(lineage, key, output_dir):
    if not lineage or lineage.get("status") != "succeeded" or lineage.get("cache_key") != key:
        return False
    return all(os.path.exists(os.path.join(output_dir, name)) for name in lineage.get("outputs", []))


def _list_outputs(directory):
    found = []
    for root, _, files in os.walk(directory):
        found.extend(os.path.relpath(os.path.join(root, name), directory) for name in files)
    return sorted(found)


def _remove_stale_scratch(parent, name):
    """Drops what a killed run left behind: its temporary or replaced directory."""
    for entry in os.listdir(parent):
        if entry.startswith(f".tmp-{name}-") or entry.startswith(f"{name}.old-"):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def publish_file(src, dst):
    """Copies file `src` to `dst` atomically (a copy beside `dst`, then a rename)."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".tmp-{os.path.basename(dst)}-{uuid.uuid4().hex[:8]}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def publish_directory(tmp_dir, output_dir):
    """Replaces `output_dir` by the finished directory `tmp_dir` with renames only."""
    if os.path.exists(output_dir):
        trash = os.path.join(os.path.dirname(output_dir), f"{os.path.basename(output_dir)}.old-{uuid.uuid4().hex[:8]}")
        os.rename(output_dir, trash)
        os.rename(tmp_dir, output_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp_dir, output_dir)


def recorded_timings(results):
    """Seconds each stage of `results` ({label: StageResult}) took when it
    actually ran: a cached stage's recorded run, not the lookup."""
    return {name: float((read_lineage(result.output_dir) or {}).get("duration_s", result.duration_s))
            for name, result in results.items()}


def publish_run_outputs(run_dir, metrics_file, perturbation_dirs):
    """Publishes a run's two top-level outputs, each replaced atomically:
    `<run_dir>/metrics.json` (a copy of `metrics_file`) and
    `<run_dir>/perturbations/` (every file of the `perturbation_dirs`).
    What an interrupted publish left beside them is removed first."""
    publish_file(metrics_file, os.path.join(run_dir, "metrics.json"))
    for entry in os.listdir(run_dir):
        if entry.startswith((".tmp-perturbations-", "perturbations.old-")):
            shutil.rmtree(os.path.join(run_dir, entry), ignore_errors=True)
    staging = os.path.join(run_dir, f".tmp-perturbations-{uuid.uuid4().hex[:8]}")
    os.makedirs(staging)
    for folder in perturbation_dirs:
        for name in sorted(os.listdir(folder)):
            shutil.copyfile(os.path.join(folder, name), os.path.join(staging, name))
    publish_directory(staging, os.path.join(run_dir, "perturbations"))


def run_stage(stage, output_dir, inputs=None, params=None, settings=None, force=False, log=None):
    """Runs `stage` into `output_dir` unless an identical run already succeeded.

    Args:
        stage: the `Stage`.
        output_dir: where the stage's artifacts are published.
        inputs: mapping of input name to artifact path (file or directory).
        params: mapping of parameter name to a JSON-able value.
        settings: mapping for the stage's `settings` (not part of the cache key).
        force: run even when a cached result exists.
        log: optional callable taking one line of progress text.

    Returns:
        `StageResult`.
    """
    inputs = dict(inputs or {})
    params = dict(params or {})
    settings = dict(settings or {})
    wrong = {name for name in inputs if not any(fnmatch.fnmatchcase(name, p) for p in stage.inputs)}
    wrong |= set(stage.params) ^ set(params)
    wrong |= set(settings) - set(stage.settings)
    if wrong:
        raise ValueError(f"stage {stage.name!r} got the wrong arguments: {sorted(wrong)}")
    output_dir = os.path.abspath(output_dir)
    label = f"{stage.name} ({os.path.basename(output_dir)})"
    input_fingerprints = {name: fingerprint(path) for name, path in sorted(inputs.items())}
    key = _cache_key(stage, input_fingerprints, params)
    lineage = read_lineage(output_dir)
    if not force and _is_reusable(lineage, key, output_dir):
        if log:
            log(f"{label}: up to date, reusing {output_dir}")
        return StageResult(output_dir, lineage.get("summary", {}), True, 0.0)

    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_scratch(parent, os.path.basename(output_dir))
    tmp_dir = os.path.join(parent, f".tmp-{os.path.basename(output_dir)}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp_dir)
    use_deterministic_kernels()
    started = time.time()
    if log:
        log(f"{label}: running")
    try:
        summary = stage.fn(tmp_dir, **inputs, **params, **settings) or {}
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    duration = time.time() - started
    record = {
        "stage": stage.name,
        "stage_version": stage_version(stage, params),
        "cache_key": key,
        "status": "succeeded",
        "params": params,
        "inputs": {name: {"path": os.path.abspath(path), "fingerprint": input_fingerprints[name]}
                   for name, path in inputs.items()},
        "outputs": _list_outputs(tmp_dir),
        "summary": summary,
        "versions": _versions(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(duration, 3),
    }
    with open(os.path.join(tmp_dir, LINEAGE_FILE), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=str)
    publish_directory(tmp_dir, output_dir)
    with open(os.path.join(parent, _HISTORY_FILE), "a") as f:
        f.write(json.dumps({k: record[k] for k in ("stage", "cache_key", "started", "duration_s")}
                           | {"output_dir": output_dir}) + "\n")
    if log:
        log(f"{label}: done in {duration:.1f} s -> {output_dir}")
    return StageResult(output_dir, summary, False, duration)
