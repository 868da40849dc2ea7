"""`keras-uap study` on a model and data that are not the paper's: real MNIST
digits 0-3, padded to 32x32 and repeated over 3 channels, classified by a
tiny CNN trained here and saved as .keras, with the test images in an .npz.
The study runs run-all's model stages (directions, analysis, universal,
comparison) on them."""

import contextlib
import io
import json
import os
import socket
import subprocess
import sys

import shutil

import numpy as np
import pytest

import keras
from small_models import strided_cnn

from keras_uap.baselines.compare import METHODS
from keras_uap.cli import main
from keras_uap.report.figures import display_image

SHAPE = (32, 32, 3)
CLASSES = 4
SAMPLE_SIZES = (20, 60)
LIMIT = 300
EPS = (1.0, 2.0, 4.0, 8.0)
ATTACKS = ("gradient", "fgsm", "deepfool")
STAGES = ("user_data", "directions-model-gradient", "directions-model-fgsm", "directions-model-deepfool",
          "analysis-model", "universal-model", "comparison-model", "user_report")


def _cli(*argv):
    """(exit code, stdout, stderr) of `keras-uap argv`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    return info.value.code, out.getvalue(), err.getvalue()


def _digits(raw, split, n):
    keep = np.nonzero(raw[f"{split}_labels"] < CLASSES)[0][:n]
    x = np.pad(raw[f"{split}_images"][keep], ((0, 0), (2, 2), (2, 2)))[..., None].repeat(3, axis=-1)
    return (x / np.float32(255)).astype(np.float32), raw[f"{split}_labels"][keep].astype(np.int64)


@pytest.fixture(scope="module")
def files(mnist_raw, tmp_path_factory):
    """model.keras (~97% test accuracy after ~3 s of training) and test.npz."""
    x_train, y_train = _digits(mnist_raw, "train", 3000)
    x_test, y_test = _digits(mnist_raw, "test", LIMIT + 100)
    keras.utils.set_random_seed(0)
    model = strided_cnn(SHAPE, CLASSES, widths=(8, 16))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    root = tmp_path_factory.mktemp("user")
    paths = {"model": root / "model.keras", "data": root / "test.npz", "root": root}
    model.save(paths["model"])
    np.savez(paths["data"], x=x_test, y=y_test)
    return paths


def _study_argv(files, run_dir, *extra):
    return ("study", "--model-path", files["model"], "--data", files["data"], "--limit", LIMIT,
            "--sample-sizes", ",".join(map(str, SAMPLE_SIZES)), "--eps", ",".join(map(str, EPS)),
            "--run-dir", run_dir, *extra)


@pytest.fixture(scope="module")
def study(files):
    run_dir = files["root"] / "run"
    code, out, err = _cli(*_study_argv(files, run_dir))
    assert code == 0, err[-3000:]
    return run_dir, out, err


def _stage_lines(out):
    """{stage label: "cached" or its seconds} from the command's table."""
    rows = [line.split() for line in out.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) > 1 and row[0] in STAGES}


def _metrics(run_dir):
    with open(run_dir / "metrics.json") as f:
        return json.load(f)


def test_study_writes_metrics_report_and_perturbations(study):
    run_dir, out, _ = study
    assert list(_stage_lines(out)) == list(STAGES)
    metrics = _metrics(run_dir)
    for key in ("model", "data", "eps_grid", "seed", "spectrum", "theory", "universal", "comparison",
                "perturbations", "figures", "timings"):
        assert key in metrics, key
    assert metrics["model"]["input_shape"] == list(SHAPE) and metrics["model"]["num_classes"] == CLASSES
    assert metrics["model"]["clean_accuracy"] > 0.9 and metrics["data"]["n"] == LIMIT
    assert metrics["eps_grid"] == [0.0, *EPS]
    for attack in ATTACKS:
        spectrum = metrics["spectrum"][attack]
        assert spectrum["n"] == LIMIT and len(spectrum["singular_values"]) == LIMIT
        assert 0 < spectrum["top1_fraction"] <= spectrum["top5_fraction"] <= spectrum["top10_fraction"] <= 1
        theory = metrics["theory"][attack]
        assert theory["eigengap"] == pytest.approx(theory["top_eigenvalue"] - theory["second_eigenvalue"])
        assert theory["top_eigenvalue"] == pytest.approx(spectrum["singular_values"][0] ** 2 / LIMIT, rel=1e-4)
        for m in SAMPLE_SIZES:
            curve = metrics["universal"][attack][str(m)]
            assert len(curve["error_rate"]) == len(metrics["eps_grid"]) and curve["fooling_rate"][0] == 0.0
            v = np.load(run_dir / "perturbations" / f"model-{attack}-m{m}.npy")
            assert v.shape == SHAPE and v.dtype == np.float32
            assert abs(np.linalg.norm(v) - 1.0) < 1e-5
            assert metrics["perturbations"][f"{attack}-m{m}"] == f"perturbations/model-{attack}-m{m}.npy"
    assert sorted(os.listdir(run_dir / "perturbations")) == sorted(
        f"model-{a}-m{m}.npy" for a in ATTACKS for m in SAMPLE_SIZES)
    assert sorted(os.path.basename(f) for f in metrics["figures"]) == [
        "curves.png", "linf_curves.png", "perturbations.png", "sample_spectra.png", "singular_values.png"]
    for figure in metrics["figures"]:
        assert os.path.getsize(run_dir / "user_report" / figure) > 1000, figure
    report = (run_dir / "user_report" / "report.md").read_text()
    for section in ("## Spectrum of the attack directions", "## Theory checks", "| random |",
                    "## Singular values of each sample", "## Error rate against the L-infinity norm",
                    "## Against other universal perturbations", "## Error rate under an L-infinity budget"):
        assert section in report, section
    assert (run_dir / "directions" / "model-deepfool" / "lineage.json").is_file()


def test_study_compares_with_the_baselines_under_l2_and_linf(study):
    run_dir = study[0]
    comparison = _metrics(run_dir)["comparison"]
    assert set(comparison["l2"]) == set(METHODS) == set(comparison["linf"])
    for method in METHODS:
        assert sorted(comparison["l2"][method], key=int) == [str(m) for m in SAMPLE_SIZES]
        for curve in comparison["l2"][method].values():
            assert curve["eps"] == [0.0, *EPS] and len(curve["error_rate"]) == len(curve["eps"])
        # The L-infinity table is built from the largest sample, over run-all's budgets (data in [0, 1]).
        linf = comparison["linf"][method][str(SAMPLE_SIZES[-1])]
        assert linf["budget"] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
        assert len(linf["error_rate"]) == len(linf["budget"]) and linf["fooling_rate"][0] == 0.0
    # The comparison's SVD-UAP is the published vector: the same curve as the universal stage's.
    universal = _metrics(run_dir)["universal"]["gradient"][str(SAMPLE_SIZES[0])]["error_rate"]
    assert comparison["l2"]["svd_gradient"][str(SAMPLE_SIZES[0])]["error_rate"] == universal
    # Under L-infinity too, the SVD-UAP's sign beats a random direction's at the largest budget.
    linf = comparison["linf"]
    assert linf["svd_deepfool"][str(SAMPLE_SIZES[-1])]["error_rate"][-1] > \
        linf["random"][str(SAMPLE_SIZES[-1])]["error_rate"][-1] + 0.1


@pytest.mark.parametrize("switch,gone,kept", [
    ("--no-comparison", ("comparison",), ("spectrum", "theory")),
    ("--no-analysis", ("spectrum", "theory"), ("comparison",)),
])
def test_switching_a_stage_off_removes_it_and_reuses_the_rest(study, tmp_path, files, switch, gone, kept):
    run_dir = tmp_path / "run"
    shutil.copytree(study[0], run_dir)
    code, out, err = _cli(*_study_argv(files, run_dir, switch))
    assert code == 0, err[-3000:]
    stages = _stage_lines(out)
    stage = {"--no-comparison": "comparison-model", "--no-analysis": "analysis-model"}[switch]
    assert stage not in stages and stages["user_report"] != "cached"
    assert all(state == "cached" for label, state in stages.items() if label != "user_report"), out
    metrics = _metrics(run_dir)
    assert not [key for key in gone if key in metrics] and all(key in metrics for key in kept)
    assert metrics["universal"] == _metrics(study[0])["universal"]
    report = (run_dir / "user_report" / "report.md").read_text()
    heading = {"--no-comparison": "## Against other universal perturbations",
               "--no-analysis": "## Theory checks"}[switch]
    assert heading not in report and "| random |" in report


def test_linf_curves_measure_every_published_vectors_sign(study, files):
    from keras_uap.api import load_classifier, load_images, predict_labels

    metrics = _metrics(study[0])
    budgets = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]  # run-all's, for data in [0, 1]
    assert metrics["linf_grid"] == budgets
    linf = metrics["linf"]
    assert set(linf) == {*ATTACKS, "random"} and linf["random"]["seeds"] == [0, 1, 2]
    for attack in ATTACKS:
        assert sorted(linf[attack], key=int) == [str(m) for m in SAMPLE_SIZES]
        for curve in linf[attack].values():
            assert curve["eps"] == budgets and curve["fooling_rate"][0] == 0.0
    # A point measured here: the published vector's sign at that budget, on every loaded input.
    x, y = load_images(str(files["data"]), limit=LIMIT)
    v = np.load(study[0] / "perturbations" / f"model-fgsm-m{SAMPLE_SIZES[0]}.npy")
    predicted = predict_labels(load_classifier(str(files["model"])), np.clip(x + 0.15 * np.sign(v), 0.0, 1.0))
    assert linf["fgsm"][str(SAMPLE_SIZES[0])]["error_rate"][3] == pytest.approx(float(np.mean(predicted != y)),
                                                                                abs=1e-9)
    # The comparison's SVD-UAP under L-infinity is the same vector's sign: the same curve.
    comparison = metrics["comparison"]["linf"]["svd_deepfool"][str(SAMPLE_SIZES[-1])]
    assert comparison["error_rate"] == linf["deepfool"][str(SAMPLE_SIZES[-1])]["error_rate"]
    assert linf["deepfool"][str(SAMPLE_SIZES[-1])]["error_rate"][-1] > linf["random"]["error_rate"][-1] + 0.1


def test_each_samples_top_singular_values_are_recorded(study):
    from keras_uap.analysis.spectrum import singular_spectrum
    from keras_uap.method import draw_sample

    curves = _metrics(study[0])["universal"]
    for attack in ATTACKS:
        with np.load(study[0] / "directions" / f"model-{attack}" / "directions.npz") as f:
            directions = f["directions"]
        for m in SAMPLE_SIZES:
            recorded = curves[attack][str(m)]["singular_values"]
            expected = singular_spectrum(directions[draw_sample(len(directions), m, 0)])[0][:20]
            np.testing.assert_allclose(recorded, expected, rtol=1e-6)
            # Unit rows: the squares sum to m at most, so sigma_1^2 / m is an eigenvalue in (0, 1].
            assert len(recorded) == min(m, 20) and 0 < recorded[0] ** 2 / m <= 1 + 1e-9
    # The report's table reads them: lambda_1 = sigma_1^2 / m of the last sample above.
    report = (study[0] / "user_report" / "report.md").read_text()
    assert f"| DeepFool | {SAMPLE_SIZES[-1]} | {recorded[0] ** 2 / SAMPLE_SIZES[-1]:.3f} |" in report


def test_linf_curves_and_sample_spectra_switch_off(study, tmp_path, files):
    run_dir = tmp_path / "run"
    shutil.copytree(study[0], run_dir)
    code, out, err = _cli(*_study_argv(files, run_dir, "--no-linf-curves", "--no-sample-spectra",
                                       "--no-comparison"))
    assert code == 0, err[-3000:]
    stages = _stage_lines(out)
    assert stages["universal-model"] != "cached" and stages["directions-model-gradient"] == "cached"
    metrics, before = _metrics(run_dir), _metrics(study[0])
    assert "linf" not in metrics and "linf_grid" not in metrics
    for attack in ATTACKS:
        for m, curve in metrics["universal"][attack].items():
            assert "singular_values" not in curve
            # Switching the additions off changes nothing else the stage measured.
            assert curve == {k: v for k, v in before["universal"][attack][m].items() if k != "singular_values"}
    assert sorted(os.path.basename(f) for f in metrics["figures"]) == [
        "curves.png", "perturbations.png", "singular_values.png"]
    report = (run_dir / "user_report" / "report.md").read_text()
    assert "## Singular values of each sample" not in report
    assert "## Error rate against the L-infinity norm" not in report


def test_svd_perturbation_beats_random_directions_at_equal_norm(study):
    metrics = _metrics(study[0])
    random = metrics["universal"]["random"]["error_rate"]
    for attack in ("gradient", "fgsm", "deepfool"):
        for m in SAMPLE_SIZES:
            errors = metrics["universal"][attack][str(m)]["error_rate"]
            # FGSM's sign steps make the weakest perturbation here (0.11-0.22 against 0.03 at norm 8).
            assert errors[-1] > random[-1] + (0.05 if attack == "fgsm" else 0.3), (attack, m, errors, random)
            assert all(e >= r - 0.02 for e, r in zip(errors, random)), (attack, m, errors, random)


def test_perturbation_is_the_python_apis(study, files):
    from keras_uap.api import default_sign_norms, load_images, svd_universal_perturbation

    x, y = load_images(str(files["data"]), limit=LIMIT)
    # The study chooses each sign over its L2 grid (--eps); by default that is the API's default.
    result = svd_universal_perturbation(str(files["model"]), x, y, attack="gradient", sample_size=SAMPLE_SIZES[0],
                                        sign_norms=EPS)
    saved = np.load(study[0] / "perturbations" / f"model-gradient-m{SAMPLE_SIZES[0]}.npy")
    np.testing.assert_allclose(saved, result.perturbation, atol=1e-4)
    with open(study[0] / "universal" / "model" / "universal.json") as f:
        assert json.load(f)["eps_grid"] == list(EPS)
    from keras_uap.pipelines.user_study import UserDataParams, UserStudyConfig

    fitted = UserStudyConfig(UserDataParams("m.keras", "d.npz")).for_data(SHAPE, n=LIMIT)
    assert fitted.universal.eps_grid == pytest.approx(default_sign_norms(SHAPE))


def test_rerun_is_cached_whatever_the_strategy(study, files):
    run_dir, _, _ = study
    before = (run_dir / "metrics.json").read_bytes()
    code, out, err = _cli(*_study_argv(files, run_dir, "--strategy", "mirrored"))
    assert code == 0, err[-3000:]
    stages = _stage_lines(out)
    assert list(stages) == list(STAGES)
    assert all(state == "cached" for state in stages.values()), out
    assert (run_dir / "metrics.json").read_bytes() == before
    assert not [name for name in os.listdir(run_dir) if name.startswith(".tmp-") or ".old-" in name]


@pytest.mark.parametrize("case,expected", [
    ("labels", "label 7 is out of range"),
    ("shape", "images are 28x28x1 but"),
    ("range", "outside --clip-min"),
    ("no_data", "data not found"),
    ("no_model", "model not found"),
    ("attack", "unknown attack 'cw'"),
    ("linf_eps", "--linf-eps must be finite norms >= 0, at least one positive"),
])
def test_user_errors_are_one_line_with_exit_2(files, tmp_path, case, expected):
    x, y = np.load(files["data"])["x"][:20], np.load(files["data"])["y"][:20]
    data, model = tmp_path / "data.npz", files["model"]
    argv = []
    if case == "labels":
        np.savez(data, x=x, y=np.where(np.arange(20) == 3, 7, y))
    elif case == "shape":
        np.savez(data, x=x[:, 2:30, 2:30, :1], y=y)
    elif case == "range":
        np.savez(data, x=255 * x, y=y)
    elif case == "no_data":
        data = tmp_path / "missing.npz"
    elif case == "no_model":
        np.savez(data, x=x, y=y)
        model = tmp_path / "missing.keras"
    elif case == "linf_eps":
        np.savez(data, x=x, y=y)
        argv = ["--linf-eps", "0,0"]
    else:
        np.savez(data, x=x, y=y)
        argv = ["--attacks", "gradient,cw"]
    code, _, err = _cli("study", "--model-path", model, "--data", data, "--run-dir", tmp_path / "run", *argv)
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1, err
    assert errors[0].startswith("keras-uap: error: ") and expected in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "user_data").exists()


def test_display_image_adapts_to_the_channels():
    rng = np.random.default_rng(0)
    rgb = display_image(rng.standard_normal((6, 5, 3)))
    assert rgb.shape == (6, 5, 3) and rgb.min() >= 0 and rgb.max() <= 1
    grey = rng.standard_normal((6, 5, 1))
    np.testing.assert_allclose(display_image(grey), 0.5 + 0.5 * grey[..., 0] / np.abs(grey).max())
    many = rng.standard_normal((6, 5, 4))
    np.testing.assert_allclose(display_image(many), display_image(many.mean(axis=-1, keepdims=True)))
    assert display_image(np.zeros((3, 3, 1))).tolist() == [[0.5] * 3] * 3


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_python_api_runs_on_two_workers():
    """MultiWorkerMirroredStrategy over two local processes (the README's way
    to scale out): every worker gets the single-device results."""
    ports = [_free_port(), _free_port()]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api_multiworker_check.py")
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "CUDA_VISIBLE_DEVICES": ""}
        workers.append(subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2 and len(result["max_abs_diff"]) == 4
        for name, diff in result["max_abs_diff"].items():
            assert diff <= 1e-5, (name, diff)


def test_the_user_studys_default_norms_scale_with_the_input_range():
    from keras_uap.method import L2_GRID
    from keras_uap.pipelines.user_study import UserDataParams, UserStudyConfig

    unit = UserStudyConfig(UserDataParams("m.keras", "d.npz")).for_data((28, 28, 1), n=1000)
    assert unit.universal.eps_grid == pytest.approx(L2_GRID)
    assert unit.comparison.linf_grid == pytest.approx((0.05, 0.1, 0.15, 0.2, 0.25, 0.3))
    assert unit.universal.linf_grid == unit.comparison.linf_grid
    wide = UserStudyConfig(UserDataParams("m.keras", "d.npz", clip_min=-1.0, clip_max=1.0)).for_data((28, 28, 4), 50)
    assert wide.universal.eps_grid == pytest.approx([4 * e for e in L2_GRID])
    assert wide.comparison.linf_grid == pytest.approx((0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    # m is at most the inputs, and the comparison's follow the universal stage's.
    assert wide.universal.sample_sizes == wide.comparison.sample_sizes == (50,)
    assert wide.analysis.invariant_angle is None
    # The iterative UAP's radii follow the inputs as the grids do.
    assert wide.comparison.build_eps == pytest.approx(4 * 6.0)
    assert wide.comparison.linf_build_budget == pytest.approx(0.4)


def test_user_set_fields_survive_for_data_and_defaulted_ones_are_scaled():
    from keras_uap.pipelines.user_study import UserDataParams, UserStudyConfig

    cfg = UserStudyConfig(UserDataParams("m.keras", "d.npz", clip_max=255.0), seed=3).replace_params(
        **{"universal.eps_grid": (3.0, 0.0, 1.0), "comparison.linf_grid": (0.5,), "universal.sample_sizes": (10, 99)})
    assert set(cfg.user_set) == {"universal.eps_grid", "comparison.linf_grid", "universal.sample_sizes"}
    fitted = cfg.for_data((28, 28, 1), n=40)
    # Set by the user: kept (0 left out, sorted, m at most n); the L-infinity curves follow the comparison's grid.
    assert fitted.universal.eps_grid == (1.0, 3.0) and fitted.comparison.linf_grid == (0.5,)
    assert fitted.universal.linf_grid == (0.5,) and fitted.universal.sample_sizes == (10, 40)
    # Defaulted: scaled to the 0..255 range, and the samples seeded with the run's seed.
    assert fitted.comparison.build_eps == pytest.approx(255 * 6.0)
    assert fitted.comparison.linf_build_budget == pytest.approx(255 * 0.2)
    assert fitted.universal.seeds == (3,)
    # A field switched off stays off; one the user set after another keeps both.
    off = cfg.replace_params(**{"universal.linf_grid": ()}).for_data((28, 28, 1), n=40)
    assert off.universal.linf_grid == () and off.comparison.linf_grid == (0.5,)
    with pytest.raises(ValueError, match="like 'universal.eps_grid'"):
        cfg.replace_params(eps=(1.0,))


@pytest.mark.parametrize("option,value,expected", [
    ("--eps", "0", "--eps must be finite norms >= 0, at least one positive"),
    ("--sample-sizes", "0,5", "--sample-sizes must be integers >= 1"),
    ("--clip-min", "2", "--clip-min must be below --clip-max"),
])
def test_bad_values_are_one_line_errors_before_any_stage(tmp_path, option, value, expected):
    model, data = tmp_path / "m.keras", tmp_path / "d.npz"
    model.write_bytes(b"")
    np.savez(data, x=np.zeros((2, 4, 4, 1), np.float32), y=np.zeros(2, np.int64))
    code, _, err = _cli("study", "--model-path", model, "--data", data, "--run-dir", tmp_path / "run", option, value)
    assert code == 2 and err.startswith("keras-uap: error: ") and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "user_data").exists()
