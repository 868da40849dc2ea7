import json
import os
import subprocess
import sys

import pytest

from keras_uap.pipelines.runner import (
    Stage,
    fingerprint,
    publish_run_outputs,
    read_lineage,
    recorded_timings,
    run_stage,
)

calls = []


def _write(output_dir, source, factor):
    calls.append(factor)
    with open(source) as f:
        value = int(f.read())
    with open(os.path.join(output_dir, "out.txt"), "w") as f:
        f.write(str(value * factor))
    return {"value": value * factor}


STAGE = Stage("double", _write, "1", inputs=("source",), params=("factor",))


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("21")
    calls.clear()
    return path


def test_runs_then_reuses(tmp_path, source):
    first = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    second = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    assert (first.cached, second.cached) == (False, True)
    assert calls == [2] and second.summary == {"value": 42}
    assert (tmp_path / "out" / "out.txt").read_text() == "42"


def test_changed_params_inputs_force_or_missing_files_rerun(tmp_path, source):
    out = tmp_path / "out"
    run_stage(STAGE, out, {"source": source}, {"factor": 2})
    assert not run_stage(STAGE, out, {"source": source}, {"factor": 3}).cached
    source.write_text("5")
    assert not run_stage(STAGE, out, {"source": source}, {"factor": 3}).cached
    assert not run_stage(STAGE, out, {"source": source}, {"factor": 3}, force=True).cached
    (out / "out.txt").unlink()
    assert not run_stage(STAGE, out, {"source": source}, {"factor": 3}).cached
    assert (out / "out.txt").read_text() == "15"
    assert len(calls) == 5


def test_cache_key_ignores_paths_and_settings(tmp_path, source):
    copy = tmp_path / "copy.txt"
    copy.write_text(source.read_text())
    run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    assert run_stage(STAGE, tmp_path / "out", {"source": copy}, {"factor": 2}).cached


def test_failure_leaves_no_partial_artifact(tmp_path, source):
    def fail(output_dir, source, factor):
        with open(os.path.join(output_dir, "half.txt"), "w") as f:
            f.write("partial")
        raise RuntimeError("boom")

    out = tmp_path / "out"
    run_stage(STAGE, out, {"source": source}, {"factor": 2})
    with pytest.raises(RuntimeError):
        run_stage(Stage("double", fail, "1", ("source",), ("factor",)), out, {"source": source},
                  {"factor": 2}, force=True)
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "lineage.jsonl", "out"]
    assert (out / "out.txt").read_text() == "42"  # the previous good result is untouched
    assert not (out / "half.txt").exists()


def test_lineage_records_what_went_in(tmp_path, source):
    result = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    lineage = read_lineage(result.output_dir)
    assert lineage["params"] == {"factor": 2}
    assert lineage["inputs"]["source"]["fingerprint"] == fingerprint(source)
    assert lineage["outputs"] == ["out.txt"] and lineage["status"] == "succeeded"
    assert "tensorflow" in lineage["versions"]
    history = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    assert history[-1]["cache_key"] == lineage["cache_key"]


def test_wrong_arguments_are_refused(tmp_path, source):
    with pytest.raises(ValueError, match="wrong arguments"):
        run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2, "extra": 1})


def test_leftovers_of_a_killed_run_are_cleaned_and_the_stage_reruns(tmp_path, source):
    # kill -9 mid-stage leaves a temporary sibling and no published output.
    stale = tmp_path / ".tmp-out-deadbeef"
    stale.mkdir()
    (stale / "out.txt").write_text("half")
    result = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    assert not result.cached and not stale.exists()
    assert (tmp_path / "out" / "out.txt").read_text() == "42"


def test_run_outputs_are_published_from_every_folder_and_leftovers_removed(tmp_path):
    run_dir, a, b = tmp_path / "run", tmp_path / "a", tmp_path / "b"
    for folder, name in ((a, "m1-x.npy"), (b, "m2-x.npy")):
        folder.mkdir(parents=True)
        (folder / name).write_text(name)
    (run_dir / "perturbations").mkdir(parents=True)
    (run_dir / "perturbations" / "old.npy").write_text("old")
    for leftover in (".tmp-perturbations-deadbeef", "perturbations.old-deadbeef"):
        (run_dir / leftover).mkdir()
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")
    publish_run_outputs(str(run_dir), str(metrics), [str(a), str(b)])
    assert sorted(os.listdir(run_dir)) == ["metrics.json", "perturbations"]
    assert sorted(os.listdir(run_dir / "perturbations")) == ["m1-x.npy", "m2-x.npy"]
    assert (run_dir / "metrics.json").read_text() == "{}"


def test_recorded_timings_are_of_the_run_that_computed_a_cached_result(tmp_path, source):
    first = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    again = run_stage(STAGE, tmp_path / "out", {"source": source}, {"factor": 2})
    assert again.cached
    recorded = read_lineage(first.output_dir)["duration_s"]
    assert recorded_timings({"double": again}) == {"double": pytest.approx(recorded)}


_KERNELS_SCRIPT = """
import sys
from tensorflow.python.framework import config
from keras_uap.pipelines.runner import Stage, run_stage

def kernels(output_dir):
    return {"deterministic": config.is_op_determinism_enabled()}

assert not config.is_op_determinism_enabled()
print(run_stage(Stage("kernels", kernels, "1"), sys.argv[1]).summary["deterministic"])
"""


def test_every_stage_runs_with_deterministic_kernels(tmp_path):
    # A fresh process: the switch is process-wide, and other tests (training) set it.
    # Without it, RotEqNet's directions depended on whether its training ran in the same process.
    result = subprocess.run([sys.executable, "-c", _KERNELS_SCRIPT, str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
