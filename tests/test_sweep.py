"""The rotation-augmentation sweep: end to end on a tiny real-MNIST profile
(StdCNN, 2,000 training images, one epoch, 300 test inputs, 100 attacked),
its caching, the fixed criterion, the API on a user's builder, the CLI's
errors, and `keras-uap sweep --quick` as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_uap.cli import main
from keras_uap.report.claims import CANNOT_BE_JUDGED, DOES_NOT_HOLD, HOLDS
from keras_uap.report.results_pages import make_pages
from keras_uap.report.sweep_report import judge_growth
from keras_uap.report.tables import display_name

HERE = os.path.dirname(os.path.abspath(__file__))


def _tiny_config(root, mnist_dir):
    from keras_uap.pipelines.study import quick_config

    return quick_config({"data.train_size": 2000, "data.validation_size": 200, "data.test_size": 300,
                         "train.epochs": 1, "directions.limit": 100, "directions.batch_size": 100,
                         "universal.seeds": (0,), "universal.random_seeds": (0,)},
                        run_dir=str(root / "run"), export_dir=str(root / "export"), data_dir=mnist_dir, verbose=0,
                        user_set=("train.epochs",))


@pytest.fixture(scope="module")
def swept(tmp_path_factory, mnist_dir):
    from keras_uap.pipelines.sweep import run_sweep

    cfg = _tiny_config(tmp_path_factory.mktemp("sweep"), mnist_dir)
    results = run_sweep(cfg, models=("stdcnn",), ranges=(180, 0))
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        return cfg, results, json.load(f)


def test_every_cell_is_measured_and_reported(swept):
    cfg, _, metrics = swept
    assert metrics["sweep_ranges"] == [0.0, 180.0] and metrics["sweep_norm"] == 6.0
    for r in ("0", "180"):
        for test_set in ("upright", "rotated"):
            cell = metrics["sweep"]["stdcnn"][r][test_set]
            assert cell["n_test"] == 300 and 0 <= cell["accuracy"] <= 1 and 0 <= cell["invariance"] <= 1
            for attack in ("gradient", "deepfool"):
                entry = cell[attack]
                assert entry["n_attacked"] == 100 and 0 < entry["top5_fraction"] <= 1
                for m in ("m100", "all"):
                    assert {"eps50", "eps80", "fooling_eps80", "error_rate_at_norm"} <= set(entry[m])
                # The SVD-UAP changes more predictions at norm 6 than a random direction.
                assert entry["m100"]["fooling_rate_at_norm"] > cell["random"]["fooling_rate_at_norm"]
    assert metrics["sweep_reading"]["stdcnn"]["verdict"] in (HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED)
    report = os.path.join(cfg.run_dir, "report")
    text = open(os.path.join(report, "sweep.md"), encoding="utf-8").read()
    assert "## StdCNN, rotated test set" in text and "arXiv 2006.04449" in text
    for name in ("sweep_eps80.png", "sweep_accuracy.png"):
        assert os.path.getsize(os.path.join(report, "figures", name)) > 1000


def test_training_range_changes_what_the_model_learns(swept):
    """Trained upright only, StdCNN keeps fewer predictions under rotation
    and learns upright digits faster than trained with every rotation (on
    this profile: invariance 0.30 against 0.58, upright accuracy 0.61
    against 0.29)."""
    cfg, results, metrics = swept
    assert os.path.isfile(os.path.join(cfg.export_dir, "mnist-stdcnn-rot0", "model.keras"))
    assert results["train-stdcnn-rot0"].summary["test_accuracy"] != results["train-stdcnn-rot180"].summary[
        "test_accuracy"]
    at = metrics["sweep"]["stdcnn"]
    assert at["0"]["upright"]["invariance"] < at["180"]["upright"]["invariance"]
    assert at["0"]["upright"]["accuracy"] > at["180"]["upright"]["accuracy"]


def test_one_more_range_trains_and_measures_only_that_range(swept):
    from keras_uap.pipelines.sweep import run_sweep

    cfg, _, _ = swept
    again = run_sweep(cfg, models=("stdcnn",), ranges=(0, 90, 180))
    ran = sorted(name for name, result in again.items() if not result.cached)
    cells = [f"stdcnn-rot90-{test_set}" for test_set in ("upright", "rotated")]
    assert ran == sorted(["report", "train-stdcnn-rot90"] + [f"{stage}-{cell}" for cell in cells
                                                             for stage in ("universal", "measures")]
                         + [f"directions-{cell}-{attack}" for cell in cells for attack in ("gradient", "deepfool")])
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        assert list(json.load(f)["sweep"]["stdcnn"]) == ["0", "90", "180"]


@pytest.mark.parametrize("eps80,verdict", [
    ({0: 10.0, 90: 8.0, 180: 6.0}, HOLDS),
    ({0: 10.0, 90: 10.4, 180: 8.9}, HOLDS),                 # a rise within 5% between neighbours
    ({180: 6.0, 0: None}, HOLDS),                           # above the grid at r = 0
    ({0: 10.0, 90: 11.0, 180: 6.0}, DOES_NOT_HOLD),         # a rise of 10% on the way
    ({0: 10.0, 180: 9.5}, DOES_NOT_HOLD),                   # only 5% lower at the end
    ({0: 6.0, 180: None}, DOES_NOT_HOLD),
    ({0: None, 180: None}, CANNOT_BE_JUDGED),
    ({0: 0.0, 180: 0.0}, CANNOT_BE_JUDGED),
])
def test_growth_criterion(eps80, verdict):
    assert judge_growth(eps80)[0] == verdict


def test_api_sweeps_a_user_builder(tmp_path, mnist_raw):
    import keras

    from keras_uap.api import ArgumentError, sweep

    def build(r):
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 5, strides=2, activation="relu"),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    x_train, y_train = mnist_raw["train_images"][:1500], mnist_raw["train_labels"][:1500]
    x_test, y_test = mnist_raw["test_images"][:200], mnist_raw["test_labels"][:200]
    result = sweep(build, x_train, y_train, x_test, y_test, ranges=(0, 180), epochs=1, attack_limit=60,
                   run_dir=str(tmp_path))
    assert set(result.by_range) == {"0", "180"} and result.verdict in (HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED)
    upright = result.by_range["0"]["upright"]
    assert upright["accuracy"] > 0.4 and upright["deepfool"]["n_attacked"] == 60
    assert set(result.reading) == {"gradient", "deepfool"}
    assert os.path.isfile(os.path.join(result.report_dir, "sweep.md"))
    assert os.path.isfile(tmp_path / "models" / "model-rot180" / "model.keras")
    with pytest.raises(ArgumentError, match="at least two distinct rotation ranges"):
        sweep(build, x_train, y_train, x_test, y_test, ranges=(90, 90.0))
    with pytest.raises(ArgumentError, match=r"`x_test` must lie in \[0, 1\]"):
        sweep(build, x_train, y_train, np.full((2, 28, 28), 3.0), y_test[:2])


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv,expected", [
    (["--augmentation", "0,200"], "rotation ranges must be numbers of degrees in [0, 180], got [0.0, 200.0]"),
    (["--augmentation", "0,ninety"], "--augmentation must be comma-separated numbers, got '0,ninety'"),
    (["--augmentation", "45"], "a sweep needs at least two distinct rotation ranges"),
    (["--models", "stdcnn,resnet"], "unknown model 'resnet'; choose from: stdcnn, gcnn, roteqnet"),
])
def test_sweep_user_errors_are_one_line_with_exit_2(capsys, tmp_path, argv, expected):
    code, err = _run(capsys, "sweep", *argv, "--run-dir", str(tmp_path / "run"))
    assert code == 2 and expected in err and err.strip().count("\n") == 0
    assert not os.path.exists(tmp_path / "run")


def test_sweep_refuses_a_run_all_run_directory(capsys, tmp_path):
    report = tmp_path / "run" / "report"
    report.mkdir(parents=True)
    (report / "lineage.json").write_text(json.dumps({"stage": "report"}))
    code, err = _run(capsys, "sweep", "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path))
    assert code == 2 and "holds a run-all report" in err


def test_sweep_help_names_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    for option in ("--augmentation", "--models", "--quick", "--run-dir", "--export-dir", "--data-dir", "--seed"):
        assert option in out


def test_sweep_model_settings_add_the_sweep_subsets_and_keep_existing_ones():
    from keras_uap.pipelines.study import DEFAULT_MODEL_SETTINGS
    from keras_uap.pipelines.sweep import sweep_model_settings

    merged = sweep_model_settings(DEFAULT_MODEL_SETTINGS)
    assert merged["gcnn"] == {"directions": {"deepfool_subset": 2000}, "universal": {"eval_subset": 2000}}
    assert merged["stdcnn"] == merged["gcnn"]
    assert merged["roteqnet"] == DEFAULT_MODEL_SETTINGS["roteqnet"]
    kept = sweep_model_settings({"gcnn": {"universal": {"eval_subset": 500}}})
    assert kept["gcnn"]["universal"] == {"eval_subset": 500}
    assert "eval_subset" not in DEFAULT_MODEL_SETTINGS.get("gcnn", {}).get("universal", {})


@pytest.mark.slow
def test_the_quick_sweep_runs_end_to_end_through_the_cli(tmp_path, mnist_dir):
    """`keras-uap sweep --quick` in a fresh process, as a user runs it (StdCNN
    and the GCNN at 0 and 180 degrees; about three minutes of CPU time): it
    exits 0 and writes the report, both figures and a metrics.json with every
    cell and a verdict per model, and the results page's sweep section made
    from that metrics.json has the report's own reading."""
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "keras_uap.cli", "sweep", "--quick", "--data-dir", mnist_dir,
                           "--run-dir", str(run), "--export-dir", str(tmp_path / "export")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1500,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = run / "report"
    for name in ("sweep_eps80.png", "sweep_accuracy.png"):
        assert (report / "figures" / name).stat().st_size > 1000
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["sweep"]) == ["stdcnn", "gcnn"] and metrics["sweep_ranges"] == [0.0, 180.0]
    text = (report / "sweep.md").read_text(encoding="utf-8")
    for model in ("stdcnn", "gcnn"):
        assert set(metrics["sweep"][model]) == {"0", "180"}
        for r in ("0", "180"):
            for test_set in ("upright", "rotated"):
                cell = metrics["sweep"][model][r][test_set]
                assert 0 <= cell["accuracy"] <= 1 and cell["n_test"] > 0
                assert {"m100", "all"} <= set(cell["gradient"]) and {"m100", "all"} <= set(cell["deepfool"])
        verdict = metrics["sweep_reading"][model]["verdict"]
        assert verdict in (HOLDS, DOES_NOT_HOLD, CANNOT_BE_JUDGED)
        assert f"- {display_name(model)}: universal vulnerability grows with r: **{verdict}**" in text
    # One reading, two places: the results page's section repeats sweep.md's.
    with open(os.path.join(HERE, "fixtures", "metrics-quick-profile.json"), encoding="utf-8") as f:
        page = make_pages(json.load(f), metrics).results_page
    reading = text.split("## Reading\n\n")[1].split("\n![")[0]
    assert reading.startswith("Kamath") and "### GCNN" in reading and reading in page
