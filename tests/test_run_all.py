"""`run_all` end to end on a small real-MNIST subset (the tiny profile of the
shared fixture: 3,000 training images, one epoch, 500 test inputs, 200
attacked), checking `metrics.json` as a user would read it."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_uap.method import ATTACK_NAMES as ATTACKS
from keras_uap.pipelines.study import run_all
from keras_uap.report import missing_metric_keys

MODELS = ("stdcnn", "gcnn", "roteqnet")


@pytest.fixture(scope="module")
def study(tiny_run):
    cfg, _ = tiny_run
    results = run_all(cfg)
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        return cfg, results, json.load(f)


def test_every_metric_key_is_present(study):
    cfg, results, metrics = study
    # The report cannot time itself: every other stage must be there.
    stages = [name for name in results if name != "report"]
    full_set_only = [a for a in ATTACKS if a in cfg.universal.full_set_only]  # clipped FGSM, PGD
    sampled = [a for a in ATTACKS if a not in full_set_only]
    assert full_set_only and sampled
    # RotEqNet's DeepFool attacks a seeded 100 of the 200 (QUICK_MODEL_SETTINGS): its full set is m = 100.
    others = [a for a in sampled if a != "deepfool"]
    assert missing_metric_keys(metrics, ("stdcnn", "gcnn"), sampled, ms=["50", "200"], stages=stages) == []
    assert missing_metric_keys(metrics, ("roteqnet",), others, ms=["50", "200"], stages=stages) == []
    assert missing_metric_keys(metrics, ("roteqnet",), ["deepfool"], ms=["50", "100"], stages=stages) == []
    assert missing_metric_keys(metrics, MODELS, full_set_only, ms=["200"], stages=stages) == []
    assert os.path.isfile(os.path.join(cfg.run_dir, "report", "report.md"))
    assert metrics["models"]["gcnn"]["export_path"].endswith("mnist-gcnn/model.keras")


def test_spectra_and_angles_are_well_formed(study):
    _, _, metrics = study
    for model in MODELS:
        for attack in ATTACKS:
            spectrum = metrics["spectrum"][model][attack]
            fractions = [spectrum["top1_fraction"], spectrum["top5_fraction"], spectrum["top10_fraction"]]
            assert all(0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
            angles = metrics["invariant"][model][attack]["principal_angles_deg"]
            assert len(angles) == 5 and all(0 <= a <= 90 for a in angles)


def test_svd_direction_fools_more_than_random_at_equal_norm(study):
    _, _, metrics = study
    for model in MODELS:
        random = metrics["universal"][model]["random"]
        curve = metrics["universal"][model]["gradient"]["200"]
        shared = min(len(curve["eps"]), len(random["eps"]))
        assert curve["eps"][:shared] == random["eps"][:shared]
        ours, theirs = np.array(curve["error_rate"][:shared]), np.array(random["error_rate"][:shared])
        assert ours[-1] > theirs[-1] and ours.mean() > theirs.mean()


def test_perturbations_are_published_as_unit_vectors(study):
    cfg, _, _ = study
    path = os.path.join(cfg.run_dir, "perturbations", "gcnn-deepfool-m200.npy")
    v = np.load(path)
    assert v.shape == (28, 28, 1) and v.dtype == np.float32
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_the_published_vector_is_the_one_measured_and_the_api_returns(study):
    """`perturbations/<model>-<attack>-m<m>.npy` is bitwise the SVD-UAP the
    comparison (and so the transfer) evaluates, and the public API rebuilds
    it from the attacked test inputs and the run's seed."""
    from keras_uap import svd_universal_perturbation
    from keras_uap.pipelines.directions_stage import load_directions
    from keras_uap.pipelines.study import export_path

    cfg, results, _ = study
    with np.load(os.path.join(results["data"].output_dir, "test.npz")) as f:
        x, y = f["x"], f["y"]
    with open(os.path.join(results["transfer"].output_dir, "transfer.json")) as f:
        m = json.load(f)["m"]
    assert m == 50
    for attack in ("gradient", "deepfool"):
        published = np.load(os.path.join(cfg.run_dir, "perturbations", f"stdcnn-{attack}-m{m}.npy"))
        compared = np.load(os.path.join(results["comparison-stdcnn"].output_dir, "perturbations",
                                        f"svd_{attack}-m{m}.npy"))
        np.testing.assert_array_equal(compared, published)
        index = load_directions(results[f"directions-stdcnn-{attack}"].output_dir)["index"]
        rebuilt = svd_universal_perturbation(os.path.join(export_path(cfg, "stdcnn"), "model.keras"), x[index],
                                             y[index], attack=attack, sample_size=m, seed=cfg.seed)
        np.testing.assert_allclose(rebuilt.perturbation, published, rtol=0, atol=1e-6, err_msg=attack)


def test_the_full_sets_rejected_sign_is_measured_beside_the_kept_one(study):
    cfg, results, metrics = study
    with np.load(os.path.join(results["data"].output_dir, "test.npz")) as f:
        x, y = f["x"], f["y"]
    from keras_uap.api import load_classifier, predict_labels
    from keras_uap.pipelines.study import export_path

    classifier = load_classifier(os.path.join(export_path(cfg, "stdcnn"), "model.keras"))
    v = np.load(os.path.join(cfg.run_dir, "perturbations", "stdcnn-gradient-m200.npy"))
    curve = metrics["universal"]["stdcnn"]["gradient"]["200"]
    other = curve["other_sign"]
    assert other["eps"] == curve["eps"] and "eps80" in other and "per_seed" not in other
    # StdCNN's curves use every test input: the rejected sign's last point is -v's error rate there.
    at = len(other["eps"]) - 1
    assert other["eps"][at] > 0
    perturbed = np.clip(x - other["eps"][at] * v, 0.0, 1.0)
    assert other["error_rate"][at] == pytest.approx(float(np.mean(predict_labels(classifier, perturbed) != y)),
                                                    abs=1e-9)
    assert "other_sign" not in metrics["universal"]["stdcnn"]["gradient"]["50"]


def test_rerun_is_all_cached_and_forced_stages_reproduce(study, tmp_path):
    cfg, results, _ = study
    again = run_all(cfg)
    assert all(r.cached for r in again.values())
    forced = dataclasses.replace(cfg, force=True)
    from keras_uap.pipelines.study import collect_directions, evaluate_universal

    directions = {a: collect_directions(forced, "stdcnn", a, data=results["data"]) for a in ATTACKS}
    universal = evaluate_universal(forced, "stdcnn", directions, results["data"])
    assert not universal.cached
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        before = json.load(f)["universal"]["stdcnn"]
    with open(os.path.join(universal.output_dir, "universal.json")) as f:
        after = json.load(f)
    assert after["curves"]["deepfool"]["200"]["error_rate"] == before["deepfool"]["200"]["error_rate"]
    assert after["random"]["error_rate"] == before["random"]["error_rate"]
    # The study's additions stay off in run-all: no L-infinity curves, no samples' spectra.
    assert "linf" not in after
    assert not [m for by_m in after["curves"].values() for m, c in by_m.items() if "singular_values" in c]


# --- beyond the paper: baselines, cost, L-infinity and transfer -------------------------

METHODS = ("svd_gradient", "svd_deepfool", "iterative_uap", "class_mean", "random")


def test_comparison_covers_every_model_method_and_sample(study):
    cfg, _, metrics = study
    for model in MODELS:
        sizes = [str(m) for m in cfg.for_model(model).comparison.sample_sizes]
        assert sizes == ["50"]
        for method in METHODS:
            for m in sizes:
                c = metrics["comparison"][model][method][m]
                assert c["eps"][0] == 0.0 and c["eps"] == sorted(c["eps"])
                assert all(0 <= r <= 1 for r in c["error_rate"] + c["fooling_rate"])
                assert c["fooling_rate"][0] == 0.0
                assert "seconds" not in c and metrics["timings"]["comparison_seconds"][model][method][m] >= 0
            linf = metrics["linf"][model][method][sizes[-1]]
            assert linf["budget"][0] == 0.0 and all(0 <= r <= 1 for r in linf["error_rate"])
        # Cost in gradient evaluations: one per input for the gradient SVD, none without gradients,
        # DeepFool's per iteration and candidate difference (9 per step) for the others.
        for m in map(int, sizes):
            by_method = {k: metrics["comparison"][model][k][str(m)] for k in METHODS}
            assert by_method["svd_gradient"]["gradient_evaluations"] == m
            assert by_method["class_mean"]["gradient_evaluations"] == 0
            assert by_method["random"]["gradient_evaluations"] == 0
            assert by_method["svd_deepfool"]["gradient_evaluations"] % 9 == 0
            assert by_method["svd_deepfool"]["gradient_evaluations"] >= 9 * m * by_method["svd_deepfool"][
                "deepfool_success_rate"]
            assert by_method["iterative_uap"]["built_norm"] <= cfg.comparison.build_eps + 1e-4
        verdicts = metrics["cost_verdict"][model][sizes[-1]]
        assert set(verdicts) == {"svd_gradient", "svd_deepfool"}
        iterative = metrics["comparison"][model]["iterative_uap"][sizes[-1]]["gradient_evaluations"]
        for method, v in verdicts.items():
            assert v["answer"] in (True, False, None)
            own = metrics["comparison"][model][method][sizes[-1]]["gradient_evaluations"]
            assert v["gradient_ratio"] == pytest.approx(own / iterative)
    with open(os.path.join(cfg.run_dir, "report", "report.md"), encoding="utf-8") as f:
        report = f.read()
    assert "Beyond the paper" in report and "Transfer across models" in report and "L-infinity" in report


def test_comparison_reuses_the_universal_curves_and_they_equal_a_fresh_evaluation(study):
    """The comparison takes the published SVD-UAPs' and the random direction's L2 curves from the
    universal stage; every one of its curves is what predicting every point gives."""
    from keras_uap.method import fooling_curves, random_unit_vectors
    from keras_uap.pipelines.comparison_stage import _known_curves, _universal_curves
    from keras_uap.pipelines.evaluation import load_evaluation_set
    from keras_uap.pipelines.study import export_path

    cfg, results, metrics = study
    with np.load(os.path.join(results["data"].output_dir, "test.npz")) as f:
        x, y = f["x"], f["y"].astype(np.int32)
    for model in ("stdcnn", "roteqnet"):  # RotEqNet: a seeded evaluation subset, its own batch size
        mcfg = cfg.for_model(model)
        universal_dir = results[f"universal-{model}"].output_dir
        universal = _universal_curves(universal_dir, mcfg.universal.eval_subset, cfg.seed, mcfg.universal.eps_grid,
                                      mcfg.comparison.batch_size)
        assert universal is not None and universal["batch_size"] == mcfg.universal.batch_size
        known = _known_curves({"universal": universal}, list(METHODS), ["svd_gradient", "svd_deepfool"], 50, cfg.seed)
        assert sorted(known) == [METHODS.index(m) for m in ("svd_gradient", "svd_deepfool", "random")]
        random = np.load(os.path.join(results[f"comparison-{model}"].output_dir, "perturbations", "random-m50.npy"))
        np.testing.assert_array_equal(random.reshape(-1), random_unit_vectors(random.size, [cfg.seed])[0])
        evaluation = load_evaluation_set(os.path.join(export_path(cfg, model), "model.keras"), x, y,
                                         mcfg.universal.eval_subset, cfg.seed, mcfg.comparison.batch_size)
        vectors = [np.load(os.path.join(results[f"comparison-{model}"].output_dir, "perturbations",
                                        f"{method}-m50.npy")) for method in METHODS]
        fresh = fooling_curves(evaluation.predict_fn, evaluation.x, evaluation.y, vectors,
                               (0.0, *mcfg.universal.eps_grid), clean=evaluation.clean,
                               batch_size=mcfg.comparison.batch_size, saturation=mcfg.universal.saturation)
        for column, method in enumerate(METHODS):
            stored = metrics["comparison"][model][method]["50"]
            assert stored["eps"] == fresh.eps.tolist(), (model, method)
            assert stored["error_rate"] == fresh.error_rate[:, column].tolist(), (model, method)
            assert stored["fooling_rate"] == fresh.fooling_rate[:, column].tolist(), (model, method)


def test_the_comparison_reads_the_universal_curves_only_if_it_would_measure_the_same(tmp_path):
    """Its own evaluation set, grid and batch size (a setting of both stages, outside their keys),
    else it predicts every point itself; a universal.json that does not say is not read."""
    from keras_uap.pipelines.comparison_stage import _universal_curves

    measured = {"eval_subset": 200, "seed": 0, "eps_grid": [1.0, 2.0], "batch_size": 500, "curves": {}}
    (tmp_path / "universal.json").write_text(json.dumps(measured))
    assert _universal_curves(str(tmp_path), 200, 0, (1.0, 2.0), 500) == measured
    for other in [(None, 0, (1.0, 2.0), 500), (200, 1, (1.0, 2.0), 500), (200, 0, (1.0, 3.0), 500),
                  (200, 0, (1.0, 2.0), 1000)]:
        assert _universal_curves(str(tmp_path), *other) is None, other
    (tmp_path / "universal.json").write_text(json.dumps({k: v for k, v in measured.items() if k != "batch_size"}))
    assert _universal_curves(str(tmp_path), 200, 0, (1.0, 2.0), 500) is None
    assert _universal_curves(None, 200, 0, (1.0, 2.0), 500) is None


def test_transfer_diagonal_equals_the_models_own_curve(study):
    cfg, _, metrics = study
    transfer = metrics["transfer"]
    # The quick profile's comparison builds from the universal stage's m = 50 only, for every model.
    assert transfer["m"] == 50 and transfer["norm"] == cfg.transfer.norm
    for method in METHODS:
        for source in MODELS:
            assert set(transfer["table"][method][source]) == set(MODELS)
            own = metrics["comparison"][source][method]["50"]
            if cfg.transfer.norm in own["eps"]:
                at = own["eps"].index(cfg.transfer.norm)
                assert transfer["table"][method][source][source]["error_rate"] == pytest.approx(
                    own["error_rate"][at], abs=1e-9)
                assert transfer["table"][method][source][source]["fooling_rate"] == pytest.approx(
                    own["fooling_rate"][at], abs=1e-9)


def test_a_stage_reruns_alone_over_the_cached_stages_it_needs(study):
    cfg, _, _ = study
    partial = run_all(cfg, until="universal")
    assert all(r.cached for r in partial.values())
    assert {f"universal-{m}" for m in MODELS} <= set(partial)
    skipped = [k for k in partial if k.startswith(("train-", "analysis-", "comparison-"))]
    assert not skipped and "transfer" not in partial and "report" not in partial
    forced = run_all(dataclasses.replace(cfg, force=True), until="transfer")
    assert not forced["transfer"].cached
    assert all(r.cached for name, r in forced.items() if name != "transfer")
    assert "report" not in forced


def test_without_the_comparison_only_the_report_changes(study):
    # Last in this module: it rewrites the run's report and metrics.json.
    cfg, _, _ = study
    results = run_all(dataclasses.replace(cfg, comparison_enabled=False))
    assert not any(name.startswith(("comparison", "transfer")) for name in results)
    assert [name for name, r in results.items() if not r.cached] == ["report"]
    with open(os.path.join(cfg.run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert "comparison" not in metrics and "transfer" not in metrics and metrics["universal"]["gcnn"]


def test_a_second_run_with_the_same_seed_writes_the_same_metrics_but_for_timings(study):
    # After the other tests of this module (one rewrites metrics.json without the comparison):
    # reruns every stage, training included, in the same directories, so that the paths in
    # metrics.json are the same too, and compares with the first run's metrics.json.
    cfg, _, first = study

    def without_timings(metrics):
        return json.dumps({k: v for k, v in metrics.items() if k != "timings"}, indent=1, allow_nan=False)

    again = run_all(dataclasses.replace(cfg, force=True))
    assert not any(r.cached for r in again.values())
    with open(os.path.join(cfg.run_dir, "metrics.json"), encoding="utf-8") as f:
        second = json.load(f)
    assert "comparison" in second and without_timings(second) == without_timings(first)
    assert set(second["timings"]["stages"]) == set(first["timings"]["stages"])


def test_a_mirrored_run_writes_the_same_metrics_as_one_device(mnist_dir, tmp_path):
    """`strategy="mirrored"` over two logical CPU devices (a subprocess: they
    must be set before TensorFlow starts): a tiny StdCNN study reuses every
    single-device stage (the strategy is a setting), and recomputed under the
    strategy writes the same metrics.json but for timings, and bitwise the
    same directions and perturbations."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_all_mirrored_check.py")
    done = subprocess.run([sys.executable, script, mnist_dir, str(tmp_path)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    stages = {"data", "train-stdcnn", "analysis-stdcnn", "universal-stdcnn", "comparison-stdcnn", "transfer",
              "report", *(f"directions-stdcnn-{attack}" for attack in ATTACKS)}
    assert set(result["reused"]) == stages and set(result["recomputed"]) == stages
    assert {"universal", "spectrum", "theory", "comparison", "linf", "transfer"} <= set(result["metrics_keys"])
    assert result["metrics_differ"] == []
    written = {"directions/stdcnn-deepfool/directions.npz:directions", "comparison/stdcnn/perturbations/random-m40.npy",
               "universal/stdcnn/perturbations/stdcnn-deepfool-m50.npy"}
    assert written <= set(result["arrays"])
    assert result["arrays_differ"] == []
