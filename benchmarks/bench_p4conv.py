"""Usage: python benchmarks/bench_p4conv.py [--output benchmarks/RESULTS.md] [--data-dir MNIST_IDX_DIR] [--quick]"""

# P4ConvP4 vs. an equally sized Conv2D (forward + backward) at the GCNN's layer
# shapes, plus GCNN / StdCNN training and inference throughput on real MNIST.
# The machine is shared, so every comparison is measured interleaved (one call
# of each contender per round, in random order) and summarised by medians; a
# P4/Conv2D ratio is the median of the per-round (paired) ratios. Wall-clock and
# process CPU time are both recorded: the latter is far less disturbed by load.

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
from keras_uap.data.idx import read_idx_dataset  # noqa: E402
from keras_uap.data.sources import resolve_data_dir  # noqa: E402
from keras_uap.layers import P4ConvP4, P4ConvZ2, check_equivariance  # noqa: E402
from keras_uap.layers.p4_ops import expand_group_kernel  # noqa: E402
from keras_uap.models.table2 import build_gcnn, build_stdcnn  # noqa: E402

# Machine description and RESULTS.md section replacement, shared with the other benchmarks.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import loadavg, machine_info, publish_section  # noqa: E402

SECTION_HEADING = "## P4 layers and training throughput"
RATIO_BAR = 1.05
BATCH = 64
INFERENCE_BATCH = 1000

# (name, input (H, W, C), filters) of the GCNN's P4ConvP4 layers, all 3x3 valid.
P4_SHAPES = [
    ("P4ConvP4 #1", (26, 26, 40), 10),
    ("P4ConvP4 #2", (12, 12, 40), 20),
    ("P4ConvP4 #3", (10, 10, 80), 20),
]
# The lifting layer, reported for information only (not part of the bar).
Z2_SHAPE = ("P4ConvZ2 (info)", (28, 28, 1), 10)


# --------------------------------------------------------------------------- helpers


def interleaved(fns, rounds, iters, seed=0):
    """Times each zero-argument callable in `fns` (dict name -> fn) for `rounds`
    rounds of `iters` calls each, in a random order every round (so that no
    periodic load from other jobs lines up with one contender).

    Each fn must block until its work is done (returns a value whose `.numpy()`
    forces completion, or None). Returns (wall, cpu): dicts name -> array of
    seconds per call, one entry per round; `cpu` is this process's CPU time
    (all threads), which other jobs' load disturbs far less than wall time.
    """
    names = list(fns)
    order_rng = np.random.default_rng(seed)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for _ in range(rounds):
        for n in order_rng.permutation(names):
            fn = fns[n]
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(iters):
                out = fn()
            if hasattr(out, "numpy"):
                out.numpy()
            wall[n].append((time.perf_counter() - t0) / iters)
            cpu[n].append((time.process_time() - c0) / iters)
    return ({n: np.asarray(v) for n, v in wall.items()}, {n: np.asarray(v) for n, v in cpu.items()})


def bootstrap_median_ci(values, rng, resamples=2000, level=0.95):
    """Percentile bootstrap confidence interval of the median of `values`."""
    values = np.asarray(values)
    medians = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def rounds_for(fns, budget_seconds, lo, hi):
    """Warms up each fn and returns how many rounds of one call each fit in budget_seconds."""
    total = 0.0
    for fn in fns.values():
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        out = fn()
        if hasattr(out, "numpy"):
            out.numpy()
        total += time.perf_counter() - t0
    return int(min(hi, max(lo, round(budget_seconds / max(total, 1e-6)))))


def fwd_bwd_step(layer, x, upstream):
    """tf.function (no XLA) computing `sum(layer(x) * upstream)` and its
    gradients with respect to x and the weights, as one training step does."""
    layer(x)  # build
    weights = layer.trainable_variables

    @tf.function(jit_compile=False)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * upstream)
        # Return the loss and every gradient: tf.function prunes whatever does not reach
        # an output, and a linear layer's gradients do not need its forward output, so
        # without the loss a Conv2D's forward convolution would not run at all.
        return [loss] + tape.gradient(loss, [x] + weights)

    return step


def equivariance_error(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 11, 11, 4 * 3)).astype("float32")
    return max(check_equivariance(P4ConvP4(5, 3), x, "p4", "p4").values())


# --------------------------------------------------------------------------- layer benchmark


def bench_layers(budget_seconds, min_rounds, max_rounds, seed=0):
    rng = np.random.default_rng(seed)
    boot_rng = np.random.default_rng(seed + 1)
    rows = []
    for name, (h, w, c), filters in P4_SHAPES + [Z2_SHAPE]:
        x = tf.constant(rng.standard_normal((BATCH, h, w, c)).astype("float32"))
        upstream = tf.constant(rng.standard_normal((BATCH, h - 2, w - 2, 4 * filters)).astype("float32"))
        p4 = (P4ConvP4 if name.startswith("P4ConvP4") else P4ConvZ2)(filters, 3)
        conv = keras.layers.Conv2D(4 * filters, 3)
        p4_step = fwd_bwd_step(p4, x, upstream)
        conv_step = fwd_bwd_step(conv, x, upstream)
        expanded = tuple(expand_group_kernel(p4.kernel, p4._group, p4._input_is_group).shape)
        assert expanded == tuple(conv.kernel.shape), (expanded, conv.kernel.shape)
        fns = {"p4": lambda: p4_step(x)[0], "conv": lambda: conv_step(x)[0]}
        # One call per contender per round: the two calls of a pair run milliseconds
        # apart, so they see nearly the same load from the machine's other jobs.
        in_bar = name.startswith("P4ConvP4")
        budget = budget_seconds if in_bar else budget_seconds / 4  # the info row gets less time
        rounds, iters = rounds_for(fns, budget, min_rounds, max_rounds), 1
        t, cpu = interleaved(fns, rounds, iters)
        ratios = t["p4"] / t["conv"]
        cpu_ratios = cpu["p4"] / cpu["conv"]
        row = {
            "name": name,
            "input": f"{h}x{w}x{c}",
            "filters": filters,
            "kernel": "x".join(str(d) for d in expanded),
            "p4_ms": 1e3 * float(np.median(t["p4"])),
            "conv_ms": 1e3 * float(np.median(t["conv"])),
            "ratio": float(np.median(ratios)),
            "ratio_ci": bootstrap_median_ci(ratios, boot_rng),
            "cpu_ratio": float(np.median(cpu_ratios)),
            "cpu_ratio_ci": bootstrap_median_ci(cpu_ratios, boot_rng),
            "t_p4": t["p4"],
            "t_conv": t["conv"],
            "rounds": rounds,
            "iters": iters,
            "in_bar": in_bar,
        }
        rows.append(row)
        print(
            f"{name:16s} {row['input']:>9s} -> {filters:2d}: P4 {row['p4_ms']:7.2f} ms  "
            f"Conv2D {row['conv_ms']:7.2f} ms  ratio {row['ratio']:.3f} "
            f"[95% CI {row['ratio_ci'][0]:.3f}-{row['ratio_ci'][1]:.3f}], "
            f"CPU-time ratio {row['cpu_ratio']:.3f} [{row['cpu_ratio_ci'][0]:.3f}-{row['cpu_ratio_ci'][1]:.3f}] "
            f"({rounds} rounds)",
            flush=True,
        )
    bar_rows = [r for r in rows if r["in_bar"]]
    # The three P4ConvP4 layers together (one GCNN step's worth). The shapes have
    # different numbers of rounds, so the total ratio is the per-shape paired ratios
    # weighted by the Conv2D times, not a ratio of (unpaired) summed times.
    conv_sum = sum(r["conv_ms"] for r in bar_rows)
    total = {
        "p4_ms": sum(r["p4_ms"] for r in bar_rows),
        "conv_ms": conv_sum,
        "ratio": sum(r["ratio"] * r["conv_ms"] for r in bar_rows) / conv_sum,
        "cpu_ratio": sum(r["cpu_ratio"] * r["conv_ms"] for r in bar_rows) / conv_sum,
    }
    print(f"{'P4ConvP4 total':16s}: P4 {total['p4_ms']:7.2f} ms  Conv2D {total['conv_ms']:7.2f} ms  "
          f"ratio {total['ratio']:.3f}, CPU-time ratio {total['cpu_ratio']:.3f}", flush=True)
    return rows, total


# --------------------------------------------------------------------------- model throughput


def compile_like_training(model):
    # Same settings as keras_uap.training.compile_for_training (SGD 0.01 / momentum 0.5,
    # sparse CE on logits, accuracy metric); jit_compile stated explicitly as off.
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


class _StepTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.stamps = []
        self.cpu_stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())


def bench_models(data_dir, train_rounds, steps_per_round, warmup_steps, infer_rounds, infer_iters):
    data = read_idx_dataset(data_dir)
    x_train = data["train_images"][..., None].astype("float32") / 255.0
    y_train = data["train_labels"].astype("int64")
    x_infer = data["test_images"][:INFERENCE_BATCH, ..., None].astype("float32") / 255.0

    dataset = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .batch(BATCH, drop_remainder=True)
        .repeat()
        .prefetch(2)
    )

    models = {"GCNN": build_gcnn(), "StdCNN": build_stdcnn()}
    for model in models.values():
        compile_like_training(model)
        model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps, verbose=0, shuffle=False)

    timers = {name: _StepTimer() for name in models}

    def train_chunk(name):
        def run():
            models[name].fit(dataset, epochs=1, steps_per_epoch=steps_per_round, verbose=0,
                             shuffle=False, callbacks=[timers[name]])
            stamps, cpu_stamps = timers[name].stamps, timers[name].cpu_stamps
            # Between the first and last step ends: excludes fit()'s per-call set-up.
            return ((stamps[-1] - stamps[0]) / (len(stamps) - 1),
                    (cpu_stamps[-1] - cpu_stamps[0]) / (len(cpu_stamps) - 1))
        return run

    train = {n: [] for n in models}
    train_cpu = {n: [] for n in models}
    for r in range(train_rounds):
        order = list(models) if r % 2 == 0 else list(models)[::-1]
        for name in order:
            wall, cpu = train_chunk(name)()
            train[name].append(wall)
            train_cpu[name].append(cpu)

    for model in models.values():  # builds and traces the predict function
        model.predict_on_batch(x_infer)
    infer, infer_cpu = interleaved({n: (lambda m=m: m.predict_on_batch(x_infer)) for n, m in models.items()},
                        infer_rounds, infer_iters)

    results = {}
    for name, model in models.items():
        step = float(np.median(train[name]))
        results[name] = {
            "params": model.count_params(),
            "train_ms_per_step": 1e3 * step,
            "train_cpu_ms_per_step": 1e3 * float(np.median(train_cpu[name])),
            "infer_cpu_ms": 1e3 * float(np.median(infer_cpu[name])),
            "train_img_s": BATCH / step,
            "train_img_s_q": (BATCH / float(np.percentile(train[name], 75)),
                              BATCH / float(np.percentile(train[name], 25))),
            "infer_ms": 1e3 * float(np.median(infer[name])),
            "infer_img_s": INFERENCE_BATCH / float(np.median(infer[name])),
            "jit_compile": model.jit_compile,
        }
        print(f"{name:7s}: train {results[name]['train_img_s']:8.0f} img/s "
              f"({results[name]['train_ms_per_step']:.1f} ms/step), inference "
              f"{results[name]['infer_img_s']:8.0f} img/s", flush=True)
    return results


# --------------------------------------------------------------------------- report


def render_section(info, rows, total, models, equiv_err, settings):
    bar_rows = [r for r in rows if r["in_bar"]]
    worst = max(r["ratio"] for r in bar_rows)
    worst_ci = max(r["ratio_ci"][1] for r in bar_rows)
    worst_cpu = max(r["cpu_ratio"] for r in bar_rows)
    worst_cpu_ci = max(r["cpu_ratio_ci"][1] for r in bar_rows)
    holds = worst <= RATIO_BAR
    if holds:
        verdict = "holds"
    elif worst_cpu <= RATIO_BAR:
        over = ", ".join(r["name"] for r in bar_rows if r["ratio"] > RATIO_BAR)
        verdict = (f"does not hold on the wall clock in this run ({over}), but does on CPU time, so the "
                   "excess is most likely the other jobs' load; re-run to confirm")
    else:
        verdict = "does NOT hold"
    lines = [SECTION_HEADING, ""]
    lines.append(f"Generated by `{settings['command']}` on {info['date']}.")
    lines.append("")
    lines.append(
        f"- Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs "
        f"({info['usable_cpus']} usable), {info['ram']} RAM; "
        f"load average 1/5/15 min: {settings['load_start']} at start, {settings['load_end']} at end."
    )
    lines.append(
        f"- Software: Python {info['python']}, TensorFlow {info['tf']}, Keras {info['keras']} "
        f"(backend {info['backend']}), NumPy {info['numpy']}; default TF thread pools; "
        f"op determinism {'on' if settings['determinism'] else 'off'} (as in the training pipeline)."
    )
    lines.append(f"- Total run time of the script: {settings['elapsed']:.0f} s.")
    lines.append("")
    lines.append("### P4ConvP4 vs Conv2D, forward + backward, batch 64")
    lines.append("")
    lines.append(
        "One `tf.function` (jit_compile off) per layer computes the layer, the loss `sum(y * dy)` "
        "(random `dy`) and its gradients with respect to the input and all weights; it returns the "
        "loss too, so that the forward convolution is not pruned away (as it would be on "
        "both sides, since a linear layer's gradients do not need its output). The Conv2D has "
        "the P4 layer's expanded shapes (4*C_in -> 4*filters channels, 3x3 valid, bias), hence "
        "the same FLOPs; P4ConvP4 additionally builds its expanded filter bank every call. The two "
        "are timed interleaved, one call each per round in random order "
        f"({', '.join(str(r['rounds']) for r in rows)} rounds, ~{settings['layer_budget_s']:.0f} s per "
        "P4ConvP4 shape). Times are wall-clock medians over rounds. \"Wall ratio\" is the median "
        "of the per-round (paired) wall-clock ratios P4ConvP4/Conv2D, the bar's measure; \"CPU-time "
        "ratio\" is the same for this process's CPU time (all threads), which the other jobs on the "
        "machine disturb much less, a cross-check. Brackets: 95% bootstrap confidence interval of "
        "the median."
    )
    lines.append("")
    lines.append("| Layer | Input (HxWxC) | Filters | Kernel (expanded) | P4 layer [ms] | Conv2D [ms] "
                 "| Wall ratio P4/Conv2D | CPU-time ratio P4/Conv2D |")
    lines.append("|---|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['input']} | {r['filters']} | {r['kernel']} | {r['p4_ms']:.2f} | "
            f"{r['conv_ms']:.2f} | {r['ratio']:.3f} [{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}] | "
            f"{r['cpu_ratio']:.3f} [{r['cpu_ratio_ci'][0]:.3f}-{r['cpu_ratio_ci'][1]:.3f}] |"
        )
    lines.append(
        f"| P4ConvP4 #1-#3 together (times summed, ratios weighted by Conv2D time) | | | | "
        f"{total['p4_ms']:.2f} | {total['conv_ms']:.2f} | {total['ratio']:.3f} | {total['cpu_ratio']:.3f} |"
    )
    lines.append("")
    lines.append(
        f"Bar (wall ratio <= {RATIO_BAR:.2f} for each P4ConvP4 shape): "
        f"**{verdict}**: worst median wall ratio {worst:.3f} (highest upper "
        f"end of its 95% intervals {worst_ci:.3f}); worst median CPU-time ratio {worst_cpu:.3f} "
        f"(highest upper end {worst_cpu_ci:.3f}). The intervals describe one run only: on a loaded "
        "machine the wall ratio of the 26x26 layer moves between runs by up to +-0.1, the CPU-time "
        "ratios by about 0.01. The P4ConvZ2 row is for information only."
    )
    lines.append("")
    lines.append(
        f"Equivariance check of P4ConvP4 (input rotated by `np.rot90` on axes (1, 2) and rotation index "
        f"rolled by +k, k = 1, 2, 3, vs. the same transform of the output): max abs difference "
        f"{equiv_err:.1e} ({'OK' if equiv_err <= 1e-5 else 'FAILED'}, tolerance 1e-5)."
    )
    lines.append("")
    if models is not None:
        lines.append("### Training and inference throughput, real MNIST")
        lines.append("")
        lines.append(
            "Training: `model.fit` on the MNIST training images (unrotated, scaled to [0, 1], "
            "`tf.data` batch 64, prefetch 2), compiled as in `keras_uap.training` (SGD lr 0.01, "
            "momentum 0.5, SparseCategoricalCrossentropy(from_logits=True), accuracy metric, "
            f"jit_compile={models['GCNN']['jit_compile']}). After {settings['warmup_steps']} warm-up "
            f"steps, {settings['train_rounds']} interleaved rounds of {settings['steps_per_round']} steps "
            "per model; a round's time per step is measured between its first and last step (excludes "
            "fit() set-up); the table gives the median over rounds (images/s: interquartile range in "
            f"brackets). Inference: `predict_on_batch` on {INFERENCE_BATCH} test images, "
            f"{settings['infer_rounds']} interleaved rounds of {settings['infer_iters']} calls, median. "
            "CPU columns: this process's CPU time (all threads) for the same step/call, less "
            "disturbed by the other jobs' load than wall-clock time."
        )
        lines.append("")
        lines.append("| Model | Parameters | Train [ms/step] | Train CPU [ms/step] | Train [images/s] "
                     "| Inference batch 1000 [ms] | Inference CPU [ms] | Inference [images/s] |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, m in models.items():
            q_lo, q_hi = m["train_img_s_q"]
            lines.append(
                f"| {name} | {m['params']:,} | {m['train_ms_per_step']:.1f} | {m['train_cpu_ms_per_step']:.1f} | "
                f"{m['train_img_s']:,.0f} [{q_lo:,.0f}-{q_hi:,.0f}] | {m['infer_ms']:.1f} | "
                f"{m['infer_cpu_ms']:.1f} | {m['infer_img_s']:,.0f} |"
            )
        g, s = models["GCNN"], models["StdCNN"]
        lines.append("")
        lines.append(
            f"GCNN/StdCNN time ratio: training {g['train_ms_per_step'] / s['train_ms_per_step']:.1f}x, "
            f"inference {g['infer_ms'] / s['infer_ms']:.1f}x (the GCNN's hidden convolutions have 4x "
            "the StdCNN's channels on both sides, i.e. 16x the FLOPs; its first layer 4x)."
        )
        lines.append("")
    lines.append(
        "Timings on this shared 2-core machine vary by tens of percent from run to run with the "
        "other jobs' load; the paired ratios, the CPU-time ones above all, are much more stable "
        "than the absolute times."
    )
    lines.append("")
    return "\n".join(lines), verdict


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", help="Markdown file whose section to write/update (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--data-dir", help="MNIST IDX directory (default: $KERAS_UAP_DATA_DIR)")
    parser.add_argument("--skip-models", action="store_true", help="only the layer benchmark")
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    parser.add_argument("--no-determinism", action="store_true",
                        help="do not enable TF op determinism (the training pipeline enables it)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    settings = {
        "command": "python benchmarks/bench_p4conv.py" + (f" --output {args.output}" if args.output else ""),
        "load_start": loadavg(),
        "determinism": not args.no_determinism,
        "layer_budget_s": 1.0 if args.quick else 15.0,
        "layer_min_rounds": 10 if args.quick else 60,
        "layer_max_rounds": 50 if args.quick else 800,
        "warmup_steps": 10 if args.quick else 30,
        "train_rounds": 2 if args.quick else 6,
        "steps_per_round": 20 if args.quick else 50,
        "infer_rounds": 2 if args.quick else 6,
        "infer_iters": 1 if args.quick else 2,
    }
    data_dir = None
    if not args.skip_models:
        data_dir = resolve_data_dir("mnist", args.data_dir)
        if not data_dir:
            parser.error("no MNIST IDX directory: pass --data-dir or set KERAS_UAP_DATA_DIR")

    keras.utils.set_random_seed(0)
    if settings["determinism"]:
        tf.config.experimental.enable_op_determinism()
    info = machine_info()
    print(f"{info['date']} | {info['cpu']} | {info['logical_cpus']} CPUs | {info['ram']} | "
          f"TF {info['tf']} | Keras {info['keras']} | load {settings['load_start']}", flush=True)

    equiv_err = equivariance_error()
    print(f"equivariance max abs error: {equiv_err:.2e}", flush=True)
    rows, total = bench_layers(settings["layer_budget_s"], settings["layer_min_rounds"],
                               settings["layer_max_rounds"])
    models = None
    if not args.skip_models:
        models = bench_models(data_dir, settings["train_rounds"], settings["steps_per_round"],
                              settings["warmup_steps"], settings["infer_rounds"], settings["infer_iters"])

    settings["load_end"] = loadavg()
    settings["elapsed"] = time.perf_counter() - t_start
    section, verdict = render_section(info, rows, total, models, equiv_err, settings)
    print(f"bar ratio <= {RATIO_BAR}: {verdict}; "
          f"{settings['elapsed']:.0f} s", flush=True)
    publish_section(args.output, section, SECTION_HEADING)
    return 0 if equiv_err <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
