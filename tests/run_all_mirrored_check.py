"""Runs a tiny `run_all` (StdCNN, real MNIST) on one device, then with
`strategy="mirrored"` over two logical CPU devices, and prints what differs
as JSON. A separate process: logical CPU devices must be configured before
TensorFlow initialises (see test_run_all.py).

Usage: python run_all_mirrored_check.py MNIST_DIR WORK_DIR
"""

import dataclasses
import json
import os
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from keras_uap.api import make_strategy  # noqa: E402
from keras_uap.pipelines.study import quick_config, run_all  # noqa: E402

MODELS = ("stdcnn",)


def _metrics(cfg):
    with open(os.path.join(cfg.run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    return {k: v for k, v in metrics.items() if k != "timings"}


def _arrays(results):
    """Every array the direction, universal and comparison stages wrote, by file."""
    found = {}
    for name, result in results.items():
        if not name.startswith(("directions-", "universal-", "comparison-")):
            continue
        for root, _, files in os.walk(result.output_dir):
            for file in sorted(files):
                path = os.path.join(root, file)
                key = os.path.relpath(path, os.path.dirname(os.path.dirname(result.output_dir)))
                if file.endswith(".npy"):
                    found[key] = np.load(path)
                elif file.endswith(".npz"):
                    with np.load(path) as f:
                        found.update({f"{key}:{k}": f[k] for k in f.files})
    return found


def main(mnist_dir, work_dir):
    # Batch sizes that leave short last batches: 100 attacked inputs (DeepFool 60) in batches of 32, two
    # at once, one per replica; 300 evaluated in batches of 128, each split in two halves over the replicas.
    cfg = quick_config({"data.train_size": 1000, "data.validation_size": 100, "data.test_size": 300,
                        "directions.limit": 100, "directions.deepfool_subset": 60, "directions.pgd_subset": 40,
                        "directions.batch_size": 32, "universal.sample_sizes": (50,), "universal.seeds": (0,),
                        "universal.random_seeds": (0,), "universal.batch_size": 128,
                        "comparison.sample_sizes": (40,), "comparison.batch_size": 128,
                        "transfer.batch_size": 128},
                       run_dir=os.path.join(work_dir, "run"), export_dir=os.path.join(work_dir, "export"),
                       data_dir=mnist_dir, verbose=0)
    single = run_all(cfg, models=MODELS)
    single_metrics, single_arrays = _metrics(cfg), _arrays(single)
    # The strategy is a setting: the single-device results are reused as they are.
    reused = run_all(dataclasses.replace(cfg, strategy="mirrored"), models=MODELS)
    mirrored = run_all(dataclasses.replace(cfg, strategy="mirrored", force=True), models=MODELS)
    mirrored_metrics, mirrored_arrays = _metrics(cfg), _arrays(mirrored)
    print(json.dumps({
        "replicas": make_strategy("mirrored").num_replicas_in_sync,
        "reused": sorted(name for name, r in reused.items() if r.cached),
        "recomputed": sorted(name for name, r in mirrored.items() if not r.cached),
        "metrics_keys": sorted(single_metrics),
        "metrics_differ": sorted(k for k in set(single_metrics) | set(mirrored_metrics)
                                 if single_metrics.get(k) != mirrored_metrics.get(k)),
        "arrays": sorted(single_arrays),
        "arrays_differ": sorted(k for k in set(single_arrays) | set(mirrored_arrays)
                                if k not in single_arrays or k not in mirrored_arrays
                                or not np.array_equal(single_arrays[k], mirrored_arrays[k])),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
