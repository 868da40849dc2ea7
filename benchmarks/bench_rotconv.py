"""Usage: python benchmarks/bench_rotconv.py [--output benchmarks/RESULTS.md] [--budget SECONDS]"""

# RotConv (filter-bank rotation + one convolution + orientation pooling) against
# a plain Conv2D with the same expanded filter bank (filters * n_angles output
# channels, 9x9): the physical bound, since the convolution itself is the
# same. Forward and forward + backward, batch 64, at the three shapes of
# RotEqNet's MNIST network; plus RotEqNet's training and inference throughput
# beside the GCNN's. Timing method as in bench_p4conv.py: interleaved rounds,
# medians of paired ratios, wall-clock and process CPU time.

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import keras  # noqa: E402
from keras_uap.layers import RotConv  # noqa: E402
from keras_uap.models import build_gcnn, build_roteqnet  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import loadavg, machine_info, machine_lines, publish_section  # noqa: E402
from bench_p4conv import bootstrap_median_ci, fwd_bwd_step, interleaved, rounds_for  # noqa: E402

SECTION_HEADING = "## RotConv and RotEqNet throughput"
RATIO_BAR = 1.25
BATCH = 64
SWEEP_BATCHES = (128, 250, 500)
N_ANGLES = 17

# (name, input (H, W, C), filters, mode, padding) of RotEqNet's three RotConv layers, 9x9.
SHAPES = [
    ("RotConv #1 (scalar)", (28, 28, 1), 6, "scalar", "same"),
    ("RotConv #2 (vector)", (14, 14, 12), 16, "vector", "same"),
    ("RotConv #3 (vector)", (9, 9, 32), 32, "vector", "valid"),
]


def corner(t):
    """One element of `t`: what a timed function returns, so that the timing
    is not charged for copying its whole result into a NumPy array (`.numpy()`
    copies: 0.4 ms for last layer's 5.6 MB bank, measured). Nothing prunes an
    op whose output is sliced, so the whole tensor is still computed."""
    return t[(slice(0, 1),) * len(t.shape)]


def forward_step(layer, x):
    layer(x)

    @tf.function(jit_compile=False)
    def step(x):
        # One element, not the whole output: its copy into NumPy would be timed too, and it is
        # 8.5x larger for the Conv2D (17 orientations) than for RotConv (2 components).
        return corner(layer(x))

    return step


def compare_layer(shape, batch, budget, rng, boot):
    """RotConv against Conv2D with the same bank at one layer shape and batch size."""
    name, (h, w, c), filters, mode, padding = shape
    x = tf.constant(rng.random((batch, h, w, c)).astype("float32"))
    rot = RotConv(filters, 9, n_angles=N_ANGLES, mode=mode, padding=padding)
    conv = keras.layers.Conv2D(filters * N_ANGLES, 9, padding=padding)
    out_hw = rot.compute_output_shape((batch, h, w, c))[1:3]
    up_rot = tf.constant(rng.standard_normal((batch, *out_hw, 2 * filters)).astype("float32"))
    up_conv = tf.constant(rng.standard_normal((batch, *out_hw, filters * N_ANGLES)).astype("float32"))
    steps = {"rot_fwd": forward_step(rot, x), "conv_fwd": forward_step(conv, x),
             "rot_train": fwd_bwd_step(rot, x, up_rot), "conv_train": fwd_bwd_step(conv, x, up_conv)}
    assert tuple(rot.rotated_filter_bank().shape) == tuple(conv.kernel.shape)
    row = {"name": name, "batch": batch, "input": f"{h}x{w}x{c}",
           "bank": "x".join(str(d) for d in conv.kernel.shape)}
    for kind in ("fwd", "train"):
        fns = {"rot": lambda s=steps[f"rot_{kind}"]: s(x), "conv": lambda s=steps[f"conv_{kind}"]: s(x)}
        fns = {k: (lambda f=f: tf.nest.flatten(f())[0]) for k, f in fns.items()}
        rounds = rounds_for(fns, budget, 10, 400)
        wall, cpu = interleaved(fns, rounds, 1)
        ratios, cpu_ratios = wall["rot"] / wall["conv"], cpu["rot"] / cpu["conv"]
        row[kind] = {"rot_ms": 1e3 * float(np.median(wall["rot"])),
                     "conv_ms": 1e3 * float(np.median(wall["conv"])),
                     "ratio": float(np.median(ratios)), "ratio_ci": bootstrap_median_ci(ratios, boot),
                     "cpu_ratio": float(np.median(cpu_ratios)), "rounds": rounds}
        r = row[kind]
        print(f"{name:20s} batch {batch:3d} {kind:5s}: RotConv {r['rot_ms']:7.2f} ms  Conv2D {r['conv_ms']:7.2f} ms  "
              f"ratio {r['ratio']:.3f} [{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}] "
              f"CPU {r['cpu_ratio']:.3f} ({rounds} rounds)", flush=True)
    bank_fn = tf.function(lambda: corner(bank_as_built(rot, x)), jit_compile=False)
    bank_wall, _ = interleaved({"bank": lambda: bank_fn()}, 50, 1)
    row["bank_ms"] = 1e3 * float(np.median(bank_wall["bank"]))
    print(f"{name:20s} bank : {row['bank_ms']:.2f} ms (forward, of the RotConv forward above)", flush=True)
    return row


def bank_as_built(rot, x):
    """The filter bank as RotConv's call builds it for `x` (the layer's
    internals, on purpose): over the disk pixels, orientation by orientation
    when the kernel covers the whole input; k x k when it convolves; else as
    the rows of one matrix."""
    from keras_uap.layers.rot_conv_tensorflow import _layout

    layout = _layout(rot, x)
    if layout == "maf":
        return rot.rotated_filter_bank()
    bank = rot.orientation_major_bank()
    if layout == "amf":
        return bank
    return tf.reshape(tf.transpose(bank, (0, 2, 1)), (rot.n_angles * rot.filters, -1))


def product_steps(rot, x, upstream, layout):
    """Forward and forward + backward `tf.function`s (no XLA) of RotConv's
    TensorFlow path with the product `layout` ("afm": window columns, "maf":
    convolution), as `forward_step` and `fwd_bwd_step` time the layer."""
    from keras_uap.layers.rot_conv_tensorflow import pooled_field

    weights = rot.trainable_variables

    @tf.function(jit_compile=False)
    def forward(x):
        return corner(pooled_field(rot, x, layout))

    @tf.function(jit_compile=False)
    def train(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(pooled_field(rot, x, layout) * upstream)
        return [loss] + tape.gradient(loss, [x] + weights)

    return {"fwd": forward, "train": train}


def compare_products(shape, budget, rng, boot):
    """The layer `shape` by its convolution against its window columns, side by side: why
    RotConv convolves where the input has 8 or more channels (rot_conv_tensorflow.py)."""
    from keras_uap.layers.rot_conv_tensorflow import pooled_field

    name, (h, w, c), filters, mode, padding = shape
    x = tf.constant(rng.random((BATCH, h, w, c)).astype("float32"))
    rot = RotConv(filters, 9, n_angles=N_ANGLES, mode=mode, padding=padding)
    rot(x)
    upstream = tf.constant(rng.standard_normal((BATCH, h, w, 2 * filters)).astype("float32"))
    steps = {layout: product_steps(rot, x, upstream, layout) for layout in ("maf", "afm")}
    difference = float(tf.reduce_max(tf.abs(pooled_field(rot, x, "maf") - pooled_field(rot, x, "afm"))))
    row = {"name": name, "max_abs_difference": difference}
    for kind in ("fwd", "train"):
        fns = {layout: (lambda f=steps[layout][kind]: tf.nest.flatten(f(x))[0]) for layout in steps}
        rounds = rounds_for(fns, budget, 10, 400)
        wall, _ = interleaved(fns, rounds, 1)
        ratios = wall["maf"] / wall["afm"]
        row[kind] = {"conv_ms": 1e3 * float(np.median(wall["maf"])), "columns_ms": 1e3 * float(np.median(wall["afm"])),
                     "ratio": float(np.median(ratios)), "ratio_ci": bootstrap_median_ci(ratios, boot)}
        r = row[kind]
        print(f"{name:20s} {kind:5s}: convolution {r['conv_ms']:7.2f} ms  columns {r['columns_ms']:7.2f} ms  "
              f"ratio {r['ratio']:.3f} ({rounds} rounds)", flush=True)
    return row


def bench_layers(budget, seed=0):
    rng = np.random.default_rng(seed)
    boot = np.random.default_rng(seed + 1)
    rows = [compare_layer(shape, BATCH, budget, rng, boot) for shape in SHAPES]
    # The bank costs the same at any batch size, the convolution grows with it: the last
    # layer (1x1 output) again at the batch sizes of the attack stages.
    sweep = [compare_layer(SHAPES[-1], batch, budget / 2, rng, boot) for batch in SWEEP_BATCHES]
    products = compare_products(SHAPES[1], budget / 2, rng, boot)
    return rows, sweep, products


def bench_models(rounds=5, steps=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, BATCH)
    x_infer = tf.constant(rng.random((1000, 28, 28, 1)).astype("float32"))
    results = {}
    for name, build in (("GCNN", build_gcnn), ("RotEqNet", build_roteqnet)):
        model = build()
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        predict = tf.function(lambda t, m=model: m(t, training=False))
        for _ in range(3):
            model.train_on_batch(x, y)
        predict(x_infer)
        train, infer = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            train.append((time.perf_counter() - t0) / steps)
            t0 = time.perf_counter()
            predict(x_infer).numpy()
            infer.append(time.perf_counter() - t0)
        results[name] = {"params": model.count_params(), "train_img_s": BATCH / float(np.median(train)),
                         "infer_img_s": 1000 / float(np.median(infer))}
        print(f"{name:8s}: train {results[name]['train_img_s']:6.0f} img/s, "
              f"inference {results[name]['infer_img_s']:6.0f} img/s", flush=True)
    return results


def where_the_time_goes(rows):
    """What stands between RotConv and the bound, from this run's numbers."""
    first, second, last = rows
    return [
        "Where the time goes. At the first and last layers RotConv does not convolve. Its bank is zero "
        "outside the disk "
        "inscribed in the 9x9 window, so it gathers the 49 disk pixels of every input window into columns "
        "(one XLA kernel, `disk_windows.py`) and multiplies the bank's 17 x F rows by them: 49/81 of the "
        "Conv2D's multiply-adds, paid for by writing the columns (49 copies of the input at stride 1). The "
        "product leaves the responses orientation first, a contiguous row per orientation and filter, and "
        "the pooling kernel reduces over those rows, vectorised across pixels. First layer: RotConv's "
        f"forward {first['fwd']['rot_ms']:.1f} ms (bank {first['bank_ms']:.2f} ms included) against the "
        f"Conv2D's {first['fwd']['conv_ms']:.1f} ms. With a backward pass the gap widens: TF's Conv2D "
        f"backward with one input channel is slow ({first['train']['conv_ms']:.1f} ms forward + backward "
        "against its forward above), while RotConv's backward is two matrix products and the columns' "
        "gradient. Convolving with the k x k bank and pooling the convolution's layout instead took "
        "1.25x-1.28x forward and 0.95x forward + backward at the first layer (by hand). Second layer "
        "(14x14x12 input, 8 or more input channels: `rot_conv_tensorflow.py`'s rule): the columns hold "
        "49 x 12 values per pixel, 7.4 of 22.8 ms of its forward pass in a profile, and their matrix product "
        "ran slower per multiply-add than oneDNN's convolution, so there RotConv convolves with the k x k "
        "bank ('bank ms' includes its scatter into k x k) and pools the convolution's output in its own "
        f"layout: forward {second['fwd']['rot_ms']:.1f} ms against the Conv2D's {second['fwd']['conv_ms']:.1f} "
        "ms; the two products side by side are in the next table. Last layer (9x9 input, 1x1 output): the kernel covers the whole input, so the columns "
        "are the input's disk pixels and the product is taken orientation by orientation, with the bank "
        "built in that order (one product with the 98 x 1666 rotation matrix, no transpose of the 7 MB "
        f"bank): 'bank ms', {last['bank_ms']:.2f} ms, is most of RotConv's time at batch {BATCH} and the "
        "same at every batch size, so the ratio falls with the batch (table above). Convolving with the 9x9 "
        "bank there instead took 1.8x-1.9x forward + backward and 2.1x-2.3x forward.",
        "",
        "The pooling packs each response and its reversed orientation index into one int64 key and takes one "
        "`reduce_max` of public TF ops, so the maximum and the index of its first occurrence come from one pass; "
        "its backward counts the tied maxima and splits the gradient among them. Its kernels compile once per "
        "input shape, so RotConv pads its batch with zero images to 1, 4, 16, 64 or 128, then a multiple of 128.",
        "",
        "Alternatives measured by hand (same machine, quiet, "
        "interleaved medians; not rerun by this script): the bilinear rotation as a sparse matrix (`tf.sparse.sparse_dense_matmul`, "
        "at most 8 non-zeros per bank weight instead of 98) is slower than the dense product, 9.3-13.5 vs 4.4 ms (two runs) "
        "forward at the last layer (2.8 vs 1.8 ms at the second); the bank under XLA 3.8 vs 4.3 ms forward, "
        "7.2 vs 6.1 ms with backward; a depth-wise `max_pool` gives the maximum in 3.0 ms against `top_k`'s "
        "8.3 ms at the first layer's shape, but no arg-max and no gradient on the depth axis. The "
        "pooling compiled with XLA (`reduce_max` + `argmax` + direction, gradient as `reduce_max`'s) is "
        "faster, 8.4 vs 13.5 ms forward and 17.2 vs 26.8 ms with backward at the first layer's shape, "
        "but XLA compiles once per batch size (about 0.3 s a layer) and DeepFool's active batch shrinks "
        "at every iteration, hence the padded batches above. Also by hand (bank-sized results "
        "copied into NumPy in every timing, about 0.4 ms): the bank as a gather of its at most 8 taps per "
        "weight and a weighted sum (`tf.gather` + `einsum`, the last layer's shapes) 2.9 ms against 2.0 ms for "
        "the dense product alone (without the bank's transposes and scatter); that gather form compiled with "
        "XLA, with a transposed gather as its gradient (bank bit-identical, kernel gradient within 5e-6), 8.0 "
        "ms against the dense bank's 4.6 ms forward; the library's interpolation op "
        "(`ImageProjectiveTransformV3`) applied to the kernel itself 10.9 ms forward, 22.1 ms with backward. "
        "For the pooling at the first layer's shape: `max_pool_with_argmax` along the orientations 34.8 ms, "
        "`reduce_max` then the first arg-max by `where` + `reduce_max` 14.6 ms, `top_k` 9.8 ms, `reduce_max` "
        "alone 3.2 ms.",
    ]


def products_lines(products):
    """The second layer's two products, side by side."""
    lines = [f"### {products['name']}: its convolution against its window columns, batch {BATCH}", "",
             "RotConv's TensorFlow path at the second layer's shape with each product, the pooling the same "
             "(`pooled_field(layer, x, layout)`); ratio = convolution / columns, median of the per-round "
             "ratios with a bootstrap 95% interval. Largest difference between the two outputs: "
             f"{products['max_abs_difference']:.1e}.", "",
             "| pass | convolution ms | columns ms | ratio [95% CI] |", "|---|---|---|---|"]
    for kind, label in (("fwd", "forward"), ("train", "forward + backward")):
        r = products[kind]
        lines.append(f"| {label} | {r['conv_ms']:.2f} | {r['columns_ms']:.2f} | {r['ratio']:.3f} "
                     f"[{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}] |")
    faster = {kind: "the convolution" if products[kind]["ratio"] < 1 else "the columns" for kind in ("fwd", "train")}
    lines += ["", f"Faster in this run: forward, {faster['fwd']}; forward + backward, {faster['train']}. "
                  "RotConv convolves where the input has 8 or more channels for the forward passes, which most "
                  "of a study's curves are."]
    return lines + [""]


def render(info, rows, sweep, products, models, settings):
    worst = max(r["train"]["ratio"] for r in rows)
    worst_fwd = max(r["fwd"]["ratio"] for r in rows)
    lines = [SECTION_HEADING, "",
             f"Generated by `{settings['command']}` on {info['date']}.", "",
             *machine_lines(info, settings["load_start"], settings["load_end"]),
             f"- Script run time: {settings['elapsed']:.0f} s.", "",
             "### RotConv vs Conv2D with the same expanded filter bank, batch 64", "",
             f"RotConv (17 orientations, 9x9) rebuilds its rotated bank from the learned filters on every call "
             f"(one matrix product with the rotation matrix precomputed at build time; 'bank ms': its forward "
             f"time alone), multiplies it by the disk pixels of every input window (one matrix product; "
             f"at the last layer, whose kernel covers its "
             f"input, one product per orientation; at the second, 12 input channels, one convolution with "
             f"the k x k bank instead) and pools over orientations (one XLA kernel forward, one "
             f"backward). "
             f"The Conv2D has the same bank shape (`k x k x C_in x filters*17`) and nothing else: the issue's "
             f"physical bound, the convolution a RotConv needs without the disk's zeros skipped. Forward, and forward + backward (the loss `sum(y * dy)` and its gradients "
             f"with respect to the input and all weights, the loss returned so that the Conv2D's forward "
             f"is not pruned away: its gradients do not need its output, RotConv's do); every timed function "
             f"returns one element of its result, so that no timing includes a copy into NumPy (of an output "
             f"8.5x larger for the Conv2D, which would flatter RotConv's forward ratios); timed functions are `tf.function`s without XLA (RotConv's XLA kernels "
             f"are compiled before the timed rounds); interleaved "
             f"rounds; median of the "
             f"per-round ratios with a bootstrap 95% interval. Target: at most {RATIO_BAR:.2f}x.", "",
             "| Layer | input | bank | bank ms | fwd RotConv ms | fwd Conv2D ms | fwd ratio [95% CI] | "
             "fwd+bwd RotConv ms | fwd+bwd Conv2D ms | fwd+bwd ratio [95% CI] | CPU-time ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, t = r["fwd"], r["train"]
        lines.append(f"| {r['name']} | {r['input']} | {r['bank']} | {r['bank_ms']:.2f} | {f['rot_ms']:.2f} | {f['conv_ms']:.2f} | "
                     f"{f['ratio']:.3f} [{f['ratio_ci'][0]:.3f}-{f['ratio_ci'][1]:.3f}] | {t['rot_ms']:.2f} | {t['conv_ms']:.2f} | {t['ratio']:.3f} "
                     f"[{t['ratio_ci'][0]:.3f}-{t['ratio_ci'][1]:.3f}] | {t['cpu_ratio']:.3f} |")
    together = {kind: (sum(r[kind]["rot_ms"] for r in rows), sum(r[kind]["conv_ms"] for r in rows))
                for kind in ("fwd", "train")}
    lines.append(f"| #1-#3 together (times summed) | | | {sum(r['bank_ms'] for r in rows):.2f} | "
                 f"{together['fwd'][0]:.2f} | {together['fwd'][1]:.2f} | "
                 f"{together['fwd'][0] / together['fwd'][1]:.3f} | {together['train'][0]:.2f} | "
                 f"{together['train'][1]:.2f} | {together['train'][0] / together['train'][1]:.3f} | |")
    verdict = "holds" if max(worst, worst_fwd) <= RATIO_BAR else "does NOT hold"
    lines += ["", f"Worst ratio: forward {worst_fwd:.3f}, forward + backward {worst:.3f}; the "
                  f"{RATIO_BAR:.2f}x target {verdict} for every layer in this run (the target is per layer; "
                  f"the summed row, the three layers of one RotEqNet step, is for information).", ""]
    lines += ["### The last layer against batch size", "",
              f"{rows[-1]['name']} again, at the batch sizes of the attack stages (250 and 500 images) and 128: "
              f"the bank costs the same at every batch size, its product with the input grows with it.", "",
              "| batch | bank ms | fwd RotConv ms | fwd Conv2D ms | fwd ratio [95% CI] | fwd+bwd RotConv ms | fwd+bwd Conv2D ms "
              "| fwd+bwd ratio [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for r in [rows[-1]] + list(sweep):
        f, t = r["fwd"], r["train"]
        lines.append(f"| {r['batch']} | {r['bank_ms']:.2f} | {f['rot_ms']:.2f} | {f['conv_ms']:.2f} | {f['ratio']:.3f} "
                     f"[{f['ratio_ci'][0]:.3f}-{f['ratio_ci'][1]:.3f}] | "
                     f"{t['rot_ms']:.2f} | {t['conv_ms']:.2f} | {t['ratio']:.3f} "
                     f"[{t['ratio_ci'][0]:.3f}-{t['ratio_ci'][1]:.3f}] |")
    lines += ["", *where_the_time_goes(rows), ""]
    lines += products_lines(products)
    lines += ["### RotEqNet beside the GCNN (whole model, batch 64 training steps, 1,000-image inference, no XLA)",
              "", "| Model | parameters | training img/s | inference img/s |", "|---|---|---|---|"]
    for name, m in models.items():
        lines.append(f"| {name} | {m['params']:,} | {m['train_img_s']:.0f} | {m['infer_img_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=None, help="RESULTS.md to update (default: print only)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per layer comparison")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    started, load_start = time.perf_counter(), loadavg()
    rows, sweep, products = bench_layers(args.budget)
    models = bench_models()
    settings = {"command": "python benchmarks/bench_rotconv.py " + " ".join(sys.argv[1:]),
                "load_start": load_start, "load_end": loadavg(), "elapsed": time.perf_counter() - started}
    publish_section(args.output, render(machine_info(), rows, sweep, products, models, settings), SECTION_HEADING)


if __name__ == "__main__":
    main()
