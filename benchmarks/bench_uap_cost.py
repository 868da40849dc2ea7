"""Usage: python benchmarks/bench_uap_cost.py [--run-dir runs/default] [--models stdcnn,gcnn] [--output benchmarks/RESULTS.md]

SVD-UAP against the iterative UAP and the class-mean and random baselines, side by side.
"""

# The paper's claim is that the top singular vector of a few per-input attacks
# is a universal perturbation that is both effective and cheap. For each model
# (the run's exports) and sample size m (the same seeded sample for every
# method), this builds:
#   - SVD-UAP from DeepFool directions and from loss gradients,
#   - the iterative UAP of Moosavi-Dezfooli et al. 2017 (our DeepFool inside,
#     L2 ball of radius EPS, delta 0.2, at most MAX_PASSES passes),
#   - the best class-mean difference direction (Tramer et al. 2017),
#   - a random unit direction,
# scales each to L2 norm EPS (the iterative UAP is used as built: its norm is
# at most EPS), and measures the error and fooling rates on all test inputs.
# Cost = wall-clock time to build the perturbation (the model already loaded
# and traced) and the number of model gradient evaluations (per input and
# per logit difference, as DeepFool computes them).

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_uap.analysis import choose_sign, random_unit_vectors, top_singular_vector  # noqa: E402
from keras_uap.attacks import deepfool, loss_gradient  # noqa: E402
from keras_uap.baselines import best_class_mean_direction, iterative_uap  # noqa: E402
from keras_uap.pipelines.train_stage import load_exported_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import loadavg, machine_info, machine_lines, publish_section  # noqa: E402

SECTION_HEADING = "## Universal perturbations: SVD-UAP against the iterative UAP (cost and effect)"
EPS = 6.0
MAX_PASSES = 5
DELTA = 0.2
NB_CANDIDATE = 10


def _predict_all(predict, x, batch=2000):
    return np.concatenate([predict(tf.constant(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def _rates(predict, x, y, clean, v):
    pred = _predict_all(predict, np.clip(x + v.reshape(x.shape[1:]), 0.0, 1.0))
    return float(np.mean(pred != y)), float(np.mean(pred != clean))


def _warm_up(model_fn, x, y):
    """Traces every compiled function the methods use, so that the timings
    below measure the work and not TensorFlow's tracing."""
    deepfool(model_fn, x[:2], nb_candidate=NB_CANDIDATE, clip_min=0.0, clip_max=1.0)
    choose_sign(top_singular_vector(np.asarray(loss_gradient(model_fn, x[:2], y[:2])).reshape(2, -1)),
                model_fn, x[:2], y[:2])
    iterative_uap(model_fn, x[:2], eps=EPS, max_passes=1, nb_candidate=NB_CANDIDATE)
    best_class_mean_direction(model_fn, x, y, probe_norm=EPS)


def build_all(model_fn, x_sample, y_sample):
    """{method: (unit-or-bounded perturbation (d,), seconds, gradient evaluations)}."""
    built = {}
    t0 = time.perf_counter()
    x_adv, _, iterations = deepfool(model_fn, x_sample, nb_candidate=NB_CANDIDATE, overshoot=0.02, max_iter=50,
                                    clip_min=0.0, clip_max=1.0, return_details=True)
    directions = (np.asarray(x_adv) - x_sample).reshape(len(x_sample), -1)
    v = choose_sign(top_singular_vector(directions), model_fn, x_sample, y_sample)
    built["SVD-UAP (DeepFool)"] = (v, time.perf_counter() - t0,
                                   int(np.sum(iterations)) * (NB_CANDIDATE - 1))
    t0 = time.perf_counter()
    gradients = np.asarray(loss_gradient(model_fn, x_sample, y_sample)).reshape(len(x_sample), -1)
    v = choose_sign(top_singular_vector(gradients), model_fn, x_sample, y_sample)
    built["SVD-UAP (gradient)"] = (v, time.perf_counter() - t0, len(x_sample))
    result = iterative_uap(model_fn, x_sample, eps=EPS, norm="l2", delta=DELTA, max_passes=MAX_PASSES, seed=0,
                           nb_candidate=NB_CANDIDATE)
    built["iterative UAP"] = (result.perturbation.reshape(-1), result.seconds, result.gradient_evaluations)
    t0 = time.perf_counter()
    v = best_class_mean_direction(model_fn, x_sample, y_sample, probe_norm=EPS)
    built["class-mean difference"] = (np.asarray(v).reshape(-1), time.perf_counter() - t0, 0)
    built["random"] = (random_unit_vectors(directions.shape[1], [0])[0], 0.0, 0)
    return built


def bench_model(run_dir, export_dir, model, sample_sizes):
    network = load_exported_model(os.path.join(export_dir, f"mnist-{model}"))
    model_fn = tf.function(lambda t: network(t, training=False), reduce_retracing=True)
    predict = tf.function(lambda t: tf.argmax(network(t, training=False), axis=1, output_type=tf.int32))
    with np.load(os.path.join(run_dir, "data", "test.npz"), allow_pickle=False) as f:
        x, y = f["x"], f["y"].astype(np.int32)
    clean = _predict_all(predict, x)
    _warm_up(model_fn, x[:200], y[:200])
    rows = []
    for m in sample_sizes:
        pick = np.sort(np.random.default_rng([0, m]).choice(len(x), m, replace=False))
        for method, (v, seconds, gradients) in build_all(model_fn, x[pick], y[pick]).items():
            norm = float(np.linalg.norm(v))
            scaled = v * (EPS / norm) if method != "iterative UAP" else v
            error, fooling = _rates(predict, x, y, clean, scaled)
            rows.append({"model": model, "m": m, "method": method, "seconds": seconds, "gradients": gradients,
                         "norm": float(np.linalg.norm(scaled)), "error_rate": error, "fooling_rate": fooling})
            print(f"{model:8s} m={m:4d} {method:24s} {seconds:7.1f} s {gradients:9d} grads  "
                  f"norm {rows[-1]['norm']:.2f}  error {error:.3f}  fooling {fooling:.3f}", flush=True)
    return rows, float(np.mean(clean != y)), len(x)


def render(info, rows, clean, settings):
    lines = [SECTION_HEADING, "", f"Generated by `{settings['command']}` on {info['date']}.", "",
             *machine_lines(info, settings["load_start"], settings["load_end"]),
             f"- Script run time: {settings['elapsed']:.0f} s.", "",
             f"Every method builds its perturbation from the same seeded sample of m rotated test inputs and is "
             f"evaluated on all {settings['n_test']:,} rotated test inputs at L2 norm {EPS:g} (the iterative UAP "
             f"as built, norm at most {EPS:g}). Iterative UAP: Moosavi-Dezfooli et al. 2017 with this project's "
             f"DeepFool (10 candidates, overshoot 0.02), delta {DELTA}, at most {MAX_PASSES} passes. Gradient "
             f"evaluations count one per input and logit difference (DeepFool: iterations x 9). Clean error "
             f"rates: " + ", ".join(f"{k} {v:.3f}" for k, v in clean.items()) + ".", "",
             "| model | m | method | build time (s) | gradient evaluations | L2 norm | error rate | fooling rate |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['m']} | {r['method']} | {r['seconds']:.1f} | {r['gradients']:,} | "
                     f"{r['norm']:.2f} | {r['error_rate']:.3f} | {r['fooling_rate']:.3f} |")
    lines += ["", "Per model and m, cost and error rate of SVD-UAP (DeepFool) relative to the iterative UAP:", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        for m in dict.fromkeys(r["m"] for r in rows if r["model"] == model):
            by = {r["method"]: r for r in rows if r["model"] == model and r["m"] == m}
            svd, it = by["SVD-UAP (DeepFool)"], by["iterative UAP"]
            lines.append(f"- {model}, m = {m}: time {svd['seconds'] / max(it['seconds'], 1e-9):.2f}x, gradient "
                         f"evaluations {svd['gradients'] / max(it['gradients'], 1):.2f}x, error rate "
                         f"{svd['error_rate']:.3f} vs {it['error_rate']:.3f}.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/default")
    parser.add_argument("--export-dir", default="saved_models")
    parser.add_argument("--models", default="stdcnn,gcnn")
    parser.add_argument("--sample-sizes", default="100,500")
    parser.add_argument("--output", default=None, help="RESULTS.md to update (default: print only)")
    args = parser.parse_args()
    started, load_start = time.perf_counter(), loadavg()
    rows, clean, n_test = [], {}, 0
    for model in args.models.split(","):
        model_rows, clean[model], n_test = bench_model(args.run_dir, args.export_dir, model,
                                                       [int(m) for m in args.sample_sizes.split(",")])
        rows += model_rows
    settings = {"command": "python benchmarks/bench_uap_cost.py " + " ".join(sys.argv[1:]),
                "load_start": load_start, "load_end": loadavg(), "elapsed": time.perf_counter() - started,
                "n_test": n_test}
    publish_section(args.output, render(machine_info(), rows, clean, settings), SECTION_HEADING)


if __name__ == "__main__":
    main()
